#include "flows/flow_monitor.h"

#include <poll.h>
#include <time.h>

#include <cstdio>
#include <cstring>

#include "cells/rootless.h"
#include "ebpf/cgroup_id.h"

namespace cellos::flows {
namespace {

int64_t clock_us(clockid_t id) {
  timespec ts{};
  ::clock_gettime(id, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000000 + ts.tv_nsec / 1000;
}

FlowTuple tuple_of(const ebpf::FlowKey& k, bool outbound) {
  return {static_cast<uint8_t>(k.family), k.l4proto,    k.local_addr, k.remote_addr,
          k.local_port,                   k.remote_port, outbound};
}

bool in_prefix(const netns::EgressTarget& g, const FlowTuple& t) {
  if ((g.family == AF_INET6) != (t.family == AF_INET6)) return false;
  int bits = g.prefix_len;
  for (int i = 0; bits > 0; ++i, bits -= 8) {
    uint8_t mask = bits >= 8 ? 0xff : static_cast<uint8_t>(0xff << (8 - bits));
    if ((g.addr[i] & mask) != (t.remote[i] & mask)) return false;
  }
  return true;
}

bool is_loopback(const FlowTuple& t) {
  if (t.family == AF_INET) return t.remote[0] == 127;
  static const std::array<uint8_t, 16> kV6Loopback{0, 0, 0, 0, 0, 0, 0, 0,
                                                   0, 0, 0, 0, 0, 0, 0, 1};
  return t.remote == kV6Loopback;
}

// Denied traffic is named by the policy that refused it, the same whichever layer enforced:
// nft's log rule, BPF's egress drop and BPF's connect() refusal all mean "matched no declared
// rule" (so the three modes give the same events for the same traffic).
constexpr const char* kDenyReason = "egress_default_deny";

}  // namespace

std::string allow_reason(const std::vector<netns::EgressTarget>& targets,
                         const FlowTuple& t) {
  if (is_loopback(t)) return "loopback";
  for (const auto& g : targets)
    if (g.l4proto == t.protocol && g.port == t.remote_port && in_prefix(g, t)) return g.tag;
  return "unmatched";
}

std::unique_ptr<FlowMonitor> FlowMonitor::create(FlowMonitorOptions options) {
  std::unique_ptr<FlowMonitor> m(new FlowMonitor(std::move(options)));
  m->enforcement_ = m->opts_.config->network.enforcement;
  return m;
}

void FlowMonitor::load() {
  if (loaded_) return;
  loaded_ = true;
  const cells::Config& cfg = *opts_.config;
  if (!cfg.flows.probes && !cfg.network.bpf_enforces()) {
    off_reason_ = "flows.probes = false";
    return;
  }
  // Rootless (cells/rootless.h): the kernel refuses BPF to a user namespace's root, so it is
  // not tried; said plainly instead of as the loader's EPERM.
  if (cells::running_rootless()) {
    off_reason_ = cells::kRootlessProbesReason;
    if (cfg.network.bpf_enforces()) enforcement_ = "nft";
    std::fprintf(stderr, "cellos-reactor: flow probes off: %s; nft enforces egress\n",
                 off_reason_.c_str());
    return;
  }
  ebpf::FlowProbeOptions po;
  // Each cell's entries are few; leave room for thousands of cells.
  po.max_cells = static_cast<uint32_t>(std::max<uint64_t>(cfg.host.max_concurrent_cells * 2, 64));
  po.max_flows = static_cast<uint32_t>(cfg.flows.max_flows);
  po.pin_dir = cfg.flows.bpf_pin_dir;
  auto probes = ebpf::FlowProbes::load(po);
  if (!probes) {
    off_reason_ = probes.error().message();
    std::string fallback;
    if (cfg.network.bpf_enforces()) {
      // Never unenforced: the nft ruleset takes over what BPF would have done.
      enforcement_ = "nft";
      fallback = "; network.enforcement \"" + cfg.network.enforcement + "\" falls back to \"nft\"";
    }
    std::fprintf(stderr, "cellos-reactor: flow probes off: %s%s\n", off_reason_.c_str(),
                 fallback.c_str());
    return;
  }
  probes_ = std::move(*probes);
  arm_poll();
}

FlowMonitor::FlowMonitor(FlowMonitorOptions o) : opts_(std::move(o)) {
}

FlowMonitor::~FlowMonitor() {
  // Pending operations point at this object: cancel them; the owner destroys the ring (which
  // drops unfinished completions) or runs it before freeing us.
  if (poll_op_.busy()) opts_.io->cancel(poll_op_);
  if (drain_op_.busy()) opts_.io->cancel(drain_op_);
}

void FlowMonitor::announce() {
  load();
  if (announced_ || !opts_.events) return;
  announced_ = true;
  const cells::Config& cfg = *opts_.config;
  const bool active = probes_ != nullptr && cfg.flows.probes;
  // Loaded for BPF enforcement with accounting off: the probes run, but count nothing.
  std::string reason = active ? "" : !cfg.flows.probes ? "flows.probes = false" : off_reason_;
  opts_.events->emit(
      sinks::make_event(sinks::FlowProbesData{cfg.host.id, active, enforcement_, reason}));
  if (enforcement_ == "none")
    std::fprintf(stderr,
                 "cellos-reactor: network.enforcement = \"none\": cells' egress is NOT "
                 "enforced (a benchmark baseline)\n");
}

int64_t FlowMonitor::now_us() const { return clock_us(CLOCK_REALTIME); }

int64_t FlowMonitor::realtime_us(uint64_t mono_ns) const {
  if (mono_ns == 0) return 0;
  return clock_us(CLOCK_REALTIME) - clock_us(CLOCK_MONOTONIC) + static_cast<int64_t>(mono_ns / 1000);
}

void FlowMonitor::arm_poll() {
  if (!probes_ || poll_op_.busy()) return;
  opts_.io->poll(probes_->ringbuf_fd(), POLLIN, poll_op_.arm());
}

void FlowMonitor::on_ringbuf(int res) {
  if (res == -ECANCELED || !probes_) return;
  consume();
  arm_poll();
}

void FlowMonitor::consume() {
  auto n = probes_->consume([this](const ebpf::FlowRecord& r) {
    if (r.kind == ebpf::RecordKind::connect) return;  // the flow's birth follows
    route(r.flow);
  });
  if (!n) std::fprintf(stderr, "cellos-reactor: flow probes: %s\n", n.error().message().c_str());
}

void FlowMonitor::route(const ebpf::Flow& f) {
  auto it = cells_.find(f.key.cgroup_id);
  if (it == cells_.end()) return;  // a cell already finished (its entries are being removed)
  CellFlows& c = *it->second;
  const ebpf::FlowCounters& k = f.counters;
  int64_t now = now_us();
  if (k.denied()) {
    FlowTuple t = tuple_of(f.key, true);
    c.acc_.denied_sample(t, k.tx_packets, k.tx_bytes, kDenyReason, now);
    return;
  }
  FlowCounts counts{k.tx_packets, k.tx_bytes, k.rx_packets, k.rx_bytes,
                           realtime_us(k.first_seen_ns), realtime_us(k.last_seen_ns)};
  c.acc_.observe(tuple_of(f.key, !k.origin_ingress()), counts, k.ended(), now);
}

void FlowMonitor::drain(uint64_t cgroup_id, bool all) {
  if (!probes_) return;
  // Ended flows quiet for a whole drain interval are deleted: their last ACK has come, and
  // the map keeps room for live ones.
  timespec ts{};
  ::clock_gettime(CLOCK_MONOTONIC, &ts);
  uint64_t now_ns = static_cast<uint64_t>(ts.tv_sec) * 1000000000ull + static_cast<uint64_t>(ts.tv_nsec);
  uint64_t quiet_ns = opts_.config->flows.drain_interval_ms * 1000000ull;
  ebpf::DrainOptions o{true, now_ns > quiet_ns ? now_ns - quiet_ns : 1};
  auto cb = [this](const ebpf::Flow& f) { route(f); };
  auto n = all ? probes_->drain_all(o, cb) : probes_->drain(cgroup_id, o, cb);
  if (!n) std::fprintf(stderr, "cellos-reactor: flow drain: %s\n", n.error().message().c_str());
  // Records the ring buffer lost are host-wide: charge them to every cell watched meanwhile,
  // so no summary hides them.
  if (auto st = probes_->counters(); st && st->records_lost > lost_seen_) {
    uint64_t lost = st->records_lost - lost_seen_;
    lost_seen_ = st->records_lost;
    for (auto& [id, c] : cells_) c->acc_.add_lost_records(lost);
  }
}

void FlowMonitor::on_drain_timer(int res) {
  if (res == -ECANCELED) return;
  if (probes_) {
    consume();
    drain(0, true);
  }
  int64_t now = now_us();
  for (auto& [id, c] : cells_) c->acc_.tick(now);
  if (!cells_.empty() && !drain_op_.busy()) {
    opts_.io->timeout(std::chrono::milliseconds(opts_.config->flows.drain_interval_ms), drain_op_.arm());
  }
}

void FlowMonitor::watch(CellFlows* c) {
  cells_[c->cgroup_id_] = c;
  c->watched_ = true;
  if (!drain_op_.busy()) {
    opts_.io->timeout(std::chrono::milliseconds(opts_.config->flows.drain_interval_ms), drain_op_.arm());
  }
}

void FlowMonitor::unwatch(CellFlows* c) {
  if (!c->watched_) return;
  cells_.erase(c->cgroup_id_);
  c->watched_ = false;
}

base::Result<std::unique_ptr<CellFlows>> FlowMonitor::open_cell(CellOptions o) {
  announce();
  std::unique_ptr<CellFlows> c(new CellFlows(*this, o));
  // Cells without a cgroup of their own in this map are told apart by a synthetic id; only the
  // nflog side then feeds them.
  c->cgroup_id_ = next_synthetic_++;
  if (probes_) {
    auto id = ebpf::cgroup_id_of(o.cgroup_v2_fd);
    if (!id) return std::move(id).error().context("flow probes");
    c->cgroup_id_ = *id;
    ebpf::CellAttachOptions ao;
    ao.cgroup_fd = o.cgroup_v2_fd;
    ao.cgroup_id = *id;
    ao.account = opts_.config->flows.probes;
    ao.enforce = bpf_enforces();
    ao.keeper_cgroup = o.keeper_cgroup;
    for (const auto& g : o.targets) ao.allow.push_back({g.family, g.addr, g.prefix_len, g.port, g.l4proto});
    auto att = probes_->attach(ao);
    if (!att) return std::move(att).error().context("flow probes");
    c->attachment_ = std::move(*att);
  }
  if (o.net && nft_enforces()) {
    netns::NflogOptions no;
    // Small per cell (networked cells may be thousands): 8 x 4 KiB, ~20 denies per message.
    no.buffers = {8, 4096};
    // A short flush timeout keeps the cell's end (linger()) short.
    no.flush_timeout_cs = 2;
    CellFlows* raw = c.get();
    no.on_record = [raw](const netns::DenyRecord& r) { raw->on_deny(r); };
    auto l = o.net->open_nflog(*opts_.io, std::move(no));
    if (!l) return std::move(l).error().context("nflog");
    c->nflog_ = std::move(*l);
  }
  watch(c.get());
  return c;
}

CellFlows::CellFlows(FlowMonitor& mon, const FlowMonitor::CellOptions& o)
    : mon_(mon),
      targets_(o.targets),
      correlation_id_(o.correlation_id),
      acc_(FlowAccumulatorOptions{
          o.cell_id, std::chrono::milliseconds(mon.opts_.config->flows.report_interval_ms),
          mon.opts_.config->flows.top_destinations,
          mon.probes_active() && mon.opts_.config->flows.probes,
          [this](const FlowTuple& t) { return allow_reason(targets_, t); },
          [this](sinks::FlowDecisionData d) {
            if (!mon_.opts_.events) return;
            auto e = sinks::make_event(std::move(d));
            e.correlation_id = correlation_id_;
            mon_.opts_.events->emit(e);
          }}) {}

CellFlows::~CellFlows() { mon_.unwatch(this); }

bool CellFlows::bpf_enforces() const { return attachment_.attached() && mon_.bpf_enforces(); }

base::Result<void> CellFlows::update_allow(const std::vector<netns::EgressTarget>& add,
                                           const std::vector<netns::EgressTarget>& del) {
  if (!bpf_enforces()) return base::ok();
  for (const auto& g : del) attachment_.disallow({g.family, g.addr, g.prefix_len, g.port, g.l4proto});
  for (const auto& g : add)
    CELLOS_TRY(attachment_.allow({g.family, g.addr, g.prefix_len, g.port, g.l4proto}));
  return base::ok();
}

std::chrono::milliseconds CellFlows::linger() const {
  // The listener's flush timeout (2 cs) plus a margin for the message to reach the ring.
  return nflog_ ? std::chrono::milliseconds(40) : std::chrono::milliseconds(0);
}

bool CellFlows::flush(std::function<void()> done) {
  return nflog_ && nflog_->flush(std::move(done));
}

void CellFlows::on_deny(const netns::DenyRecord& r) {
  // Denied packets are the cell's own: it is the source, and it opened the flow.
  const FlowTuple t{static_cast<uint8_t>(r.family), r.l4proto, r.src, r.dst,
                           r.src_port, r.dst_port, true};
  acc_.deny(t, 1, r.length, r.prefix.empty() ? kDenyReason : r.prefix,
            std::chrono::duration_cast<std::chrono::microseconds>(r.time.time_since_epoch()).count());
}

sinks::FlowSummaryData CellFlows::finish() {
  if (mon_.probes_) {
    mon_.consume();
    mon_.drain(cgroup_id_, false);
  }
  if (nflog_) {
    acc_.add_nflog_gaps(nflog_->gaps());
    nflog_.reset();
  }
  auto summary = acc_.finish(mon_.now_us());
  mon_.unwatch(this);
  attachment_.reset();
  return summary;
}

}  // namespace cellos::flows
