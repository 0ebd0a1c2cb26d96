#include "flows/flow_accumulator.h"

#include <arpa/inet.h>

#include <algorithm>
#include <map>
#include <tuple>

namespace cellos::flows {
namespace {

bool went_backwards(const FlowCounts& now, const FlowCounts& before) {
  return now.tx_packets < before.tx_packets || now.rx_packets < before.rx_packets ||
         now.tx_bytes < before.tx_bytes || now.rx_bytes < before.rx_bytes;
}

void add_delta(FlowCounts& into, const FlowCounts& now, const FlowCounts& base) {
  into.tx_packets += now.tx_packets - base.tx_packets;
  into.tx_bytes += now.tx_bytes - base.tx_bytes;
  into.rx_packets += now.rx_packets - base.rx_packets;
  into.rx_bytes += now.rx_bytes - base.rx_bytes;
}

void widen_times(FlowCounts& c, int64_t first, int64_t last) {
  if (first && (!c.first_us || first < c.first_us)) c.first_us = first;
  if (last > c.last_us) c.last_us = last;
}

}  // namespace

size_t FlowTupleHash::operator()(const FlowTuple& t) const {
  // FNV-1a over the fields: flows per cell are few, any decent spread will do.
  uint64_t h = 1469598103934665603ull;
  auto mix = [&](const void* p, size_t n) {
    const auto* b = static_cast<const uint8_t*>(p);
    for (size_t i = 0; i < n; ++i) h = (h ^ b[i]) * 1099511628211ull;
  };
  mix(&t.family, 1);
  mix(&t.protocol, 1);
  mix(t.local.data(), t.local.size());
  mix(t.remote.data(), t.remote.size());
  mix(&t.local_port, 2);
  mix(&t.remote_port, 2);
  mix(&t.outbound, 1);
  return static_cast<size_t>(h);
}

std::string address_text(uint8_t family, const std::array<uint8_t, 16>& addr) {
  char buf[INET6_ADDRSTRLEN] = {};
  if (!::inet_ntop(family == AF_INET6 ? AF_INET6 : AF_INET, addr.data(), buf, sizeof buf))
    return "?";
  return buf;
}

std::string protocol_text(uint8_t protocol) {
  switch (protocol) {
    case IPPROTO_TCP: return "tcp";
    case IPPROTO_UDP: return "udp";
    case IPPROTO_ICMP: return "icmp";
    case IPPROTO_ICMPV6: return "icmpv6";
    default: return std::to_string(protocol);
  }
}

FlowAccumulator::FlowAccumulator(FlowAccumulatorOptions options) : opts_(std::move(options)) {}

void FlowAccumulator::observe(const FlowTuple& t, const FlowCounts& cumulative, bool ended,
                              int64_t now_us) {
  auto [it, fresh] = flows_.try_emplace(t);
  Flow& f = it->second;
  if (fresh) {
    f.tuple = t;
    f.reason = opts_.allow_reason ? opts_.allow_reason(t) : "unmatched";
  }
  if (went_backwards(cumulative, f.kernel)) {
    // The kernel's entry started over. After an end it is the same 5-tuple used again (a new
    // connection); otherwise the LRU map dropped the entry between two drains and what it
    // counted since the previous drain is gone.
    if (!f.ended) ++evicted_;
    f.kernel = {};
  }
  if (f.ended && !ended && f.end_reported) f.ended = f.end_reported = false;  // reused tuple
  add_delta(f.seen, cumulative, f.kernel);
  widen_times(f.seen, cumulative.first_us, cumulative.last_us ? cumulative.last_us : now_us);
  f.kernel = cumulative;
  if (ended) f.ended = true;  // reported at the next tick, so the final ACK is in the report
}

void FlowAccumulator::deny(const FlowTuple& t, uint64_t packets, uint64_t bytes,
                           const std::string& reason, int64_t now_us) {
  FlowTuple key = t;
  key.local_port = 0;  // one denied flow per destination (see the header)
  auto [it, fresh] = flows_.try_emplace(key);
  Flow& f = it->second;
  if (fresh) {
    f.tuple = key;
    f.denied = true;
    f.reason = reason;
  }
  f.seen.tx_packets += packets;
  f.seen.tx_bytes += bytes;
  widen_times(f.seen, now_us, now_us);
  if (fresh) report(f, "denied", now_us);
}

void FlowAccumulator::denied_sample(const FlowTuple& t, uint64_t packets, uint64_t bytes,
                                    const std::string& reason, int64_t now_us) {
  auto [it, fresh] = deny_kernel_.try_emplace(t);
  DenySeen& seen = it->second;
  // Entries are never deleted while the cell runs, so counts only grow; a smaller one means
  // the LRU evicted the entry and a new one started from zero.
  if (packets < seen.packets || bytes < seen.bytes) {
    ++evicted_;
    seen = {};
  }
  uint64_t dp = packets - seen.packets, db = bytes - seen.bytes;
  seen = {packets, bytes};
  if (fresh || dp || db) deny(t, dp, db, reason, now_us);
}

bool FlowAccumulator::has_news(const Flow& f) const {
  return f.seen.tx_packets != f.reported.tx_packets || f.seen.rx_packets != f.reported.rx_packets ||
         f.seen.tx_bytes != f.reported.tx_bytes || f.seen.rx_bytes != f.reported.rx_bytes;
}

void FlowAccumulator::report(Flow& f, const char* phase, int64_t now_us) {
  const FlowTuple& t = f.tuple;
  sinks::FlowDecisionData d;
  d.cell_id = opts_.cell_id;
  d.direction = t.outbound ? "egress" : "ingress";
  d.allowed = !f.denied;
  d.reason_code = f.reason;
  d.protocol = protocol_text(t.protocol);
  std::string local = address_text(t.family, t.local), remote = address_text(t.family, t.remote);
  d.src_addr = t.outbound ? local : remote;
  d.src_port = t.outbound ? t.local_port : t.remote_port;
  d.dst_addr = t.outbound ? remote : local;
  d.dst_port = t.outbound ? t.remote_port : t.local_port;
  d.tx_packets = f.seen.tx_packets - f.reported.tx_packets;
  d.tx_bytes = f.seen.tx_bytes - f.reported.tx_bytes;
  d.rx_packets = f.seen.rx_packets - f.reported.rx_packets;
  d.rx_bytes = f.seen.rx_bytes - f.reported.rx_bytes;
  d.packets = d.tx_packets + d.rx_packets;
  d.bytes = d.tx_bytes + d.rx_bytes;
  d.first_seen_us = f.seen.first_us;
  d.last_seen_us = f.seen.last_us;
  d.phase = phase;
  f.reported = f.seen;
  f.last_report_us = now_us;
  if (opts_.emit) opts_.emit(std::move(d));
}

void FlowAccumulator::tick(int64_t now_us) {
  const int64_t interval_us =
      std::chrono::duration_cast<std::chrono::microseconds>(opts_.report_interval).count();
  for (auto& [tuple, f] : flows_) {
    if (f.ended && !f.end_reported) {
      report(f, "end", now_us);
      f.end_reported = true;
    } else if (has_news(f) && now_us - f.last_report_us >= interval_us) {
      report(f, f.denied ? "denied" : f.ended ? "end" : "live", now_us);
    }
  }
}

sinks::FlowSummaryData FlowAccumulator::finish(int64_t now_us) {
  sinks::FlowSummaryData s;
  s.probes = opts_.probes;
  using DestKey = std::tuple<uint8_t, std::array<uint8_t, 16>, uint16_t, uint8_t>;
  std::map<DestKey, sinks::FlowDestinationData> dests;
  for (auto& [tuple, f] : flows_) {
    if (f.denied) {
      if (has_news(f)) report(f, "denied", now_us);
      ++s.denied_flows;
      s.denied_packets += f.seen.tx_packets;
      continue;
    }
    if (!f.end_reported || has_news(f)) report(f, "end", now_us);
    f.end_reported = true;
    ++s.flows;
    s.tx_packets += f.seen.tx_packets;
    s.tx_bytes += f.seen.tx_bytes;
    s.rx_packets += f.seen.rx_packets;
    s.rx_bytes += f.seen.rx_bytes;
    if (!tuple.outbound) continue;  // the other end opened it: not a destination of the cell
    auto& d = dests[{tuple.family, tuple.remote, tuple.remote_port, tuple.protocol}];
    if (d.flows == 0) {
      d.addr = address_text(tuple.family, tuple.remote);
      d.port = tuple.remote_port;
      d.protocol = protocol_text(tuple.protocol);
    }
    ++d.flows;
    d.packets += f.seen.tx_packets + f.seen.rx_packets;
    d.bytes += f.seen.tx_bytes + f.seen.rx_bytes;
  }
  for (auto& [k, d] : dests) s.top_destinations.push_back(std::move(d));
  std::stable_sort(s.top_destinations.begin(), s.top_destinations.end(),
                   [](const auto& a, const auto& b) { return a.bytes > b.bytes; });
  if (s.top_destinations.size() > opts_.top_destinations)
    s.top_destinations.resize(opts_.top_destinations);
  s.lost_records = lost_records_;
  s.nflog_gaps = nflog_gaps_;
  s.evicted_flows = evicted_;
  return s;
}

}  // namespace cellos::flows
