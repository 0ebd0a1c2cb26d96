// The flow accumulator's bookkeeping: every packet in exactly one report, evictions counted,
// denies one per destination, the summary's totals and top destinations.
#include <arpa/inet.h>

#include <catch2/catch.hpp>
#include <vector>

#include "flows/flow_accumulator.h"

using namespace cellos;
using flows::FlowCounts;
using flows::FlowTuple;

namespace {

FlowTuple tcp(const char* local, uint16_t lport, const char* remote, uint16_t rport) {
  FlowTuple t;
  t.family = AF_INET;
  t.protocol = IPPROTO_TCP;
  ::inet_pton(AF_INET, local, t.local.data());
  ::inet_pton(AF_INET, remote, t.remote.data());
  t.local_port = lport;
  t.remote_port = rport;
  return t;
}

FlowCounts counts(uint64_t txp, uint64_t txb, uint64_t rxp, uint64_t rxb) {
  return FlowCounts{txp, txb, rxp, rxb, 1000, 2000};
}

struct Harness {
  std::vector<sinks::FlowDecisionData> events;
  flows::FlowAccumulator acc;
  explicit Harness(std::chrono::milliseconds interval = std::chrono::milliseconds(1000))
      : acc(flows::FlowAccumulatorOptions{
            "cell-1", interval, 5, true,
            [](const FlowTuple& t) { return t.remote_port == 443 ? "egress[0]" : "unmatched"; },
            [this](sinks::FlowDecisionData d) { events.push_back(std::move(d)); }}) {}
  uint64_t sum_bytes() const {
    uint64_t n = 0;
    for (const auto& e : events) n += e.bytes;
    return n;
  }
};

}  // namespace

TEST_CASE("a flow's reports add up to its counters, each packet reported once", "[flows]") {
  Harness h;
  auto t = tcp("172.30.0.2", 40000, "172.30.1.1", 443);
  h.acc.observe(t, counts(1, 60, 0, 0), false, 0);  // birth: no report yet
  CHECK(h.events.empty());
  h.acc.observe(t, counts(10, 1000, 8, 5000), false, 500'000);
  h.acc.tick(500'000);  // not an interval since the (never) last report at 0... 0.5 s < 1 s
  CHECK(h.events.empty());
  h.acc.tick(1'000'000);
  REQUIRE(h.events.size() == 1);
  CHECK(h.events[0].phase == "live");
  CHECK(h.events[0].tx_packets == 10);
  CHECK(h.events[0].rx_bytes == 5000);
  CHECK(h.events[0].reason_code == "egress[0]");
  CHECK(h.events[0].src_addr == "172.30.0.2");
  CHECK(h.events[0].dst_port == 443);
  h.acc.tick(3'000'000);  // no news: no report
  CHECK(h.events.size() == 1);
  h.acc.observe(t, counts(12, 1100, 10, 5100), true, 3'100'000);  // FIN
  h.acc.tick(3'200'000);
  REQUIRE(h.events.size() == 2);
  CHECK(h.events[1].phase == "end");
  CHECK(h.events[1].tx_packets == 2);
  CHECK(h.events[1].bytes == 200);
  auto s = h.acc.finish(4'000'000);
  CHECK(h.events.size() == 2);  // everything was reported already
  CHECK(s.flows == 1);
  CHECK(s.tx_packets == 12);
  CHECK(s.rx_bytes == 5100);
  CHECK(h.sum_bytes() == 1100 + 5100);
  CHECK(s.evicted_flows == 0);
}

TEST_CASE("counters that go backwards are an eviction, counted and not double-counted",
          "[flows]") {
  Harness h;
  auto t = tcp("172.30.0.2", 40001, "172.30.1.1", 80);
  h.acc.observe(t, counts(5, 500, 5, 500), false, 0);
  h.acc.observe(t, counts(2, 200, 1, 100), false, 100);  // reborn after an LRU eviction
  auto s = h.acc.finish(200);
  CHECK(s.evicted_flows == 1);
  CHECK(s.tx_packets == 7);
  CHECK(s.rx_bytes == 600);
  REQUIRE(h.events.size() == 1);
  CHECK(h.events[0].reason_code == "unmatched");
  CHECK(h.events[0].bytes == 1300);
}

TEST_CASE("a 5-tuple used again after its end is a new incarnation, not an eviction",
          "[flows]") {
  Harness h;
  auto t = tcp("172.30.0.2", 40002, "172.30.1.1", 443);
  h.acc.observe(t, counts(3, 300, 3, 300), true, 0);
  h.acc.tick(10);
  h.acc.observe(t, counts(1, 60, 0, 0), false, 20);
  auto s = h.acc.finish(30);
  CHECK(s.evicted_flows == 0);
  CHECK(s.tx_packets == 4);
  REQUIRE(h.events.size() == 2);
  CHECK(h.events[1].phase == "end");
  CHECK(h.events[1].tx_packets == 1);
}

TEST_CASE("denies are one flow per destination, reported at once, then at intervals",
          "[flows]") {
  Harness h;
  auto a = tcp("172.30.0.2", 40003, "172.30.9.9", 22);
  auto b = tcp("172.30.0.2", 40004, "172.30.9.9", 22);  // same destination, other port
  h.acc.deny(a, 1, 60, "egress_default_deny", 0);
  REQUIRE(h.events.size() == 1);
  CHECK(!h.events[0].allowed);
  CHECK(h.events[0].phase == "denied");
  CHECK(h.events[0].src_port == 0);
  CHECK(h.events[0].reason_code == "egress_default_deny");
  h.acc.deny(b, 1, 60, "egress_default_deny", 10);
  h.acc.deny(a, 0, 0, "egress_default_deny", 20);  // a refused connect(): no packet
  CHECK(h.events.size() == 1);
  h.acc.tick(2'000'000);
  REQUIRE(h.events.size() == 2);
  CHECK(h.events[1].packets == 1);
  auto s = h.acc.finish(3'000'000);
  CHECK(h.events.size() == 2);
  CHECK(s.denied_flows == 1);
  CHECK(s.denied_packets == 2);
  CHECK(s.flows == 0);
}

TEST_CASE("the summary lists the top destinations by bytes", "[flows]") {
  Harness h;
  for (uint16_t i = 0; i < 8; ++i) {
    auto t = tcp("172.30.0.2", static_cast<uint16_t>(41000 + i), "172.30.1.1",
                 static_cast<uint16_t>(1000 + i));
    h.acc.observe(t, counts(1, 100u * (i + 1), 0, 0), true, 0);
  }
  // A second flow to the smallest destination makes it no larger than the 2nd smallest.
  h.acc.observe(tcp("172.30.0.2", 42000, "172.30.1.1", 1000), counts(1, 50, 0, 0), true, 0);
  auto s = h.acc.finish(10);
  CHECK(s.flows == 9);
  REQUIRE(s.top_destinations.size() == 5);
  CHECK(s.top_destinations[0].port == 1007);
  CHECK(s.top_destinations[0].bytes == 800);
  CHECK(s.top_destinations[4].port == 1003);
  CHECK(h.events.size() == 9);  // one end report per flow
}
