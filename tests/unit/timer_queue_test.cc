// The reactor's timer queue (reactor/timer_queue.h) and the ring's timers on top of it: timers
// complete in deadline order, a cancel takes a timer out without the kernel, a timer armed while
// due ones complete waits for the next turn of the loop, and a timer cancelled while the ring is
// completing due ones still completes exactly once.
#include <catch2/catch.hpp>
#include <chrono>
#include <vector>

#include "base/io.h"
#include "reactor/ring.h"
#include "reactor/timer_queue.h"

namespace cellos::reactor {
namespace {

using namespace std::chrono_literals;
using Clock = TimerQueue::Clock;

struct Rec final : base::Completion {
  std::vector<int> results;
  std::function<void()> then;
  void complete(int res) override {
    results.push_back(res);
    if (then) then();
  }
};

}  // namespace

TEST_CASE("timer queue: due timers come out in deadline order, then in the order added", "[timers]") {
  TimerQueue q;
  Rec a, b, c, d;
  const auto t0 = Clock::now();
  q.add(t0 + 30ms, a);
  q.add(t0 + 10ms, b);
  q.add(t0 + 10ms, c);
  q.add(t0 + 1h, d);
  CHECK(q.size() == 4);
  CHECK(*q.earliest() == t0 + 10ms);
  const uint64_t all = q.next_seq();
  CHECK(q.pop_due(t0, all) == nullptr);  // nothing due yet
  CHECK(q.pop_due(t0 + 40ms, all) == &b);
  CHECK(q.pop_due(t0 + 40ms, all) == &c);
  CHECK(q.pop_due(t0 + 40ms, all) == &a);
  CHECK(q.pop_due(t0 + 40ms, all) == nullptr);
  CHECK(q.size() == 1);
  CHECK(q.remove(d));
  CHECK_FALSE(q.remove(d));  // not queued any more
  CHECK_FALSE(q.earliest().has_value());
}

TEST_CASE("timer queue: a timer added during a turn is not due in that turn", "[timers]") {
  TimerQueue q;
  Rec a, late;
  const auto t0 = Clock::now();
  q.add(t0, a);
  const uint64_t turn = q.next_seq();
  q.add(t0 - 1ms, late);  // earlier deadline, but added after the turn began
  CHECK(q.pop_due(t0 + 1ms, turn) == &a);
  CHECK(q.pop_due(t0 + 1ms, turn) == nullptr);
  CHECK(q.pop_due(t0 + 1ms, q.next_seq()) == &late);
}

namespace {

std::unique_ptr<Ring> ring_for_test() {
  auto r = Ring::create(RingOptions{});
  REQUIRE(r.ok());
  return std::move(r).value();
}

template <typename F>
void run_until(Ring& ring, F done) {
  const auto give_up = Clock::now() + 10s;
  while (!done() && Clock::now() < give_up) REQUIRE(ring.run_once().ok());
  REQUIRE(done());
}

}  // namespace

TEST_CASE("ring timers: many timers complete in deadline order, each once, none early", "[timers][ring]") {
  auto ring = ring_for_test();
  std::vector<Rec> recs(300);
  // The ring takes each deadline between these two instants.
  std::vector<Clock::time_point> earliest(recs.size()), latest(recs.size()), fired(recs.size());
  std::vector<size_t> order;
  for (size_t i = 0; i < recs.size(); ++i) {
    // Interleaved durations: 300 timers, 30 distinct ones, added out of order (a loaded
    // machine spreads the adding out, so the deadlines are noted as bounds).
    const auto after = std::chrono::milliseconds(1 + static_cast<int>((i * 7) % 30));
    earliest[i] = Clock::now() + after;
    recs[i].then = [&order, &fired, i] {
      fired[i] = Clock::now();
      order.push_back(i);
    };
    ring->timeout(after, recs[i]);
    latest[i] = Clock::now() + after;
  }
  run_until(*ring, [&] { return order.size() == recs.size(); });
  for (size_t i = 0; i < recs.size(); ++i) {
    INFO("timer " << i);
    REQUIRE(recs[i].results == std::vector<int>{-ETIME});
    CHECK(fired[i] >= earliest[i]);  // none early
  }
  // Completed in the order of their deadlines: one completed before another had a deadline
  // no later than the other's.
  for (size_t k = 1; k < order.size(); ++k) {
    INFO("position " << k);
    CHECK(earliest[order[k - 1]] <= latest[order[k]]);
  }
}

TEST_CASE("ring timers: a cancel from a due timer's handler still completes the other once", "[timers][ring]") {
  auto ring = ring_for_test();
  Rec first, second, queued;
  // Both due in the same turn: the first one's handler cancels the second (due: it completes
  // with -ETIME, once) and a later one (queued: -ECANCELED, on the next run_once).
  first.then = [&] {
    ring->cancel(second);
    ring->cancel(queued);
  };
  ring->timeout(2ms, first);
  ring->timeout(2ms, second);
  ring->timeout(1h, queued);
  run_until(*ring, [&] { return !second.results.empty() && !queued.results.empty(); });
  // A few more turns: nothing completes twice.
  Rec tick;
  ring->timeout(5ms, tick);
  run_until(*ring, [&] { return !tick.results.empty(); });
  CHECK(first.results == std::vector<int>{-ETIME});
  CHECK(second.results == std::vector<int>{-ETIME});
  CHECK(queued.results == std::vector<int>{-ECANCELED});
}

TEST_CASE("ring timers: a zero timer re-armed by its own handler yields to the loop", "[timers][ring]") {
  auto ring = ring_for_test();
  Rec spin, other;
  int spins = 0;
  spin.then = [&] {
    if (++spins < 1000 && other.results.empty()) ring->timeout(0ns, spin);
  };
  ring->timeout(0ns, spin);
  ring->timeout(0ns, other);
  run_until(*ring, [&] { return !other.results.empty(); });
  // Due together with the first spin: it completes in that turn or the next, never behind a
  // handler that keeps re-arming itself.
  CHECK(spins <= 2);
}

}  // namespace cellos::reactor
