// The client half shared by `submit --wait` and `run --via-daemon`: one connection to the
// daemon's status socket that asked `wait ID`, read as JSON lines, while the cell's stdout and
// stderr log files are copied to our own streams as they grow. Each command decides what the
// lines mean; this only moves bytes.
//
// The logs are re-read on a timer, not watched with inotify: closing an inotify instance that
// ever held a mark waits for an SRCU grace period (fsnotify_destroy_group; 14-22 ms measured
// here under load, often more than a short cell's whole run, and paid again at exit if the
// descriptor is left open), while a read that finds nothing new costs a few microseconds. The
// end of the cell is never waited for on the timer: the daemon pushes the `finished` line over
// the socket, which wakes the poll at once, and the logs are then read to their end.
#pragma once

#include <cstdio>
#include <string>

#include <nlohmann/json.hpp>

#include "base/fd.h"

namespace cellos::reactor {

// "cellos-reactor: <line>" on stderr; returns 125 (refused, or could not follow the cell).
int say_refused(const std::string& line);

class CellFollower {
 public:
  // `conn`: a connection that sent `wait ID` (connect_status).
  explicit CellFollower(base::Fd conn);
  bool ok() const { return conn_.valid(); }
  const std::string& error() const { return error_; }

  enum class Next { kLine, kExtra, kClosed, kError };
  // Waits for the daemon's next line (into `line`), pumping the logs meanwhile. `extra_fd`
  // (-1: none) is polled too: kExtra when it is readable. kClosed: the daemon closed the
  // connection (the logs are pumped to their end first); kError: poll failed or a line is not
  // a JSON object (error() says which).
  Next next(nlohmann::json& line, int extra_fd = -1);
  // The `started` line: follow its "stdout" and "stderr" files from their beginning.
  void follow(const nlohmann::json& started);
  // Copies whatever the logs hold beyond what was copied already.
  void pump();

 private:
  struct Log {
    base::Fd fd;
    FILE* out = nullptr;
    std::string path;
    void open(const std::string& log_path);
    bool pump();  // true when it copied something
  };
  // While the cell runs, the logs are re-read kFirstReadMs after it started, then at an
  // interval that doubles while nothing comes (up to kMaxReadMs) and drops back to kFirstReadMs
  // when output does: a chatty cell's lines arrive within 20 ms, an idle one costs the client a
  // wake-up every quarter second. A short cell's output is read once, at its end.
  static constexpr int kFirstReadMs = 20;
  static constexpr int kMaxReadMs = 250;
  int read_every_ms_ = kFirstReadMs;
  base::Fd conn_;
  Log out_{{}, stdout, {}}, err_{{}, stderr, {}};
  std::string buffer_, error_;
};

}  // namespace cellos::reactor
