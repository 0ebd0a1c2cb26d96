// Ring, the reactor's io_uring, through the IoPort completion contract (base/io.h): every
// operation completes exactly once, with bytes, 0 or -errno, and only when the kernel is done.
#include "reactor/ring.h"

#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
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

std::unique_ptr<Ring> make_ring(unsigned entries = 256, bool use_waitid = true) {
  auto r = Ring::create(RingOptions{entries, use_waitid});
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
  // Both ways of watching an exit: IORING_OP_WAITID, and the POLL_ADD + waitid fallback.
  const bool use_waitid = GENERATE(true, false);
  INFO("use_waitid " << use_waitid);
  auto ring = make_ring(256, use_waitid);
  CHECK(ring->has_waitid() == use_waitid);
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
  const bool use_waitid = GENERATE(true, false);
  INFO("use_waitid " << use_waitid);
  auto ring = make_ring(256, use_waitid);
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
  // kernel (next_sqe's "SQ full -> submit" path). Each timeout is shorter than the one queued
  // before it, so a timespec that did not stay valid until its SQE was submitted (its memory
  // reused for a later timeout's) shows up as a timeout firing early, and garbage shows up as
  // -EINVAL or one that never fires (the next test makes this deterministic).
  constexpr int kCount = 1000;
  std::vector<Recorder> recs(kCount);  // declared before the ring: outlives it
  std::vector<std::chrono::microseconds> after(kCount);
  std::vector<Clock::time_point> queued(kCount);
  auto ring = make_ring(256);
  for (int i = 0; i < kCount; ++i) {
    after[i] = 1ms + (kCount - i) * 100us;  // 101ms down to 1.1ms
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
      5s);  // every duration is <= 101ms
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
                  "us) res=" + std::to_string(r.res()) + " after " +
                  std::to_string(std::chrono::duration_cast<std::chrono::microseconds>(
                                     r.at - queued[i]).count()) + "us";
  }
  INFO("first bad: " << first_bad);
  CHECK(wrong_result == 0);
  CHECK(early == 0);
  CHECK(twice == 0);
}

TEST_CASE("ring: a timeout queued when the submission queue is full keeps its own duration",
          "[ring]") {
  // 256 short timeouts fill the SQ; the 257th, long one forces next_sqe to submit the batch
  // while it is being queued. The long one must still wait its own 300ms: its timespec has to
  // stay valid until its own SQE reaches the kernel, whatever happens to the batch before it.
  constexpr int kBefore = 256;
  std::vector<Recorder> shorts(kBefore);  // declared before the ring: outlive it
  Recorder long_one;
  auto ring = make_ring(256);
  for (int i = 0; i < kBefore; ++i) ring->timeout(1ms, shorts[i]);
  const auto queued = Clock::now();
  ring->timeout(300ms, long_one);
  // Heap churn before the long one's SQE is submitted: blocks of the size the ring's timespec
  // deque allocates, filled with 1ms timespecs. If the ring had freed the long one's timespec,
  // this reuses (or malloc's free-list metadata clobbers) it, so the bug shows deterministically
  // as an early fire or -EINVAL instead of depending on the heap layout.
  std::vector<std::vector<__kernel_timespec>> churn;
  for (int i = 0; i < 64; ++i) churn.emplace_back(32, __kernel_timespec{0, 1000000});
  for (int i = 0; i < 16; ++i) churn.emplace_back(64, __kernel_timespec{0, 1000000});

  const bool fired = run_until(*ring, [&] { return long_one.done(); }, 5s);
  const auto waited =
      std::chrono::duration_cast<std::chrono::milliseconds>(long_one.at - queued).count();
  INFO("long timeout: res=" << long_one.res() << " after " << waited << "ms");
  REQUIRE(fired);  // a garbage timespec never fires (or fails with -EINVAL)
  CHECK(long_one.res() == -ETIME);
  CHECK(long_one.at - queued >= 299ms);  // a reused timespec fires after 1ms
}

// Records every shot of a multishot receive, copying out each datagram; gives each buffer back
// at once unless `hold` is set (so a test can run the ring out of buffers).
struct ShotRecorder final : base::MultishotCompletion {
  base::BufferRing* ring = nullptr;
  bool hold = false;
  std::vector<base::Shot> shots;
  std::vector<std::string> data;
  std::vector<int> held;
  bool armed = false;
  void shot(const base::Shot& s) override {
    shots.push_back(s);
    armed = s.more;
    if (s.buffer < 0) return;
    auto d = ring->data(s.buffer, static_cast<size_t>(s.res));
    data.emplace_back(reinterpret_cast<const char*>(d.data()), d.size());
    if (hold)
      held.push_back(s.buffer);
    else
      ring->recycle(s.buffer);
  }
};

struct DgramPair {
  base::Fd a, b;
};
DgramPair dgram_pair() {
  int sv[2];
  REQUIRE(::socketpair(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0, sv) == 0);
  return {base::Fd(sv[0]), base::Fd(sv[1])};
}

void send_numbered(int fd, int from, int to) {
  for (int i = from; i < to; ++i) {
    std::string m = "datagram " + std::to_string(i);
    REQUIRE(::send(fd, m.data(), m.size(), 0) == static_cast<ssize_t>(m.size()));
  }
}

TEST_CASE("ring: poll completes with POLLIN once a pipe becomes readable, not before",
          "[ring]") {
  auto ring = make_ring();
  auto pipe = base::make_pipe();
  REQUIRE(pipe.ok());
  Recorder p, tick;
  ring->poll(pipe->read.get(), POLLIN, p);
  ring->timeout(5ms, tick);
  REQUIRE(run_until(*ring, [&] { return tick.done(); }));
  CHECK_FALSE(p.done());
  REQUIRE(::write(pipe->write.get(), "x", 1) == 1);
  REQUIRE(run_until(*ring, [&] { return p.done(); }));
  CHECK(p.results.size() == 1);
  CHECK((p.res() & POLLIN) != 0);
  char c;
  CHECK(::read(pipe->read.get(), &c, 1) == 1);  // poll consumed nothing
}

TEST_CASE("ring: recv_multishot delivers each datagram in its own provided buffer and stays "
          "armed while buffers come back", "[ring]") {
  auto ring = make_ring();
  auto br = ring->buffer_ring({8, 256});
  REQUIRE(br.ok());
  auto sp = dgram_pair();
  ShotRecorder r;
  r.ring = br->get();
  ring->recv_multishot(sp.b.get(), **br, r);
  // Rounds smaller than the ring, so a free buffer is always there when a datagram is.
  for (int round = 0; round < 4; ++round) {
    send_numbered(sp.a.get(), round * 5, round * 5 + 5);
    const size_t want = static_cast<size_t>(round * 5 + 5);
    REQUIRE(run_until(*ring, [&] { return r.data.size() == want || !r.armed; }));
    REQUIRE(r.armed);
  }
  REQUIRE(r.data.size() == 20);
  for (int i = 0; i < 20; ++i) CHECK(r.data[i] == "datagram " + std::to_string(i));
  for (const auto& s : r.shots) {
    CHECK(s.more);
    CHECK(s.buffer >= 0);
    CHECK(s.buffer < 8);
  }

  ring->cancel(r);
  REQUIRE(run_until(*ring, [&] { return !r.armed; }));
  CHECK(r.shots.back().res == -ECANCELED);
  CHECK(r.shots.back().buffer == -1);
}

TEST_CASE("ring: recv_multishot ends with -ENOBUFS when every buffer is out, and re-armed after "
          "the buffers return it loses nothing", "[ring]") {
  auto ring = make_ring();
  auto br = ring->buffer_ring({4, 128});
  REQUIRE(br.ok());
  auto sp = dgram_pair();
  ShotRecorder r;
  r.ring = br->get();
  r.hold = true;
  send_numbered(sp.a.get(), 0, 10);
  ring->recv_multishot(sp.b.get(), **br, r);
  REQUIRE(run_until(*ring, [&] { return !r.shots.empty() && !r.armed; }));
  REQUIRE(r.shots.size() == 5);
  CHECK(r.data.size() == 4);
  CHECK(r.shots.back().res == -ENOBUFS);
  CHECK_FALSE(r.shots.back().more);

  // The owner's recovery: return the buffers, arm again; the socket kept the rest queued. The
  // kernel takes a buffer before it looks for data, so a receive that used the last free buffer
  // ends with -ENOBUFS even when nothing more is queued: re-arm on every -ENOBUFS.
  int enobufs = 1;
  while (r.data.size() < 10) {
    for (int id : r.held) (*br)->recycle(id);
    r.held.clear();
    ring->recv_multishot(sp.b.get(), **br, r);
    REQUIRE(run_until(*ring, [&] { return !r.armed || r.data.size() == 10; }));
    if (!r.armed) {
      REQUIRE(r.shots.back().res == -ENOBUFS);
      ++enobufs;
    }
  }
  CHECK(enobufs == 2);  // 4, then 4 more: all out each time; the last 2 leave 2 buffers free
  REQUIRE(r.armed);
  ring->cancel(r);
  REQUIRE(run_until(*ring, [&] { return !r.armed; }));
  REQUIRE(r.data.size() == 10);
  for (int i = 0; i < 10; ++i) CHECK(r.data[i] == "datagram " + std::to_string(i));
}

TEST_CASE("ring: buffer rings take distinct groups and reject a count that is not a power of two",
          "[ring]") {
  auto ring = make_ring();
  CHECK_FALSE(ring->buffer_ring({3, 64}).ok());
  auto a = ring->buffer_ring({2, 64});
  auto b = ring->buffer_ring({4, 64});
  REQUIRE(a.ok());
  REQUIRE(b.ok());
  // Each ring feeds only its own receive: exhausting one leaves the other's buffers alone.
  auto sa = dgram_pair(), sb = dgram_pair();
  ShotRecorder ra, rb;
  ra.ring = a->get();
  rb.ring = b->get();
  ra.hold = true;
  send_numbered(sa.a.get(), 0, 3);
  send_numbered(sb.a.get(), 0, 2);
  ring->recv_multishot(sa.b.get(), **a, ra);
  ring->recv_multishot(sb.b.get(), **b, rb);
  REQUIRE(run_until(*ring, [&] { return !ra.armed && ra.shots.size() == 3 && rb.data.size() == 2; }));
  CHECK(ra.shots.back().res == -ENOBUFS);
  CHECK(rb.armed);
  ring->cancel(rb);
  REQUIRE(run_until(*ring, [&] { return !rb.armed; }));
  a->reset();  // unregisters; a new ring may take its group again
  auto c = ring->buffer_ring({2, 64});
  CHECK(c.ok());
}

}  // namespace
}  // namespace cellos::reactor

namespace cellos::reactor {
namespace {

TEST_CASE("ring: far more operations than queue slots are all submitted and each completes once") {
  // 4 submission slots (8 completion slots) and 2,000 operations queued before the loop runs:
  // a full submission queue is handed to the kernel, a full completion queue is set aside for
  // run_once, and nothing is lost, doubled or spun on.
  auto ring = make_ring(4);
  std::vector<Recorder> recs(2000);
  for (auto& r : recs) ring->timeout(std::chrono::nanoseconds(0), r);
  auto all_done = [&] {
    for (const auto& r : recs)
      if (!r.done()) return false;
    return true;
  };
  REQUIRE(run_until(*ring, all_done));
  for (const auto& r : recs) {
    REQUIRE(r.results.size() == 1);
    CHECK(r.res() == -ETIME);
  }
}

}  // namespace
}  // namespace cellos::reactor
