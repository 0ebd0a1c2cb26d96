// The event log's writer lock across a writer's death: a writer killed with ring writes in
// flight leaves its flock held after it is reaped (the kernel drops the ring's file references
// later), and the next writer waits that out; a live holder is refused at once, by pid; a lock
// kept by a live process under an exited holder's pid is refused after the bound.
#include "base/file_lock.h"

#include <fcntl.h>
#include <liburing.h>
#include <signal.h>
#include <sched.h>
#include <sys/file.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cerrno>
#include <string>
#include <vector>

#include "sinks/event_log.h"
#include "tests/support/event_log_support.h"
#include "tests/support/test_support.h"

namespace cellos {
namespace {

using Catch::Contains;
using test::TempDir;

base::FlockOptions lock_options(std::chrono::milliseconds dead_holder_wait) {
  base::FlockOptions o;
  o.what = "event log";
  o.dead_holder_wait = dead_holder_wait;
  return o;
}

// A writer as the daemon is one: the log opened and flock'ed, and buffered writes to it in
// flight through an io_uring (handed to io-wq on ext4) when SIGKILL comes. Returns its pid once
// its writes are submitted.
pid_t writer_with_writes_in_flight(const std::string& path) {
  int ready[2];
  REQUIRE(::pipe2(ready, O_CLOEXEC) == 0);
  const pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
    if (fd < 0 || ::flock(fd, LOCK_EX) != 0) _exit(1);
    static char buf[1 << 20];
    std::fill(std::begin(buf), std::end(buf), 'x');
    io_uring ring;
    if (io_uring_queue_init(64, &ring, 0) != 0) _exit(1);
    for (int k = 0; k < 32; ++k) io_uring_prep_write(io_uring_get_sqe(&ring), fd, buf, sizeof buf, 0);
    if (io_uring_submit(&ring) != 32) _exit(1);
    if (::write(ready[1], "r", 1) != 1) _exit(1);
    for (;;) ::pause();
  }
  ::close(ready[1]);
  char c = 0;
  REQUIRE(::read(ready[0], &c, 1) == 1);
  ::close(ready[0]);
  return pid;
}

// A process that takes the lock and forks a child holding it, then exits: the child holds the
// lock under its exited parent's pid. Returns {the exited parent, the holding child}.
std::pair<pid_t, pid_t> lock_left_under_exited_pid(const std::string& path) {
  int report[2];
  REQUIRE(::pipe2(report, O_CLOEXEC) == 0);
  const pid_t parent = ::fork();
  REQUIRE(parent >= 0);
  if (parent == 0) {
    const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0640);
    if (fd < 0 || ::flock(fd, LOCK_EX) != 0) _exit(1);
    const pid_t child = ::fork();
    if (child == 0) {
      for (;;) ::pause();
    }
    if (::write(report[1], &child, sizeof child) != sizeof child) _exit(1);
    _exit(0);
  }
  ::close(report[1]);
  pid_t child = -1;
  REQUIRE(::read(report[0], &child, sizeof child) == sizeof child);
  ::close(report[0]);
  int st = 0;
  REQUIRE(::waitpid(parent, &st, 0) == parent);
  return {parent, child};
}

TEST_CASE("an event log whose writer was killed with ring writes in flight opens once the kernel lets go of the lock") {
  TempDir dir;
  const std::string path = dir.path() + "/events.jsonl";
  const pid_t writer = writer_with_writes_in_flight(path);
  REQUIRE(::kill(writer, SIGKILL) == 0);
  int st = 0;
  REQUIRE(::waitpid(writer, &st, 0) == writer);
  // The kernel behaviour this is about: the lock outlives its reaped holder.
  const int probe = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  REQUIRE(probe >= 0);
  const bool still_held = ::flock(probe, LOCK_SH | LOCK_NB) != 0 && errno == EWOULDBLOCK;
  ::close(probe);
  if (!still_held) WARN("this kernel released the killed writer's lock by the time it was reaped");
  // The truncated 32 MiB of 'x' is a torn tail to recover, as a killed daemon's can be.
  REQUIRE(::truncate(path.c_str(), 0) == 0);
  sinks::EventLogOptions o;
  o.path = path;
  o.host_id = "host-1";
  test::LogHarness h(o);  // throws, failing the test, if the open is refused
  h.emit_samples(1);
  h.drain();
  CHECK(h.log().events_written() > 0);
}

TEST_CASE("a writer lock a live process holds is refused at once, naming its pid") {
  TempDir dir;
  const std::string path = dir.path() + "/events.jsonl";
  const pid_t holder = writer_with_writes_in_flight(path);
  const int fd = ::open(path.c_str(), O_RDWR | O_CLOEXEC);
  REQUIRE(fd >= 0);
  // A wait would show as the other message.
  base::FlockOptions o = lock_options(std::chrono::minutes(10));
  auto r = base::flock_exclusive(fd, o);
  ::close(fd);
  ::kill(holder, SIGKILL);
  ::waitpid(holder, nullptr, 0);
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().err == EWOULDBLOCK);
  CHECK_THAT(r.error().message(), Contains("another writer (a daemon or another run) has it") &&
                                      Contains("(pid " + std::to_string(holder) + ")"));
}

TEST_CASE("a writer lock kept alive under an exited holder's pid is refused after the bound, naming that holder") {
  TempDir dir;
  const std::string path = dir.path() + "/events.jsonl";
  const auto [exited, keeper] = lock_left_under_exited_pid(path);
  const int fd = ::open(path.c_str(), O_RDWR | O_CLOEXEC);
  REQUIRE(fd >= 0);
  base::FlockOptions o = lock_options(std::chrono::milliseconds(200));
  auto r = base::flock_exclusive(fd, o);
  ::kill(keeper, SIGKILL);  // not our child: reaped by whoever adopted it
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().err == EWOULDBLOCK);
  CHECK_THAT(r.error().message(),
             Contains("held by pid " + std::to_string(exited) + ", which has exited") &&
                 Contains("not released within 200 ms"));
  // Once its keeper is gone, the lock is taken.
  o.dead_holder_wait = std::chrono::seconds(30);
  CHECK(base::flock_exclusive(fd, o).ok());
  ::close(fd);
}

TEST_CASE("flock_holders names a lock's holder, and nobody once it is released") {
  TempDir dir;
  const std::string path = dir.path() + "/lock";
  const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0640);
  REQUIRE(fd >= 0);
  struct stat st{};
  REQUIRE(::fstat(fd, &st) == 0);
  CHECK(base::flock_holders(st.st_dev, st.st_ino).empty());
  REQUIRE(::flock(fd, LOCK_EX) == 0);
  CHECK(base::flock_holders(st.st_dev, st.st_ino) == std::vector<pid_t>{::getpid()});
  CHECK(base::process_alive(::getpid()));
  ::close(fd);
  CHECK(base::flock_holders(st.st_dev, st.st_ino).empty());
}

TEST_CASE("a writer lock this process still holds through another open is waited for, and refused after the bound") {
  TempDir dir;
  const std::string path = dir.path() + "/events.jsonl";
  const int first = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0640);
  REQUIRE(first >= 0);
  REQUIRE(::flock(first, LOCK_EX) == 0);
  const int second = ::open(path.c_str(), O_RDWR | O_CLOEXEC);
  REQUIRE(second >= 0);
  base::FlockOptions o = lock_options(std::chrono::milliseconds(100));
  auto r = base::flock_exclusive(second, o);
  REQUIRE_FALSE(r.ok());
  CHECK_THAT(r.error().message(), Contains("held by an earlier open of it in this process") &&
                                      Contains("not released within 100 ms"));
  ::close(first);
  CHECK(base::flock_exclusive(second, o).ok());
  ::close(second);
}

TEST_CASE("in a pid namespace of its own, a writer lock held from outside is refused at once, as a lock nobody is named for") {
  TempDir dir;
  const std::string path = dir.path() + "/events.jsonl";
  const int held = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0640);
  REQUIRE(held >= 0);
  REQUIRE(::flock(held, LOCK_EX) == 0);  // a live holder, outside the namespace below
  int out[2];
  REQUIRE(::pipe2(out, O_CLOEXEC) == 0);
  const pid_t child = ::fork();
  REQUIRE(child >= 0);
  if (child == 0) {
    // A new pid namespace with its own /proc, as a nested reactor's cell has.
    if (::unshare(CLONE_NEWPID | CLONE_NEWNS) != 0) _exit(2);
    const pid_t inner = ::fork();
    if (inner < 0) _exit(2);
    if (inner > 0) {
      int st = 0;
      ::waitpid(inner, &st, 0);
      _exit(WIFEXITED(st) ? WEXITSTATUS(st) : 2);
    }
    if (::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0 ||
        ::mount("proc", "/proc", "proc", 0, nullptr) != 0)
      _exit(2);
    const int fd = ::open(path.c_str(), O_RDWR | O_CLOEXEC);
    // A wait would show as the other message.
    auto r = base::flock_exclusive(fd, lock_options(std::chrono::minutes(10)));
    const std::string m = r.ok() ? std::string("taken") : r.error().message();
    if (::write(out[1], m.data(), m.size()) != static_cast<ssize_t>(m.size())) _exit(2);
    _exit(0);
  }
  ::close(out[1]);
  std::string said;
  char buf[512];
  for (ssize_t n; (n = ::read(out[0], buf, sizeof buf)) > 0;) said.append(buf, static_cast<size_t>(n));
  ::close(out[0]);
  int st = 0;
  REQUIRE(::waitpid(child, &st, 0) == child);
  ::close(held);
  REQUIRE(WIFEXITED(st));
  REQUIRE(WEXITSTATUS(st) == 0);
  CHECK_THAT(said, Contains("another writer (a daemon or another run) has it"));
  CHECK_THAT(said, !Contains("(pid "));
}

}  // namespace
}  // namespace cellos
