// The daemon's status, served on a unix socket (<state_dir>/reactor.sock). A client connects and
// sends one request line:
//   `status`      one JSON document, built at that moment, then the connection closes. On
//                 demand rather than a file rewritten on a timer, so an idle daemon does no work
//                 for a status nobody reads, and the memory column is current when someone does.
//   `wait ID`     `submit --wait`: a `{"event":"watching"}` line at once, then one JSON line per
//                 step of the next run of cell ID: `started` (run id, log paths), then `finished`
//                 (reason, exit code, exit status); or `rejected`; or `stopped` when the daemon
//                 exits first. The connection closes after the last. A client that goes away is
//                 forgotten (its read sees the end of the stream).
//   `hand ID NAME` `run --via-daemon`: as `wait ID` without the `watching` line, and the daemon
//                 itself then renames the spec the client staged in the spool under the hidden
//                 name NAME (".<entry>.tmp", spool.h stage_in_spool) to <entry>, which the spool
//                 intake takes as any entry. One round trip fewer than `wait` + the client's
//                 own rename, and no wake-up of the client before its cell starts. The rename
//                 is one the client may make itself (it wrote the file), never replaces an
//                 entry, and stays inside the spool. A bad NAME or a failed rename: one
//                 {"error":...} line and nothing renamed (the client then falls back to
//                 `wait`, as it does with a daemon that does not know `hand`).
//   `stop ID`     `run --via-daemon` on SIGINT/SIGTERM: cell ID gets SIGTERM and its spec's
//   `kill ID`     grace (stop), or is killed now (kill), as `run` does to its own cell. One
//                 line: {"event":"stopping"|"killing"} or {"error":...} when ID does not run.
#pragma once

#include <array>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "base/fd.h"
#include "base/completion.h"
#include "base/io.h"
#include "base/result.h"
#include "reactor/ring.h"

namespace cellos::reactor {

class StatusServer {
 public:
  using Snapshot = std::function<std::string()>;
  // The steps a `wait` client is told of, in order; a final step closes its connection.
  enum class Step { kStarted, kRejected, kFinished };
  // Binds `path` (a stale socket file is replaced: the caller holds the daemon lock).
  static base::Result<std::unique_ptr<StatusServer>> create(Ring& ring, const std::string& path,
                                                            Snapshot snapshot);
  ~StatusServer();
  // Stops accepting (the daemon is exiting); the socket file is removed and waiting clients
  // are told `stopped`.
  void stop();
  // Tells the clients waiting on cell `id` of a step of its run `run_id` (`line` is one JSON
  // object). kStarted binds a waiter to that run; kFinished reaches only the waiters of that
  // run; kRejected only those not yet bound (a spec refused before it started).
  void tell(const std::string& id, Step step, const std::string& run_id, std::string line);
  // Whether a `wait` client waits on cell `id`: the daemon builds its lines only then.
  bool watched(const std::string& id) const;
  // The daemon drains: nothing not yet started will start. Waiters not bound to a run are told
  // `stopped`, and so is every later `wait`.
  void draining();
  // Every connection closed (after stop(): the last lines went out).
  bool idle() const;
  // `stop ID` / `kill ID`: `verb` is "stop" or "kill"; returns false when no cell ID runs.
  using Control = std::function<bool(std::string_view verb, const std::string& id)>;
  void set_control(Control c) { control_ = std::move(c); }
  // The spool directory `hand` renames in (unset: `hand` is refused and clients use `wait`).
  void set_spool_dir(std::string dir) { spool_dir_ = std::move(dir); }

 private:
  struct Acceptor final : base::Completion {
    StatusServer* server = nullptr;
    bool in_flight = false;
    void complete(int res) override;
  };
  struct Conn final : base::Completion {
    StatusServer* server = nullptr;
    base::Fd fd;
    std::string data;      // being written
    std::string pending;   // queued behind it
    size_t off = 0;
    bool writing = false;
    bool closing = false;  // close once everything is written
    bool done = false;
    // The request line, then (for a waiter) the end of the stream when the client leaves.
    std::array<char, 512> in{};
    size_t in_len = 0;
    std::string waiting_for;  // cell id, for a waiter
    std::string run_id;       // bound at kStarted
    base::Callback reader;
    base::Callback& arm_read() {
      return reader.arm([this](int res) { on_read(res); });
    }
    void complete(int res) override;  // a write
    void on_read(int res);
    void send(std::string line, bool last);
    void finish();
  };
  StatusServer(Ring& ring, std::string path, base::Fd fd, Snapshot s)
      : ring_(ring), path_(std::move(path)), fd_(std::move(fd)), snapshot_(std::move(s)) {}
  void arm_accept();
  void collect();
  void request(Conn& c, std::string_view line);
  void hand(Conn& c, std::string_view args);
  void wait_for(Conn& c, std::string id);

  Ring& ring_;
  std::string path_;
  base::Fd fd_;
  Snapshot snapshot_;
  Acceptor acceptor_;
  bool stopped_ = false;
  bool draining_ = false;
  std::vector<std::unique_ptr<Conn>> conns_;
  Control control_;
  std::string spool_dir_;
};

// Connects to the daemon serving `state_dir` and sends `request` (one line); an error names the
// socket when no daemon serves it.
base::Result<base::Fd> connect_status(const std::string& state_dir, const std::string& request);

// `cellos-reactor status`: the daemon's snapshot as a table (or the raw JSON).
struct StatusArgs {
  std::string config_path;
  bool json = false;
};
int status_command(const StatusArgs& args);

}  // namespace cellos::reactor
