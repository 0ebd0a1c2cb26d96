// Attaching one cell (FlowProbes::attach) and undoing it (CellAttachment::reset).
#include "ebpf/cell_attachment.h"

#include <algorithm>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include <string>

#include "ebpf/abi.h"
#include "ebpf/flow_probes.h"
#include "ebpf/hook_keeper.h"
#include "ebpf/probe_pins.h"

namespace cellos::ebpf {

CellAttachment::CellAttachment(CellAttachment&& o) noexcept
    : probes_(std::exchange(o.probes_, nullptr)),
      cgroup_id_(std::exchange(o.cgroup_id_, 0)),
      links_(std::move(o.links_)),
      allow_(std::move(o.allow_)) {}

CellAttachment& CellAttachment::operator=(CellAttachment&& o) noexcept {
  if (this != &o) {
    reset();
    probes_ = std::exchange(o.probes_, nullptr);
    cgroup_id_ = std::exchange(o.cgroup_id_, 0);
    links_ = std::move(o.links_);
    allow_ = std::move(o.allow_);
  }
  return *this;
}

void CellAttachment::reset() {
  if (probes_ == nullptr) return;
  // Links first: once detached no program runs for this cgroup, so nothing re-creates the
  // entries deleted next.
  links_.clear();
  probes_->forget_cell(cgroup_id_, allow_);
  probes_ = nullptr;
  allow_.clear();
}

namespace {

std::string cell_name(uint64_t cgroup_id) { return "cgroup " + std::to_string(cgroup_id); }

base::Result<void> check_rule(const AllowRule& r) {
  if (r.family != AF_INET && r.family != AF_INET6)
    return base::value_error("allow rule", "family " + std::to_string(r.family) + " is not IP");
  if (r.l4proto != IPPROTO_TCP && r.l4proto != IPPROTO_UDP)
    return base::value_error("allow rule", "protocol " + std::to_string(r.l4proto) +
                                               " is neither tcp nor udp");
  const int width = r.family == AF_INET ? 32 : 128;
  if (r.prefix_len < 0 || r.prefix_len > width)
    return base::value_error("allow rule", "prefix length " + std::to_string(r.prefix_len));
  return base::ok();
}

}  // namespace

base::Result<CellAttachment> FlowProbes::attach(const CellAttachOptions& o) {
  if (o.cgroup_fd < 0 || o.cgroup_id == 0)
    return base::value_error("ebpf attach", "no cgroup fd or cgroup id");
  for (const AllowRule& r : o.allow) CELLOS_TRY(check_rule(r));

  const std::string cell = cell_name(o.cgroup_id);
  cellos_cell_config cfg{};
  if (o.account) cfg.flags |= CELLOS_CELL_ACCOUNT;
  if (o.enforce) cfg.flags |= CELLOS_CELL_ENFORCE;
  if (o.allow_loopback) cfg.flags |= CELLOS_CELL_ALLOW_LOOPBACK;
  cfg.cgroup_id = o.cgroup_id;
  // NOEXIST: a second attachment would count every packet twice and its teardown would
  // remove the first one's entries.
  if (bpf_map_update_elem(obj_.cell_config, &o.cgroup_id, &cfg,
                          BPF_NOEXIST) != 0)
    return base::sys_error("bpf_map_update_elem", "cell_config " + cell, errno);

  // From here an early return destroys `a`, which undoes whatever was done so far.
  CellAttachment a;
  a.probes_ = this;
  a.cgroup_id_ = o.cgroup_id;
  // Rules before links: the first packet must meet the whole allow-list.
  const int afd = obj_.allow;
  const uint8_t one = 1;
  for (const AllowRule& r : o.allow) {
    const cellos_allow_key k = abi::allow_key(o.cgroup_id, r);
    if (bpf_map_update_elem(afd, &k, &one, BPF_ANY) != 0)
      return base::sys_error("bpf_map_update_elem", "allow " + cell, errno);
    a.allow_.push_back(r);
  }

  // Once per reactor, before its first cell's links: with the hooks kept on, attaching and
  // detaching a cell patches no kernel text (hook_keeper.h). Best effort by design.
  if (!keeper_checked_ && pinned() && !o.keeper_cgroup.empty()) {
    keeper_checked_ = true;
    (void)keep_hooks(pin_path_, o.keeper_cgroup, obj_.progs);
  }
  static constexpr bpf_attach_type kHooks[] = {BPF_CGROUP_INET_EGRESS, BPF_CGROUP_INET_INGRESS,
                                               BPF_CGROUP_INET4_CONNECT, BPF_CGROUP_INET6_CONNECT};
  for (size_t i = 0; i < std::size(kHooks); ++i) {
    const int l = bpf_link_create(obj_.progs[i], o.cgroup_fd, kHooks[i], nullptr);
    if (l < 0)
      return base::sys_error(std::string("bpf_link_create(") + kPinnedProgs[i] + ")", cell,
                             -l);
    a.links_.emplace_back(l);
  }
  // The packet hooks' copy of the config lives in the attachment's cgroup storage, which the
  // kernel created with the first link: fill it now, before the cell runs.
  if (bpf_map_update_elem(obj_.cell_storage, &o.cgroup_id, &cfg, BPF_ANY) != 0)
    return base::sys_error("bpf_map_update_elem", "cell_storage " + cell, errno);
  return a;
}

base::Result<void> FlowProbes::add_allow(uint64_t cgroup_id, const AllowRule& r) {
  CELLOS_TRY(check_rule(r));
  const cellos_allow_key k = abi::allow_key(cgroup_id, r);
  const uint8_t one = 1;
  if (bpf_map_update_elem(obj_.allow, &k, &one, BPF_ANY) != 0)
    return base::sys_error("bpf_map_update_elem", "allow " + cell_name(cgroup_id), errno);
  return base::ok();
}

void FlowProbes::remove_allow(uint64_t cgroup_id, const AllowRule& r) {
  const cellos_allow_key k = abi::allow_key(cgroup_id, r);
  bpf_map_delete_elem(obj_.allow, &k);
}

namespace {
bool same_rule(const AllowRule& a, const AllowRule& b) {
  return a.family == b.family && a.addr == b.addr && a.prefix_len == b.prefix_len &&
         a.port == b.port && a.l4proto == b.l4proto;
}
}  // namespace

base::Result<void> CellAttachment::allow(const AllowRule& r) {
  if (!probes_) return base::ok();
  CELLOS_TRY(probes_->add_allow(cgroup_id_, r));
  if (std::none_of(allow_.begin(), allow_.end(), [&](const AllowRule& a) { return same_rule(a, r); }))
    allow_.push_back(r);
  return base::ok();
}

void CellAttachment::disallow(const AllowRule& r) {
  if (!probes_) return;
  probes_->remove_allow(cgroup_id_, r);
  allow_.erase(std::remove_if(allow_.begin(), allow_.end(),
                              [&](const AllowRule& a) { return same_rule(a, r); }),
               allow_.end());
}

void FlowProbes::forget_cell(uint64_t cgroup_id, const std::vector<AllowRule>& allow) {
  // Teardown cannot fail a cell: a delete that fails (ENOENT: already gone) changes nothing.
  bpf_map_delete_elem(obj_.cell_config, &cgroup_id);
  const int afd = obj_.allow;
  for (const AllowRule& r : allow) {
    const cellos_allow_key k = abi::allow_key(cgroup_id, r);
    bpf_map_delete_elem(afd, &k);
  }
  // The cell's flows: collected first, deleted after, so the batch walk sees a stable map.
  std::vector<cellos_flow_key> keys;
  auto walked = walk_flows(cgroup_id, false, DrainOptions{},
                          [&](const Flow& f) { keys.push_back(abi::encode(f.key)); });
  (void)walked;
  const int ffd = obj_.flows;
  for (const cellos_flow_key& k : keys)
    if (bpf_map_delete_elem(ffd, &k) == 0) flows_removed_++;
}

}  // namespace cellos::ebpf
