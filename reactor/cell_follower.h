// The client half shared by `submit --wait` and `run --via-daemon`: one connection to the
// daemon's status socket that asked `wait ID`, read as JSON lines, while the cell's stdout and
// stderr log files are copied to our own streams as they grow (inotify). Each command decides
// what the lines mean; this only moves bytes.
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
  // `conn`: a connection that sent `wait ID` (connect_status). ok() is false, and error() says
  // why in one line, when inotify could not be had.
  explicit CellFollower(base::Fd conn);
  bool ok() const { return inotify_.valid(); }
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
    void watch(int inotify_fd) const;
    void pump();
  };
  // Watches on the logs only for a cell still running after kWatchAfter: closing an inotify
  // instance that holds marks waits for an SRCU grace period (~16 ms measured here, more than a
  // short cell's whole run), while one that never held a mark closes at once; a short cell's
  // output is read once, at its end.
  static constexpr int kWatchAfterMs = 20;
  bool watching_ = false;
  base::Fd conn_, inotify_;
  Log out_{{}, stdout, {}}, err_{{}, stderr, {}};
  std::string buffer_, error_;
};

}  // namespace cellos::reactor
