#include "tests/support/test_support.h"

#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>

namespace cellos::test {

namespace fs = std::filesystem;

TempDir::TempDir() {
  // Under /var/tmp, not /tmp: cells get a fresh /tmp, but see the host's /var/tmp read-only,
  // which is where tests put what a cell must see (the probe binary, host files to hide).
  char tmpl[] = "/var/tmp/cellos-test-XXXXXX";
  if (::mkdtemp(tmpl) == nullptr) throw std::runtime_error("mkdtemp failed");
  path_ = tmpl;
  // Cells run as an unprivileged uid; some tests hand them paths under here.
  ::chmod(path_.c_str(), 0755);
}

TempDir::~TempDir() {
  std::error_code ec;
  fs::remove_all(path_, ec);
}

nlohmann::json RunResult::event(const std::string& type_suffix) const {
  for (const auto& e : events) {
    const std::string t = e.value("type", "");
    if (t.size() >= type_suffix.size() &&
        t.compare(t.size() - type_suffix.size(), type_suffix.size(), type_suffix) == 0)
      return e["data"];
  }
  return nullptr;
}

ProcessResult run_process(const std::vector<std::string>& argv, const std::string& input,
                          int timeout_s) {
  int in[2], out[2], err[2];
  if (::pipe2(in, O_CLOEXEC) || ::pipe2(out, O_CLOEXEC) || ::pipe2(err, O_CLOEXEC))
    throw std::runtime_error("pipe2 failed");
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, in[0], 0);
  posix_spawn_file_actions_adddup2(&fa, out[1], 1);
  posix_spawn_file_actions_adddup2(&fa, err[1], 2);
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  pid_t pid = -1;
  // The child gets SIGPIPE's default back (this process ignores it, below).
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  sigset_t def;
  sigemptyset(&def);
  sigaddset(&def, SIGPIPE);
  posix_spawnattr_setsigdefault(&attr, &def);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGDEF);
  int rc = posix_spawn(&pid, args[0], &fa, &attr, args.data(), environ);
  posix_spawnattr_destroy(&attr);
  posix_spawn_file_actions_destroy(&fa);
  ::close(in[0]);
  ::close(out[1]);
  ::close(err[1]);
  if (rc != 0) throw std::runtime_error("posix_spawn " + argv[0] + " failed");
  // Small inputs (a spec) fit in the pipe buffer. A program that exits without reading its
  // stdin (a bad config) closes the pipe first: EPIPE then, not a SIGPIPE killing the test.
  ::signal(SIGPIPE, SIG_IGN);
  if (!input.empty() && ::write(in[1], input.data(), input.size()) < 0) {
  }
  ::close(in[1]);

  ProcessResult r;
  pollfd fds[2] = {{out[0], POLLIN, 0}, {err[0], POLLIN, 0}};
  int open_fds = 2;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(timeout_s);
  bool killed = false;
  while (open_fds > 0) {
    int left = static_cast<int>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                    deadline - std::chrono::steady_clock::now())
                                    .count());
    if (left <= 0 && !killed) {
      ::kill(pid, SIGKILL);
      killed = true;
      r.err += "\n[test harness: killed after " + std::to_string(timeout_s) + "s]\n";
    }
    ::poll(fds, 2, killed ? 1000 : std::max(left, 1));
    for (int i = 0; i < 2; ++i) {
      if (fds[i].fd < 0 || !(fds[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
      char buf[65536];
      ssize_t n = ::read(fds[i].fd, buf, sizeof buf);
      if (n <= 0) {
        ::close(fds[i].fd);
        fds[i].fd = -1;
        --open_fds;
        continue;
      }
      (i == 0 ? r.out : r.err).append(buf, static_cast<size_t>(n));
    }
  }
  int st = 0;
  ::waitpid(pid, &st, 0);
  r.status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
  return r;
}

std::string unique_id(const std::string& stem) {
  static std::atomic<int> n{0};
  return stem + "-" + std::to_string(::getpid()) + "-" + std::to_string(++n);
}

Fleet::Fleet(const std::string& extra_toml, const std::string& events_toml,
             const std::string& host_toml) {
  host_id_ = unique_id("test");
  state_ = dir_.path() + "/state";
  events_ = dir_.path() + "/events.jsonl";
  config_ = dir_.path() + "/fleet.toml";
  // A copy of the probe the unprivileged cell uid can reach whatever the checkout's
  // permissions are; its directory is an allowed argv[0] prefix.
  const std::string probe_dir = dir_.path() + "/bin";
  fs::create_directories(probe_dir);
  fs::copy_file(probe_path(), probe_dir + "/cell_probe", fs::copy_options::overwrite_existing);
  ::chmod((probe_dir + "/cell_probe").c_str(), 0755);
  ::chmod(probe_dir.c_str(), 0755);
  probe_ = probe_dir + "/cell_probe";
  std::string toml = "[host]\nid = \"" + host_id_ + "\"\nstate_dir = \"" + state_ + "\"\n" +
                     host_toml + "\n" +
                     "[events]\njsonl = \"" + events_ + "\"\n" + events_toml;
  if (extra_toml.find("[policy]") == std::string::npos)
    toml += "[policy]\nargv0_allow_prefixes = [\"/usr/bin\", \"/bin\", \"" + probe_dir + "\"]\n";
  toml += extra_toml;
  write_text(config_, toml);
}

Fleet::~Fleet() {
  for (const char* h : {"unified", "memory", "pids", "cpu"}) {
    const std::string root = std::string("/sys/fs/cgroup/") + h + "/cellos";
    // A daemon the test killed (DaemonProcess's SIGKILL) leaves its stock of empty memory
    // leaves (cells/leaf_stock.h) for a next daemon's recovery that never comes here.
    if (DIR* d = ::opendir((root + "/" + host_id_).c_str())) {
      std::vector<std::string> stocked;
      while (dirent* e = ::readdir(d))
        if (std::string(e->d_name).starts_with(".stock-")) stocked.push_back(e->d_name);
      ::closedir(d);
      for (const auto& n : stocked) ::rmdir((root + "/" + host_id_ + "/" + n).c_str());
    }
    ::rmdir((root + "/" + host_id_).c_str());
    ::rmdir(root.c_str());  // only if no other fleet uses it
  }
}

RunResult Fleet::run(const std::string& spec_json, const std::vector<std::string>& extra,
                     int timeout_s) const {
  std::vector<std::string> argv{CELLOS_REACTOR_BIN, "run", "-", "--config", config_};
  argv.insert(argv.end(), extra.begin(), extra.end());
  auto p = run_process(argv, spec_json, timeout_s);
  RunResult r;
  r.status = p.status;
  r.out = std::move(p.out);
  r.err = std::move(p.err);
  r.events = events();
  return r;
}

pid_t Fleet::start_run(const std::string& spec_json) const {
  const std::string spec_path = dir() + "/spec.json";
  write_text(spec_path, spec_json);
  std::vector<const char*> argv{CELLOS_REACTOR_BIN, "run", spec_path.c_str(), "--config",
                                config_.c_str(), nullptr};
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
  pid_t pid = -1;
  int rc = posix_spawn(&pid, argv[0], &fa, nullptr, const_cast<char**>(argv.data()), environ);
  posix_spawn_file_actions_destroy(&fa);
  if (rc != 0) throw std::runtime_error("posix_spawn cellos-reactor run failed");
  return pid;
}

std::vector<nlohmann::json> Fleet::events() const {
  std::vector<nlohmann::json> out;
  for (auto& e : log_records())
    if (e.value("type", "").rfind("dev.cellos.events.log.", 0) != 0) out.push_back(std::move(e));
  return out;
}

std::vector<nlohmann::json> Fleet::log_records() const {
  std::vector<nlohmann::json> out;
  std::ifstream in(events_);
  std::string line;
  // A line still being written (the writer's batch not all on disk yet) has no newline: it is
  // read on the next call, not parsed half-way.
  while (std::getline(in, line) && !in.eof())
    if (!line.empty()) out.push_back(nlohmann::json::parse(line));
  return out;
}

nlohmann::json make_spec(const std::string& id, const std::vector<std::string>& argv) {
  return {{"apiVersion", "cellos.io/v1"},
          {"kind", "ExecutionCell"},
          {"spec", {{"id", id}, {"run", {{"argv", argv}}}}}};
}

std::string probe_path() { return std::string(CELLOS_PROBE_BIN); }


std::vector<int> processes_with(const std::string& marker) {
  std::vector<int> pids;
  for (const auto& e : fs::directory_iterator("/proc")) {
    const std::string name = e.path().filename().string();
    if (name.find_first_not_of("0123456789") != std::string::npos) continue;
    std::ifstream in(e.path() / "cmdline", std::ios::binary);
    std::string cmd((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    std::replace(cmd.begin(), cmd.end(), '\0', ' ');  // arguments are NUL-separated
    if (cmd.find(marker) != std::string::npos && std::stoi(name) != ::getpid())
      pids.push_back(std::stoi(name));
  }
  return pids;
}

bool path_exists(const std::string& path) {
  struct stat st{};
  return ::lstat(path.c_str(), &st) == 0;
}

std::string read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void write_text(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << text;
}

}  // namespace cellos::test
