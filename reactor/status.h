// The daemon's status, served on a unix socket (<state_dir>/reactor.sock): a client connects
// and reads one JSON document, built at that moment. On demand rather than a file rewritten
// on a timer, so an idle daemon does no work for a status nobody reads, and the memory column
// is current when someone does.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "base/fd.h"
#include "base/io.h"
#include "base/result.h"
#include "reactor/ring.h"

namespace cellos::reactor {

class StatusServer {
 public:
  using Snapshot = std::function<std::string()>;
  // Binds `path` (a stale socket file is replaced: the caller holds the daemon lock).
  static base::Result<std::unique_ptr<StatusServer>> create(Ring& ring, const std::string& path,
                                                            Snapshot snapshot);
  ~StatusServer();
  // Stops accepting (the daemon is exiting); the socket file is removed.
  void stop();

 private:
  struct Acceptor final : base::Completion {
    StatusServer* server = nullptr;
    bool in_flight = false;
    void complete(int res) override;
  };
  struct Conn final : base::Completion {
    StatusServer* server = nullptr;
    base::Fd fd;
    std::string data;
    size_t off = 0;
    bool done = false;
    void complete(int res) override;
  };
  StatusServer(Ring& ring, std::string path, base::Fd fd, Snapshot s)
      : ring_(ring), path_(std::move(path)), fd_(std::move(fd)), snapshot_(std::move(s)) {}
  void arm_accept();
  void collect();

  Ring& ring_;
  std::string path_;
  base::Fd fd_;
  Snapshot snapshot_;
  Acceptor acceptor_;
  bool stopped_ = false;
  std::vector<std::unique_ptr<Conn>> conns_;
};

// `cellos-reactor status`: the daemon's snapshot as a table (or the raw JSON).
struct StatusArgs {
  std::string config_path;
  bool json = false;
};
int status_command(const StatusArgs& args);

}  // namespace cellos::reactor
