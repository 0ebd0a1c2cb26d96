// Ring, the reactor's io_uring, through the IoPort completion contract (base/io.h): every
// operation completes exactly once, with bytes, 0 or -errno, and only when the kernel is done.
#include "reactor/ring.h"

#include <signal.h>
#include <sys/syscall.h>
#include <sys/timerfd.h>
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <cstring>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "base/fd.h"

namespace cellos::reactor {
namespace {

using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

// Records every result it is given, and when it was given.
struct Recorder final : base::Completion {
  std::vector<int> results;
  Clock::time_point at{};
  void complete(int res) override {
    results.push_back(res);
    at = Clock::now();
  }
  bool done() const { return !results.empty(); }
  int res() const { return results.empty() ? 1 << 30 : results.front(); }
};

std::unique_ptr<Ring> make_ring(unsigned entries = 256) {
  auto r = Ring::create(RingOptions{entries});
  INFO((r.ok() ? std::string() : r.error().message()));
  REQUIRE(r.ok());
  return std::move(r).value();
}

std::span<std::byte> bytes(std::string& s) { return std::as_writable_bytes(std::span(s)); }
std::span<const std::byte> bytes(const std::string& s) { return std::as_bytes(std::span(s)); }

// Drives the ring until `done()` holds, or until `limit` has passed. The guard is a read on a
// timerfd rather than a ring timeout, so a broken timeout cannot also break the guard; it is
// cancelled and reaped before returning so it never completes into a dead object.
bool run_until(Ring& ring, const std::function<bool()>& done, std::chrono::seconds limit = 10s) {
  base::Fd tfd(::timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC));
  REQUIRE(tfd.valid());
  itimerspec its{};
  its.it_value.tv_sec = limit.count();
  REQUIRE(::timerfd_settime(tfd.get(), 0, &its, nullptr) == 0);
  uint64_t expirations = 0;
  Recorder guard;
  ring.read(tfd.get(), std::as_writable_bytes(std::span(&expirations, 1)), guard);
  while (!done() && !guard.done()) REQUIRE(ring.run_once().ok());
  if (!guard.done()) ring.cancel(guard);
  while (!guard.done()) REQUIRE(ring.run_once().ok());
  return done();
}

// A child that has exited with `code`, or one that waits for SIGKILL (code < 0); its pidfd.
struct Child {
  pid_t pid = -1;
  base::Fd pidfd;
};

Child spawn_child(int code) {
  Child c;
  c.pid = ::fork();
  REQUIRE(c.pid >= 0);
  if (c.pid == 0) {
    if (code < 0)
      for (;;) ::pause();
    ::_exit(code);
  }
  c.pidfd = base::Fd(static_cast<int>(::syscall(SYS_pidfd_open, c.pid, 0)));
  REQUIRE(c.pidfd.valid());
  return c;
}

TEST_CASE("ring: a read on a pipe completes with the bytes written to it", "[ring]") {
  auto ring = make_ring();
  auto pipe = base::make_pipe();
  REQUIRE(pipe.ok());
  const std::string msg = "hello ring";
  REQUIRE(::write(pipe->write.get(), msg.data(), msg.size()) == static_cast<ssize_t>(msg.size()));

  std::string buf(64, '\0');
  Recorder r;
  ring->read(pipe->read.get(), bytes(buf), r);
  REQUIRE(run_until(*ring, [&] { return r.done(); }));
  CHECK(r.results.size() == 1);
  REQUIRE(r.res() == static_cast<int>(msg.size()));
  CHECK(buf.substr(0, msg.size()) == msg);
}

TEST_CASE("ring: a read queued before the data arrives waits for it", "[ring]") {
  auto ring = make_ring();
  auto pipe = base::make_pipe();
  REQUIRE(pipe.ok());
  std::string buf(16, '\0');
  Recorder r, tick;
  ring->read(pipe->read.get(), bytes(buf), r);
  ring->timeout(5ms, tick);
  REQUIRE(run_until(*ring, [&] { return tick.done(); }));
  CHECK_FALSE(r.done());

  REQUIRE(::write(pipe->write.get(), "xyz", 3) == 3);
  REQUIRE(run_until(*ring, [&] { return r.done(); }));
  CHECK(r.res() == 3);
  CHECK(buf.substr(0, 3) == "xyz");
}

TEST_CASE("ring: a write to a pipe completes with its length and the data arrives", "[ring]") {
  auto ring = make_ring();
  auto pipe = base::make_pipe();
  REQUIRE(pipe.ok());
  const std::string msg = "written through io_uring";
  Recorder w;
  ring->write(pipe->write.get(), bytes(msg), w);
  REQUIRE(run_until(*ring, [&] { return w.done(); }));
  CHECK(w.results.size() == 1);
  REQUIRE(w.res() == static_cast<int>(msg.size()));

  std::string got(64, '\0');
  ssize_t n = ::read(pipe->read.get(), got.data(), got.size());
  REQUIRE(n == static_cast<ssize_t>(msg.size()));
  CHECK(got.substr(0, msg.size()) == msg);
}

TEST_CASE("ring: a read of a pipe whose writer closed completes with 0 (EOF)", "[ring]") {
  auto ring = make_ring();
  auto pipe = base::make_pipe();
  REQUIRE(pipe.ok());
  pipe->write.reset();
  std::string buf(8, '\0');
  Recorder r;
  ring->read(pipe->read.get(), bytes(buf), r);
  REQUIRE(run_until(*ring, [&] { return r.done(); }));
  CHECK(r.res() == 0);
}

TEST_CASE("ring: a write on a bad fd completes with -EBADF instead of failing the loop",
          "[ring]") {
  auto ring = make_ring();
  const std::string msg = "x";
  Recorder w;
  ring->write(-1, bytes(msg), w);
  REQUIRE(run_until(*ring, [&] { return w.done(); }));
  CHECK(w.res() == -EBADF);
}

TEST_CASE("ring: timeout(10ms) completes with -ETIME, and not before 10ms have passed",
          "[ring]") {
  auto ring = make_ring();
  Recorder t;
  const auto start = Clock::now();
  ring->timeout(10ms, t);
  REQUIRE(run_until(*ring, [&] { return t.done(); }));
  CHECK(t.results.size() == 1);
  CHECK(t.res() == -ETIME);
  // Lower bound only (lenient by 1ms for clock granularity): a loaded CI VM may be late.
  CHECK(t.at - start >= 9ms);
}

TEST_CASE("ring: cancel() of a pending timeout completes it with -ECANCELED", "[ring]") {
  auto ring = make_ring();
  Recorder t, tick;
  ring->timeout(30s, t);
  ring->timeout(5ms, tick);
  REQUIRE(run_until(*ring, [&] { return tick.done(); }));
  REQUIRE_FALSE(t.done());

  const auto start = Clock::now();
  ring->cancel(t);
  REQUIRE(run_until(*ring, [&] { return t.done(); }));
  CHECK(t.results.size() == 1);
  CHECK(t.res() == -ECANCELED);
  CHECK(t.at - start < 10s);  // it came from the cancel, not from the 30s expiry
}

TEST_CASE("ring: cancel() of a pending pipe read completes it with -ECANCELED", "[ring]") {
  auto ring = make_ring();
  auto pipe = base::make_pipe();
  REQUIRE(pipe.ok());
  std::string buf(8, '\0');
  Recorder r, tick;
  ring->read(pipe->read.get(), bytes(buf), r);
  ring->timeout(5ms, tick);
  REQUIRE(run_until(*ring, [&] { return tick.done(); }));
  REQUIRE_FALSE(r.done());

  ring->cancel(r);
  REQUIRE(run_until(*ring, [&] { return r.done(); }));
  CHECK(r.results.size() == 1);
  CHECK(r.res() == -ECANCELED);

  // Data written after the cancel stays in the pipe: the cancelled read consumed nothing.
  REQUIRE(::write(pipe->write.get(), "ab", 2) == 2);
  char got[4] = {};
  CHECK(::read(pipe->read.get(), got, sizeof got) == 2);
}

TEST_CASE("ring: has_waitid() is true on this kernel (IORING_OP_WAITID, 6.7+)", "[ring]") {
  auto ring = make_ring();
  CHECK(ring->has_waitid());
}

TEST_CASE("ring: wait_exit on a pidfd completes with 0 and CLD_EXITED + the exit code",
          "[ring]") {
  auto ring = make_ring();
  Child child = spawn_child(42);
  siginfo_t info;
  std::memset(&info, 0xff, sizeof info);
  Recorder w;
  ring->wait_exit(child.pidfd.get(), &info, w);
  REQUIRE(run_until(*ring, [&] { return w.done(); }));
  CHECK(w.results.size() == 1);
  REQUIRE(w.res() == 0);
  CHECK(info.si_signo == SIGCHLD);
  CHECK(info.si_code == CLD_EXITED);
  CHECK(info.si_status == 42);
  CHECK(info.si_pid == child.pid);
  // The child was reaped by the ring: nothing is left for waitpid.
  CHECK(::waitpid(child.pid, nullptr, WNOHANG) == -1);
  CHECK(errno == ECHILD);
}

TEST_CASE("ring: wait_exit reports a SIGKILLed child as CLD_KILLED with signal 9", "[ring]") {
  auto ring = make_ring();
  Child child = spawn_child(-1);
  siginfo_t info{};
  Recorder w, tick;
  ring->wait_exit(child.pidfd.get(), &info, w);
  ring->timeout(5ms, tick);
  REQUIRE(run_until(*ring, [&] { return tick.done(); }));
  CHECK_FALSE(w.done());  // still running: the wait is pending, not failed

  REQUIRE(::syscall(SYS_pidfd_send_signal, child.pidfd.get(), SIGKILL, nullptr, 0) == 0);
  REQUIRE(run_until(*ring, [&] { return w.done(); }));
  REQUIRE(w.res() == 0);
  CHECK(info.si_code == CLD_KILLED);
  CHECK(info.si_status == SIGKILL);
  CHECK(info.si_pid == child.pid);
}

TEST_CASE("ring: run_once returns the number of completions it dispatched", "[ring]") {
  auto ring = make_ring();
  auto pipe = base::make_pipe();
  REQUIRE(pipe.ok());
  const std::string a = "a", b = "bb", c = "ccc";
  Recorder ra, rb, rc;
  ring->write(pipe->write.get(), bytes(a), ra);
  ring->write(pipe->write.get(), bytes(b), rb);
  ring->write(pipe->write.get(), bytes(c), rc);
  unsigned total = 0;
  while (total < 3) {
    auto n = ring->run_once();
    REQUIRE(n.ok());
    REQUIRE(*n >= 1);  // it waits for at least one
    total += *n;
  }
  CHECK(total == 3);
  CHECK(ra.res() == 1);
  CHECK(rb.res() == 2);
  CHECK(rc.res() == 3);
}

TEST_CASE("ring: 1000 timeouts on a 256-entry ring all complete with -ETIME, none early",
          "[ring]") {
  // More SQEs than the submission queue holds: queuing them must hand full batches to the
  // kernel (next_sqe's "SQ full -> submit" path). Durations differ per timeout, so a timespec
  // that did not stay valid until its SQE was submitted shows up as a timeout firing early
  // (or late, or -EINVAL) instead of hiding behind an identical neighbour.
  constexpr int kCount = 1000;
  std::vector<Recorder> recs(kCount);  // declared before the ring: outlives it
  std::vector<std::chrono::milliseconds> after(kCount);
  std::vector<Clock::time_point> queued(kCount);
  auto ring = make_ring(256);
  for (int i = 0; i < kCount; ++i) {
    after[i] = std::chrono::milliseconds(i % 3 == 0 ? 1 : i % 3 == 1 ? 100 : 50);
    queued[i] = Clock::now();
    ring->timeout(after[i], recs[i]);
  }
  int completed = 0;
  const bool all = run_until(
      *ring,
      [&] {
        completed = 0;
        for (const auto& r : recs) completed += r.done() ? 1 : 0;
        return completed == kCount;
      },
      5s);  // every duration is <= 100ms
  int first_pending = -1;
  for (int i = 0; i < kCount && first_pending < 0; ++i)
    if (!recs[i].done()) first_pending = i;
  INFO("first timeout still pending after 5s: #" << first_pending);
  CHECK(all);
  CHECK(completed == kCount);

  int wrong_result = 0, early = 0, twice = 0;
  std::string first_bad;
  for (int i = 0; i < kCount; ++i) {
    const Recorder& r = recs[i];
    if (!r.done()) continue;
    const bool bad_res = r.res() != -ETIME;
    // 1ms slack for clock granularity; a hrtimer never fires before its expiry.
    const bool is_early = r.at - queued[i] < after[i] - 1ms;
    wrong_result += bad_res;
    early += is_early;
    twice += r.results.size() > 1;
    if ((bad_res || is_early) && first_bad.empty())
      first_bad = "timeout #" + std::to_string(i) + " (" + std::to_string(after[i].count()) +
                  "ms) res=" + std::to_string(r.res()) + " after " +
                  std::to_string(std::chrono::duration_cast<std::chrono::microseconds>(
                                     r.at - queued[i]).count()) + "us";
  }
  INFO("first bad: " << first_bad);
  CHECK(wrong_result == 0);
  CHECK(early == 0);
  CHECK(twice == 0);
}

}  // namespace
}  // namespace cellos::reactor
