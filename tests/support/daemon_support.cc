#include "tests/support/daemon_support.h"

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <stdexcept>
#include <thread>

extern char** environ;

namespace cellos::test {

namespace fs = std::filesystem;

DaemonProcess::DaemonProcess(const Fleet& fleet, const std::string& cgroup) : fleet_(fleet) {
  err_path_ = fleet.dir() + "/daemon-" + std::to_string(::getpid()) + "-" +
              std::to_string(reinterpret_cast<uintptr_t>(this) & 0xffff) + ".err";
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
  posix_spawn_file_actions_addopen(&fa, 2, err_path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  std::string bin = CELLOS_REACTOR_BIN, flag = "--config", cfg = fleet.config_path();
  char* argv[] = {bin.data(), flag.data(), cfg.data(), nullptr};
  // In a given cgroup: a shell joins it, then becomes the daemon (same pid), as a service
  // manager starts a unit's main process inside the unit's cgroup.
  std::string sh = "/bin/sh", c = "-c",
              script = "echo $$ > '" + cgroup + "/cgroup.procs' && exec '" + bin +
                       "' --config '" + cfg + "'";
  char* sh_argv[] = {sh.data(), c.data(), script.data(), nullptr};
  int rc = posix_spawn(&pid_, cgroup.empty() ? argv[0] : sh_argv[0], &fa, nullptr,
                       cgroup.empty() ? argv : sh_argv, environ);
  posix_spawn_file_actions_destroy(&fa);
  if (rc != 0) throw std::runtime_error("posix_spawn cellos-reactor failed");
  const std::string sock = fleet.state_dir() + "/reactor.sock";
  bool up = eventually([&] { return path_exists(sock); }, std::chrono::seconds(20));
  if (!up) throw std::runtime_error("the daemon did not come up: " + err());
}

DaemonProcess::~DaemonProcess() {
  if (pid_ > 0) {
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, nullptr, 0);
  }
}

void DaemonProcess::signal(int sig) const { ::kill(pid_, sig); }

int DaemonProcess::wait(std::chrono::seconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    int st = 0;
    pid_t r = ::waitpid(pid_, &st, WNOHANG);
    if (r == pid_) {
      pid_ = -1;
      return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
    }
    if (std::chrono::steady_clock::now() > deadline) return -1;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

std::string DaemonProcess::err() const { return path_exists(err_path_) ? read_text(err_path_) : ""; }

std::string spool(const Fleet& fleet, const nlohmann::json& spec) {
  static std::atomic<int> n{0};
  char name[64];
  std::snprintf(name, sizeof name, "t%06d-%06d.json", ::getpid() % 1000000, ++n);
  spool_raw(fleet, name, spec.dump());
  return name;
}

void spool_raw(const Fleet& fleet, const std::string& name, const std::string& text) {
  const std::string dir = fleet.state_dir() + "/spool";
  fs::create_directories(dir);
  write_text(dir + "/." + name + ".tmp", text);
  fs::rename(dir + "/." + name + ".tmp", dir + "/" + name);
}

bool eventually(const std::function<bool()>& cond, std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    if (cond()) return true;
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

std::vector<nlohmann::json> events_of(const Fleet& fleet, const std::string& suffix) {
  std::vector<nlohmann::json> out;
  if (!path_exists(fleet.events_path())) return out;
  for (auto& e : fleet.events()) {
    const std::string t = e.value("type", "");
    if (t.size() >= suffix.size() && t.compare(t.size() - suffix.size(), suffix.size(), suffix) == 0)
      out.push_back(std::move(e));
  }
  return out;
}

std::vector<std::string> dir_entries(const std::string& dir) {
  std::vector<std::string> out;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    std::string n = e.path().filename().string();
    if (!n.empty() && n[0] != '.') out.push_back(n);
  }
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace cellos::test
