#include "cells/gvisor_backend.h"

#include <fcntl.h>
#include <linux/close_range.h>
#include <linux/sched.h>
#include <sched.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <thread>

#include "cells/child_status.h"
#include "cells/oci_bundle.h"
#include "cells/root_view.h"

namespace cellos::cells {
namespace {

namespace fs = std::filesystem;

// Host tasks a ptrace-platform sandbox needs besides the command's own: `runsc run`, the gofer
// and the Sentry are Go programs with a dozen or more threads each, and every address space of
// the cell is a stub process. pids.max counts threads, so the leaf gets this many on top of the
// spec's pidsMax; the spec's own count is enforced inside the sandbox (RLIMIT_NPROC of the
// cell's uid, which no other process of the sandbox has: oci_bundle.h).
constexpr uint64_t kSandboxTasks = 256;

std::vector<const char*> c_strings(const std::vector<std::string>& v) {
  std::vector<const char*> out;
  out.reserve(v.size() + 1);
  for (const auto& s : v) out.push_back(s.c_str());
  out.push_back(nullptr);
  return out;
}

// What the helper child reads: all built before clone, so the child only makes syscalls.
struct HelperPlan {
  const char* runsc = nullptr;
  const char* const* argv = nullptr;
  const char* const* kill_argv = nullptr;  // runsc --root=R kill <id> TERM
  const char* const* envp = nullptr;
  const char* command = nullptr;  // the cell's argv[0], checked on the host
  const char* const* knob_paths = nullptr;
  const char* const* knob_values = nullptr;
  size_t n_knobs = 0;
  const char* const* v1_procs_paths = nullptr;
  size_t n_v1 = 0;
  int netns_fd = -1;
  int stdin_fd = -1, stdout_fd = -1, stderr_fd = -1, status_fd = -1;
};

[[noreturn]] void report(const HelperPlan& p, int32_t kind, int32_t stage, int err, int index,
                         const char* what) {
  ChildStatus s;
  s.kind = kind;
  s.stage = stage;
  s.err = err;
  s.wait_status = index;
  if (what) {
    size_t n = std::strlen(what);
    if (n >= sizeof s.what) n = sizeof s.what - 1;
    std::memcpy(s.what, what, n);
  }
  (void)!::write(p.status_fd, &s, sizeof s);
  ::_exit(125);
}

bool write_all(const char* path, const char* value) {
  int fd = ::open(path, O_WRONLY | O_CLOEXEC);
  if (fd < 0) return false;
  size_t n = std::strlen(value);
  bool ok = ::write(fd, value, n) == static_cast<ssize_t>(n);
  int saved = errno;
  ::close(fd);
  errno = saved;
  return ok;
}

[[noreturn]] void helper_main(const HelperPlan& p) {
  // The reactor blocks the signals its signalfd reads and ignores SIGPIPE: runsc gets the
  // defaults, so a SIGTERM to the cell reaches it (it forwards it to the command).
  sigset_t none;
  sigemptyset(&none);
  ::sigprocmask(SIG_SETMASK, &none, nullptr);
  ::signal(SIGPIPE, SIG_DFL);
  for (size_t i = 0; i < p.n_knobs; ++i)
    if (!write_all(p.knob_paths[i], p.knob_values[i]))
      report(p, ChildStatus::kSetupFailed, kStageCgroupLimits, errno, static_cast<int>(i), nullptr);
  for (size_t i = 0; i < p.n_v1; ++i)
    if (!write_all(p.v1_procs_paths[i], "0"))
      report(p, ChildStatus::kSetupFailed, kStageCgroupV1, errno, 0, nullptr);
  if (p.netns_fd >= 0 && ::setns(p.netns_fd, CLONE_NEWNET) != 0)
    report(p, ChildStatus::kSetupFailed, kStageNetns, errno, 0, nullptr);
  // argv[0] lies in the root view, which is the host's own files: a program missing or not
  // executable there is missing or not executable in the sandbox too. Said here, it is the same
  // exec failure (127 / 126) the native backend reports, not runsc's own error.
  struct stat st{};
  if (::stat(p.command, &st) != 0)
    report(p, ChildStatus::kExecFailed, kStageExec, errno, 0, nullptr);
  if (!S_ISREG(st.st_mode) || (st.st_mode & 0111) == 0)
    report(p, ChildStatus::kExecFailed, kStageExec, EACCES, 0, nullptr);
  if (::dup2(p.stdin_fd, 0) < 0 || ::dup2(p.stdout_fd, 1) < 0 || ::dup2(p.stderr_fd, 2) < 0)
    report(p, ChildStatus::kSetupFailed, kStageFds, errno, 0, nullptr);
  // The helper stays as the cell's root process, between the reactor and runsc, for one job:
  // a graceful stop. `runsc run` does not pass SIGTERM on to the command, and a SIGTERM to
  // every process of the leaf would kill the sandbox's ptrace stubs under the command; so the
  // reactor signals the helper (traits().stop_through_root), which asks runsc to deliver it
  // inside the sandbox (`runsc kill <id> TERM`).
  sigset_t waited;
  sigemptyset(&waited);
  sigaddset(&waited, SIGTERM);
  sigaddset(&waited, SIGCHLD);
  ::sigprocmask(SIG_BLOCK, &waited, nullptr);
  const pid_t runsc = ::fork();
  if (runsc < 0) report(p, ChildStatus::kSetupFailed, kStageSpawn, errno, 0, "fork runsc");
  if (runsc == 0) {
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    // runsc inherits 0, 1 and 2 only (the status pipe is already close-on-exec).
    ::syscall(SYS_close_range, 3u, ~0u, CLOSE_RANGE_CLOEXEC);
    ::execve(p.runsc, const_cast<char* const*>(p.argv), const_cast<char* const*>(p.envp));
    ::_exit(125);
  }
  // The helper is a copy of the reactor: it lets go of every descriptor the reactor had (its
  // locks above all, which a copy would hold past a reactor crash) and of the cell's pipes,
  // so their end of file is runsc's.
  ::syscall(SYS_close_range, 0u, ~0u, 0u);
  int null = ::open("/dev/null", O_RDWR);
  if (null == 0) ::dup2(0, 1), ::dup2(0, 2);
  for (;;) {
    siginfo_t info{};
    if (::sigwaitinfo(&waited, &info) < 0) continue;
    if (info.si_signo == SIGTERM) {
      const pid_t k = ::fork();
      if (k == 0) {
        ::sigprocmask(SIG_SETMASK, &none, nullptr);
        ::execve(p.runsc, const_cast<char* const*>(p.kill_argv), const_cast<char* const*>(p.envp));
        ::_exit(127);
      }
      continue;
    }
    // SIGCHLD: reap the `runsc kill`s; runsc's own end is the cell's.
    int st = 0;
    pid_t done;
    while ((done = ::waitpid(-1, &st, WNOHANG)) > 0)
      if (done == runsc) ::_exit(WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st));
  }
}

base::Result<void> write_file(const std::string& path, const std::string& text) {
  auto fd = base::open_at(AT_FDCWD, path, O_WRONLY | O_CREAT | O_TRUNC, 0600);  // it holds the secrets
  if (!fd) return std::move(fd).error();
  if (::write(fd->get(), text.data(), text.size()) != static_cast<ssize_t>(text.size()))
    return base::sys_error("write", path);
  return base::ok();
}

class GvisorCell final : public BackendCell {
 public:
  GvisorCell(const Config& config, std::string cell_id, std::string dir)
      : config_(config), id_(std::move(cell_id)), dir_(std::move(dir)) {}
  ~GvisorCell() override {
    // Every process of the cell is gone (the Cell destroys us after its leaf is empty): what
    // is left is runsc's state files and the bundle, on disk only (the gofer's mounts lived in
    // its own mount namespace and went with it).
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }

  base::Result<Started> start(const StartRequest& r) override {
    OciBundleOptions b;
    // runsc adds HOME=/ to an environment without one and passes it on in an order of its
    // own; the cell's environment is exactly what the spec and policy give, in their order, so
    // the command starts through env(1) -i with the block as its assignments.
    const bool env_visible = std::any_of(r.host_paths.begin(), r.host_paths.end(), [](auto& p) {
      return path_within("/usr/bin/env", p);
    });
    if (!env_visible)
      return base::value_error("policy.host_paths",
                               "a gVisor cell needs /usr/bin/env in its view (/usr)");
    // Admission refuses what this backend cannot give a cell (admission.cc); a request that
    // got here anyway fails its setup rather than running without it.
    if (!r.broker_dir.empty() || !r.input_paths.empty() || r.workspace_mount_fd >= 0 ||
        !r.resolv_conf.empty())
      return base::value_error("spec", "runtime secret delivery, spec.inputs, spec.export and "
                                       "dnsAuthority are not supported by the gvisor backend");
    // A bare argv[0] runs the program admission found in the cell's PATH (spec.run.program):
    // env(1) is given its path, so the command's argv[0] is that path.
    const std::string& program = r.program.empty() ? r.argv.at(0) : r.program;
    if (program.find('=') != std::string::npos)
      return base::value_error("spec.run.argv[0]", "a gVisor cell's program name holds no '='");
    b.argv = {"/usr/bin/env", "-i"};
    b.argv.insert(b.argv.end(), r.env.begin(), r.env.end());
    b.argv.push_back(program);
    b.argv.insert(b.argv.end(), r.argv.begin() + 1, r.argv.end());
    b.env = r.env;
    b.workdir = r.workdir;
    b.hostname = r.cell_id;
    b.uid = r.uid;
    b.gid = r.gid;
    b.host_paths = r.host_paths;
    b.masked_paths = r.masked_paths;
    b.nproc = r.pids_max;
    // runsc copies the namespace's interfaces, addresses and routes into its netstack; it
    // opens the namespace by path, the reactor's own descriptor of it (the reactor outlives
    // the sandbox's start).
    if (r.netns_fd >= 0)
      b.netns_path = "/proc/" + std::to_string(::getpid()) + "/fd/" + std::to_string(r.netns_fd);
    auto json = oci_config_json(b);
    if (!json) return std::move(json).error();
    const std::string bundle = dir_ + "/bundle", root = dir_ + "/root";
    if (auto w = write_file(bundle + "/config.json", *json); !w) return std::move(w).error();

    auto out = base::make_pipe();
    if (!out) return std::move(out).error();
    auto err = base::make_pipe();
    if (!err) return std::move(err).error();
    auto status = base::make_pipe();
    if (!status) return std::move(status).error();
    static const base::Result<base::Fd> devnull = base::open_at(AT_FDCWD, "/dev/null", O_RDONLY);
    if (!devnull.ok()) return devnull.error();

    // The leaf's pids.max also has to hold the sandbox's own threads (kSandboxTasks).
    std::vector<std::string> values;
    for (size_t i = 0; i < r.knob_paths.size(); ++i) {
      std::string v = r.knob_values[i];
      if (std::string_view(r.knob_paths[i]).ends_with("/pids.max") && v != "max")
        v = std::to_string(std::stoull(v) + kSandboxTasks);
      values.push_back(std::move(v));
    }
    std::vector<const char*> value_ptrs;
    for (const auto& v : values) value_ptrs.push_back(v.c_str());

    const auto args = runsc_argv(config_, root, bundle, id_, r.netns_fd >= 0);
    const auto argv = c_strings(args);
    const std::vector<std::string> kill_args{config_.cells.runsc, "--root=" + root, "kill", id_,
                                             "TERM"};
    const auto kill_argv = c_strings(kill_args);
    const std::vector<std::string> env_text{"PATH=/usr/sbin:/usr/bin:/sbin:/bin"};
    const auto envp = c_strings(env_text);
    HelperPlan p;
    p.runsc = config_.cells.runsc.c_str();
    p.argv = argv.data();
    p.kill_argv = kill_argv.data();
    p.envp = envp.data();
    p.command = program.c_str();
    p.knob_paths = r.knob_paths.data();
    p.knob_values = value_ptrs.data();
    p.n_knobs = r.knob_paths.size();
    p.v1_procs_paths = r.v1_procs_paths.data();
    p.n_v1 = r.v1_procs_paths.size();
    p.netns_fd = r.netns_fd;
    p.stdin_fd = devnull->get();
    p.stdout_fd = out->write.get();
    p.stderr_fd = err->write.get();
    p.status_fd = status->write.get();

    // Fork-like (a copy of the reactor's memory): one clone per cell next to a sandbox start
    // of a fifth of a second, so the native launcher's shared-memory vfork is not worth it here.
    int pidfd = -1;
    clone_args ca{};
    ca.flags = CLONE_INTO_CGROUP;
    if (r.want_pidfd) ca.flags |= CLONE_PIDFD;
    ca.pidfd = reinterpret_cast<uint64_t>(&pidfd);
    ca.exit_signal = SIGCHLD;
    ca.cgroup = static_cast<uint64_t>(r.cgroup_v2_dirfd);
    long pid = ::syscall(SYS_clone3, &ca, sizeof ca);
    if (pid == 0) helper_main(p);
    if (pid < 0) return base::sys_error("clone3", "gVisor cell " + id_);
    Started s;
    s.pid = static_cast<pid_t>(pid);
    if (r.want_pidfd) s.pidfd = base::Fd(pidfd);
    s.stdout_read = std::move(out->read);
    s.stderr_read = std::move(err->read);
    s.status_read = std::move(status->read);
    return s;
  }

 private:
  const Config& config_;
  std::string id_, dir_;
};

class GvisorBackend final : public Backend {
 public:
  explicit GvisorBackend(const Config& config) : config_(config) {}
  std::string_view name() const override { return "gvisor"; }
  BackendTraits traits() const override {
    BackendTraits t;
    t.status_records = false;
    // runsc's sandbox and gofer may hold the status pipe past the root's exit.
    t.status_eof_at_root_exit = false;
    // The cell's sockets are the Sentry's host sockets in the cell's namespace and cgroup
    // (--network=host there): its ruleset, nflog and cgroup probes see them as a native
    // cell's. (gVisor's netstack, --network=sandbox, would send through a packet socket those
    // hooks miss; Debian 12's runsc cannot start it on this kernel: runsc_argv.)
    t.netns_enforcement = true;
    t.exit_status_encodes_signals = true;  // runsc exits 128+N for a command killed by N
    t.stop_through_root = true;            // `runsc run` forwards SIGTERM to the command
    return t;
  }
  base::Result<std::unique_ptr<BackendCell>> prepare(const std::string& cell_id) override {
    const std::string dir = gvisor_state_dir(config_) + "/" + cell_id;
    std::error_code ec;
    // The cell's id lock is held: anything here is a dead predecessor's, its processes gone.
    fs::remove_all(dir, ec);
    for (const std::string& d : {dir, dir + "/root", dir + "/bundle", dir + "/bundle/rootfs"})
      if (::mkdir(d.c_str(), d == dir + "/root" ? 0700 : 0755) != 0 && errno != EEXIST)
        return base::sys_error("mkdir", d);
    return std::unique_ptr<BackendCell>(new GvisorCell(config_, cell_id, dir));
  }

 private:
  const Config& config_;
};

// Starts /bin/true in a sandbox on the configured platform and waits up to `limit`; blocking,
// at reactor start only. ptrace needs no such check (it always runs where runsc loads).
base::Result<void> probe_platform(const Config& config, std::chrono::seconds limit) {
  const std::string dir = gvisor_state_dir(config) + "/.platform-probe";
  std::error_code ec;
  fs::remove_all(dir, ec);
  for (const std::string& d : {dir, dir + "/root", dir + "/bundle", dir + "/bundle/rootfs"})
    if (::mkdir(d.c_str(), 0700) != 0) return base::sys_error("mkdir", d);
  OciBundleOptions b;
  b.argv = {"/bin/true"};
  b.env = {"PATH=/usr/bin:/bin"};
  b.workdir = "/work";
  b.hostname = "probe";
  b.host_paths = root_view_paths(config.policy);
  auto json = oci_config_json(b);
  if (!json) return std::move(json).error();
  if (auto w = write_file(dir + "/bundle/config.json", *json); !w) return std::move(w).error();
  const auto args = runsc_argv(config, dir + "/root", dir + "/bundle", "platform-probe", false);
  const auto argv = c_strings(args);
  pid_t pid = ::fork();
  if (pid == 0) {
    int null = ::open("/dev/null", O_RDWR);
    ::dup2(null, 0), ::dup2(null, 1), ::dup2(null, 2);
    ::setpgid(0, 0);
    ::execv(config.cells.runsc.c_str(), const_cast<char* const*>(argv.data()));
    ::_exit(127);
  }
  if (pid < 0) return base::sys_error("fork", "runsc platform probe");
  auto deadline = std::chrono::steady_clock::now() + limit;
  int st = 0;
  while (::waitpid(pid, &st, WNOHANG) == 0) {
    if (std::chrono::steady_clock::now() > deadline) {
      ::kill(-pid, SIGKILL);
      ::waitpid(pid, &st, 0);
      fs::remove_all(dir, ec);
      return base::value_error(
          "cells.gvisor_platform",
          "\"" + config.cells.gvisor_platform + "\": runsc did not start a sandbox within " +
              std::to_string(limit.count()) +
              " s (KVM under nested virtualisation hangs); use \"ptrace\"");
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  fs::remove_all(dir, ec);
  if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
    return base::value_error("cells.gvisor_platform",
                             "\"" + config.cells.gvisor_platform +
                                 "\": runsc could not start a sandbox (exit status " +
                                 std::to_string(WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st)) +
                                 "); use \"ptrace\"");
  return base::ok();
}

}  // namespace

std::string gvisor_state_dir(const Config& config) { return config.host.state_dir + "/gvisor"; }

std::vector<std::string> gvisor_leftover_cells(const Config& config) {
  std::vector<std::string> out;
  std::error_code ec;
  for (auto it = fs::directory_iterator(gvisor_state_dir(config), ec);
       !ec && it != fs::directory_iterator(); it.increment(ec)) {
    std::string name = it->path().filename();
    if (!name.starts_with(".")) out.push_back(std::move(name));
  }
  return out;
}

base::Result<void> remove_gvisor_cell_state(const Config& config, const std::string& cell_id) {
  std::error_code ec;
  fs::remove_all(gvisor_state_dir(config) + "/" + cell_id, ec);
  if (ec) return base::sys_error("remove", gvisor_state_dir(config) + "/" + cell_id, ec.value());
  return base::ok();
}

std::vector<std::string> runsc_argv(const Config& config, const std::string& root_dir,
                                    const std::string& bundle_dir, const std::string& container_id,
                                    bool network) {
  return {config.cells.runsc,
          "--root=" + root_dir,
          "--platform=" + config.cells.gvisor_platform,
          // A cell without egress rules has loopback only (gVisor's own). One with rules gets
          // the host's network stack inside the cell's own namespace, which the helper has
          // entered: its sockets are then the Sentry's, seen by the namespace's ruleset and the
          // cgroup's probes. Not the netstack (--network=sandbox): runsc 20221219 takes any
          // namespace holding /proc/sys/net/core/rmem_default (every one on kernels >= 5.x
          // with per-netns sysctls) for the root one and refuses to start.
          network ? "--network=host" : "--network=none",
          // Root read-only as the bundle says, not an in-memory overlay over it.
          "--overlay2=none",
          // The bundle names no cgroup, and runsc must not make one: the reactor's leaf holds
          // and limits every process of the cell.
          "--ignore-cgroups",
          "run",
          "--bundle=" + bundle_dir,
          container_id};
}

base::Result<std::unique_ptr<Backend>> make_gvisor_backend(const Config& config) {
  const std::string& runsc = config.cells.runsc;
  struct stat st{};
  if (::stat(runsc.c_str(), &st) != 0)
    return base::sys_error("stat", "cells.runsc \"" + runsc + "\" (apt-get install runsc)");
  if (!S_ISREG(st.st_mode) || ::access(runsc.c_str(), X_OK) != 0)
    return base::value_error("cells.runsc", "\"" + runsc + "\" is not an executable file");
  const std::string dir = gvisor_state_dir(config);
  if (::mkdir(config.host.state_dir.c_str(), 0755) != 0 && errno != EEXIST)
    return base::sys_error("mkdir", config.host.state_dir);
  if (::mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST) return base::sys_error("mkdir", dir);
  if (config.cells.gvisor_platform != "ptrace")
    if (auto r = probe_platform(config, std::chrono::seconds(10)); !r) return std::move(r).error();
  return std::unique_ptr<Backend>(new GvisorBackend(config));
}

}  // namespace cellos::cells
