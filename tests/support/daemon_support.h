// Driving the fleet daemon from tests: start `cellos-reactor --config`, put specs in its spool
// the way `submit` does, wait for what its event log says, stop it with signals.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "tests/support/test_support.h"

namespace cellos::test {

class DaemonProcess {
 public:
  // Starts the daemon on the fleet's config and waits until its status socket answers. With
  // `cgroup` (an absolute cgroup2 directory), the daemon starts as a process of that cgroup.
  explicit DaemonProcess(const Fleet& fleet, const std::string& cgroup = "");
  // SIGKILL and reap if it is still running.
  ~DaemonProcess();
  DaemonProcess(const DaemonProcess&) = delete;
  DaemonProcess& operator=(const DaemonProcess&) = delete;

  pid_t pid() const { return pid_; }
  void signal(int sig) const;
  // Waits for the daemon to exit; its exit status (128+N for a signal), or -1 on timeout.
  int wait(std::chrono::seconds timeout = std::chrono::seconds(60));
  // What it printed on stderr so far.
  std::string err() const;

 private:
  const Fleet& fleet_;
  pid_t pid_ = -1;
  std::string err_path_;
};

// Renames a spec into the spool (temp file first, as `submit` does); returns the entry name.
std::string spool(const Fleet& fleet, const nlohmann::json& spec);
// Writes raw bytes as a spool entry named `name`.
void spool_raw(const Fleet& fleet, const std::string& name, const std::string& text);

// Polls `cond` every 20 ms until it holds or `timeout` passes; returns its last value.
bool eventually(const std::function<bool()>& cond,
                std::chrono::milliseconds timeout = std::chrono::seconds(60));

// Events of the fleet's log whose type ends with `suffix` ("lifecycle.v1.destroyed").
std::vector<nlohmann::json> events_of(const Fleet& fleet, const std::string& suffix);

// Names in a directory (no dot entries); empty if it does not exist.
std::vector<std::string> dir_entries(const std::string& dir);

}  // namespace cellos::test
