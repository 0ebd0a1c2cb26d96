#include "base/file_lock.h"

#include <signal.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <fstream>

namespace cellos::base {

std::vector<pid_t> flock_holders(dev_t dev, ino_t ino) {
  std::vector<pid_t> out;
  std::ifstream in("/proc/locks");
  std::string line;
  // "1: FLOCK  ADVISORY  WRITE 1234 08:01:5678 0 EOF"; a waiter's line has "->" after the
  // ordinal and holds nothing. The device is MAJOR:MINOR in hex.
  while (std::getline(in, line)) {
    char kind[16], mode[16], access[16];
    long pid = 0;
    unsigned maj = 0, min = 0;
    unsigned long long inode = 0;
    int ordinal = 0;
    if (std::sscanf(line.c_str(), "%d: %15s %15s %15s %ld %x:%x:%llu", &ordinal, kind, mode,
                    access, &pid, &maj, &min, &inode) != 8)
      continue;  // a waiter ("->" in the kind's place) or a line of another shape
    if (std::strcmp(kind, "FLOCK") != 0) continue;
    if (maj == major(dev) && min == minor(dev) && inode == static_cast<unsigned long long>(ino))
      out.push_back(static_cast<pid_t>(pid));
  }
  return out;
}

bool process_alive(pid_t pid) {
  // /proc/locks never names 0 (outside the initial pid namespace it leaves out a lock whose
  // holder it cannot name: one that has exited, or one outside the namespace). Negative: a
  // remote holder (a network file system's), live.
  if (pid <= 0) return pid < 0;
  if (::kill(pid, 0) != 0 && errno == ESRCH) return false;
  // A zombie's descriptors are closed already: what it held is being released, not held.
  char path[32];
  std::snprintf(path, sizeof path, "/proc/%d/stat", static_cast<int>(pid));
  std::ifstream in(path);
  std::string stat;
  if (!std::getline(in, stat)) return false;
  const size_t close = stat.rfind(')');
  if (close == std::string::npos || close + 2 >= stat.size()) return true;
  const char state = stat[close + 2];
  return state != 'Z' && state != 'X';
}

Result<void> flock_exclusive(int fd, const FlockOptions& o) {
  auto attempt = [fd] { return ::flock(fd, LOCK_EX | LOCK_NB) == 0 ? 0 : errno; };
  int err = attempt();
  if (err == 0) return ok();  // the common case: one system call
  struct stat st{};
  if (err == EWOULDBLOCK && ::fstat(fd, &st) != 0) return sys_error("fstat", o.what);
  const auto deadline = std::chrono::steady_clock::now() + o.dead_holder_wait;
  std::chrono::milliseconds nap{2};
  int unnamed = 0;
  for (;; err = attempt()) {
    if (err == 0) return ok();
    if (err != EWOULDBLOCK) return sys_error("flock", o.what, err);
    const std::vector<pid_t> holders = flock_holders(st.st_dev, st.st_ino);
    // This very process as the holder: an earlier open of the same file whose last
    // references (a ring's requests) are still being dropped; waited for like a dead holder.
    const pid_t self = ::getpid();
    pid_t live = 0;
    for (pid_t p : holders)
      if (p != self && process_alive(p)) {
        live = p;  // negative for a remote holder: live, no pid to name
        break;
      }
    // Nobody named: released between the flock and the read (try again), or, every time, a
    // holder /proc/locks leaves out or a file it names by other numbers (file_lock.h): taken,
    // by whom is not known.
    if (holders.empty() && ++unnamed < 3) continue;
    if (live != 0 || holders.empty()) {
      std::string who = live > 0 ? " (pid " + std::to_string(live) + ")" : "";
      return Error{EWOULDBLOCK, "flock", o.what,
                   "another writer (a daemon or another run) has it" + who, {}};
    }
    if (std::chrono::steady_clock::now() >= deadline)
      return Error{EWOULDBLOCK, "flock", o.what,
                   (holders.front() == self
                        ? std::string("held by an earlier open of it in this process")
                        : "held by pid " + std::to_string(holders.front()) + ", which has exited") +
                       ", and not released within " + std::to_string(o.dead_holder_wait.count()) +
                       " ms",
                   {}};
    const timespec ts{0, static_cast<long>(std::chrono::nanoseconds(nap).count())};
    ::nanosleep(&ts, nullptr);
    nap = std::min(nap * 2, std::chrono::milliseconds(50));
  }
}

}  // namespace cellos::base
