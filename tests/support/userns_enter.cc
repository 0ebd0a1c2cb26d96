// userns_enter: runs a command as root of a fresh user namespace, as a service manager (or a
// parent cell) hands a rootless reactor its world. Test support, run as the host's root:
//
//   userns_enter UID_FIRST COUNT CGROUP_DIR... -- ARGV...
//
// 1. joins every CGROUP_DIR (the delegated subtree, one per hierarchy, already owned by
//    UID_FIRST) while still root in the initial namespaces;
// 2. a child unshares a user namespace; this process writes its uid_map and gid_map
//    ("0 UID_FIRST COUNT");
// 3. the child becomes its root, unshares mount, cgroup, network, pid, uts and ipc namespaces
//    (all owned by the new user namespace), and its first process mounts proc, sysfs and the
//    cgroup hierarchies (rooted at the subtree), brings up lo and execs ARGV.
// Its exit status is ARGV's (128+N for a signal); every process dies with it (PDEATHSIG).
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <grp.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "netns/loopback.h"

namespace {

[[noreturn]] void die(const char* what, const std::string& obj) {
  std::fprintf(stderr, "userns_enter: %s %s: %s\n", what, obj.c_str(), std::strerror(errno));
  _exit(125);
}

void write_file(const std::string& path, const std::string& text) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CLOEXEC);
  if (fd < 0) die("open", path);
  if (::write(fd, text.data(), text.size()) != static_cast<ssize_t>(text.size())) die("write", path);
  ::close(fd);
}

int wait_status(pid_t pid) {
  int st = 0;
  while (::waitpid(pid, &st, 0) < 0)
    if (errno != EINTR) return 125;
  return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

// The hierarchy a delegated dir belongs to: /sys/fs/cgroup/<name>/...
std::string hierarchy_of(const std::string& dir) {
  const std::string root = "/sys/fs/cgroup/";
  size_t end = dir.find('/', root.size());
  return dir.substr(root.size(), end - root.size());
}

[[noreturn]] void first_process(const std::vector<std::string>& cgroups, char** argv) {
  ::prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0) die("make-rprivate", "/");
  if (::mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, nullptr) != 0) die("mount proc on", "/proc");
  if (::mount("sysfs", "/sys", "sysfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, nullptr) != 0) die("mount sysfs on", "/sys");
  if (::mount("tmpfs", "/sys/fs/cgroup", "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, "mode=0755") != 0)
    die("mount tmpfs on", "/sys/fs/cgroup");
  for (const auto& dir : cgroups) {
    const std::string h = hierarchy_of(dir);
    const std::string at = "/sys/fs/cgroup/" + h;
    if (::mkdir(at.c_str(), 0755) != 0 && errno != EEXIST) die("mkdir", at);
    int rc = h == "unified" ? ::mount("cgroup2", at.c_str(), "cgroup2", MS_NOSUID | MS_NODEV | MS_NOEXEC, nullptr)
                            : ::mount("cgroup", at.c_str(), "cgroup", MS_NOSUID | MS_NODEV | MS_NOEXEC, h.c_str());
    if (rc != 0) die("mount cgroup on", at);
  }
  if (int err = cellos::netns::bring_up_loopback(); err != 0) {
    errno = err;
    die("bring up", "lo");
  }
  ::execv(argv[0], argv);
  die("execv", argv[0]);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 5) {
    std::fprintf(stderr, "usage: userns_enter UID_FIRST COUNT CGROUP_DIR... -- ARGV...\n");
    return 125;
  }
  const std::string first = argv[1], count = argv[2];
  std::vector<std::string> cgroups;
  int i = 3;
  for (; i < argc && std::strcmp(argv[i], "--") != 0; ++i) cgroups.push_back(argv[i]);
  if (i + 1 >= argc) return 125;
  char** command = argv + i + 1;

  for (const auto& dir : cgroups) write_file(dir + "/cgroup.procs", "0");
  int ready[2], mapped[2];
  if (::pipe2(ready, O_CLOEXEC) != 0 || ::pipe2(mapped, O_CLOEXEC) != 0) die("pipe", "");
  pid_t child = ::fork();
  if (child < 0) die("fork", "");
  if (child == 0) {
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::unshare(CLONE_NEWUSER) != 0) die("unshare", "CLONE_NEWUSER");
    char c = 1;
    if (::write(ready[1], &c, 1) != 1) die("write", "ready pipe");
    if (::read(mapped[0], &c, 1) != 1) _exit(125);
    if (::setresgid(0, 0, 0) != 0 || ::setgroups(0, nullptr) != 0 || ::setresuid(0, 0, 0) != 0)
      die("become root of", "the user namespace");
    if (::unshare(CLONE_NEWNS | CLONE_NEWCGROUP | CLONE_NEWNET | CLONE_NEWPID | CLONE_NEWUTS |
                  CLONE_NEWIPC) != 0)
      die("unshare", "namespaces");
    pid_t init = ::fork();
    if (init < 0) die("fork", "");
    if (init == 0) first_process(cgroups, command);
    _exit(wait_status(init));
  }
  char c = 0;
  if (::read(ready[0], &c, 1) != 1) return wait_status(child);
  const std::string map = "0 " + first + " " + count + "\n";
  const std::string proc = "/proc/" + std::to_string(child);
  write_file(proc + "/uid_map", map);
  write_file(proc + "/gid_map", map);
  if (::write(mapped[1], &c, 1) != 1) die("write", "mapped pipe");
  return wait_status(child);
}
