// FlowProbes: the BPF object, loaded once per reactor, and everything read from it.
//
// load() opens the generated skeleton, sizes the maps and loads the programs; it fails with a
// Result (no BTF, no CAP_BPF, verifier refusal: the libbpf message is in the detail) so the
// reactor can run with probes off and say why. attach() puts the programs on one cell's cgroup.
// The ring buffer carries only births, ends, connects and denials; counters are read with
// drain(). Single-threaded, like the reactor: no method may run concurrently with another.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "base/fd.h"
#include "base/result.h"
#include "ebpf/cell_attachment.h"
#include "ebpf/records.h"

struct flow_probes;  // the bpftool skeleton (flow_probes.skel.h)
struct ring_buffer;

namespace cellos::ebpf {

struct FlowProbeOptions {
  uint32_t max_flows = 65536;          // LRU: the oldest flow is evicted silently when full
  uint32_t max_cells = 4096;           // config entries (cells attached at once)
  uint32_t max_allow_rules = 16384;    // allow-list entries, all cells together
  uint32_t ringbuf_bytes = 256 * 1024; // a power of two, at least one page
  // A bpffs directory to pin the loaded object in and take it from on later loads
  // (probe_pins.h); empty: a private load every time.
  std::string pin_dir;
};

struct ProbeStats {
  uint64_t records_lost = 0;        // ring buffer full when the kernel wrote a record
  uint64_t flows_created = 0;       // entries the programs inserted
  uint64_t flow_create_failed = 0;  // inserts that failed: those packets were not counted
  uint64_t packets_dropped = 0;     // egress packets enforcement dropped
  uint64_t connects_refused = 0;
  uint64_t flows_restarted = 0;     // ended TCP entries a new SYN on their 4-tuple replaced
  uint64_t flows_present = 0;       // entries in the map now
  uint64_t flows_removed = 0;       // entries this object deleted (drain, reset)
  // created - restarted - removed - present: what the LRU evicted, give or take flows born
  // meanwhile.
  uint64_t flows_evicted = 0;
};

struct DrainOptions {
  // Delete flows that have ended (RST, or FIN both ways) after reading them: their final
  // counters are in this drain. A packet racing the delete re-creates the entry (a new birth).
  bool remove_ended = false;
  // ...but only those quiet since this CLOCK_MONOTONIC time (0: any): the last ACK of a FIN
  // exchange comes after the end, and deleting too early would count it as a new flow.
  uint64_t ended_before_ns = 0;
};

// Callbacks run inside libbpf's ring buffer walk or a map walk: they must not throw.
using RecordCallback = std::function<void(const FlowRecord&)>;
using FlowCallback = std::function<void(const Flow&)>;

class FlowProbes {
 public:
  static base::Result<std::unique_ptr<FlowProbes>> load(const FlowProbeOptions& options);
  // Taken from pins another reactor loaded (no load, no verifier): see probe_pins.h.
  bool reused() const { return reused_; }
  // Loaded here and pinned for the next reactors (or reused): this one holds the pin lock.
  bool pinned() const { return pin_lock_.valid(); }
  // Why the object is not pinned when pin_dir was set ("" when pinned).
  const std::string& pin_note() const { return pin_note_; }
  // The pin directory this reactor holds ("" when not pinned): where the hook keeper's links
  // are pinned (hook_keeper.h).
  const std::string& pin_path() const { return pin_path_; }
  ~FlowProbes();
  FlowProbes(const FlowProbes&) = delete;
  FlowProbes& operator=(const FlowProbes&) = delete;

  // Writes the cell's config and allow-list, then attaches the four programs to its cgroup.
  // EEXIST if that cgroup is attached already.
  base::Result<CellAttachment> attach(const CellAttachOptions& options);
  // One allow-list entry of an attached cell, added or removed while it runs (the addresses a
  // cell's DNS answers open: cells/cell_dns.h). Removing an absent one changes nothing.
  base::Result<void> add_allow(uint64_t cgroup_id, const AllowRule& r);
  void remove_allow(uint64_t cgroup_id, const AllowRule& r);

  // Readable (poll/IORING_OP_POLL_ADD) when records are waiting: ring_buffer__epoll_fd.
  int ringbuf_fd() const;
  // Hands every waiting record to `cb`, without blocking. Returns how many.
  base::Result<size_t> consume(const RecordCallback& cb);

  // Current counters of every flow of one cell (or of all cells), read in batches.
  base::Result<size_t> drain(uint64_t cgroup_id, const DrainOptions& options,
                             const FlowCallback& cb);
  base::Result<size_t> drain_all(const DrainOptions& options, const FlowCallback& cb);

  // Sums the per-CPU counters and counts the flow map (one pass over it).
  base::Result<ProbeStats> stats();
  // The per-CPU counters alone (one lookup): flows_present/removed/evicted stay 0.
  base::Result<ProbeStats> counters();

  // Kernel-measured run time of each program (needs stats enabled: hold enable_run_stats()).
  struct ProgramStats {
    std::string name;
    uint64_t run_count = 0, run_time_ns = 0;
  };
  base::Result<std::vector<ProgramStats>> program_stats() const;
  // BPF_ENABLE_STATS(BPF_STATS_RUN_TIME): the kernel times every program run while the
  // returned fd is open (it costs a clock read per run, so only for measurement).
  static base::Result<base::Fd> enable_run_stats();

  // Entries one cell holds in each map: for tests and for proving teardown removed them.
  struct CellEntries {
    size_t flows = 0, allow_rules = 0;
    bool config = false;
  };
  base::Result<CellEntries> entries_of(uint64_t cgroup_id);

 private:
  friend class CellAttachment;
  FlowProbes() = default;
  // Deletes every entry of a cell; errors are counted, not returned (teardown cannot fail).
  void forget_cell(uint64_t cgroup_id, const std::vector<AllowRule>& allow);
  base::Result<size_t> walk_flows(uint64_t cgroup_id, bool all, const DrainOptions& options,
                                  const FlowCallback& cb);

  // Empties every map, zeroes the counters, discards unread records: a reused object then
  // looks like a fresh one (probe_pins.h says why that is all a previous user leaves).
  void reset_for_reuse();

  struct SkelDeleter { void operator()(::flow_probes* s) const; };
  struct RingDeleter { void operator()(::ring_buffer* r) const; };
  // A fresh load's skeleton (null when the object was reused from its pins).
  std::unique_ptr<::flow_probes, SkelDeleter> skel_;
  // The objects' descriptors either way: the skeleton's, or held_'s (bpf_obj_get). Maps in
  // kPinnedMaps order, programs in kPinnedProgs order.
  struct Objects {
    int flows = -1, cell_config = -1, cell_storage = -1, allow = -1, events = -1, stats = -1;
    int progs[4] = {-1, -1, -1, -1};
  } obj_;
  std::vector<base::Fd> held_;
  base::Fd pin_lock_;
  std::string pin_path_;         // the locked pin directory ("" when not pinned)
  bool keeper_checked_ = false;  // hook_keeper.h: looked at once, by the first attach
  // The flow map was empty at load or reset and no program has made a flow since (while
  // flows_created reads 0): walks are skipped (walk_flows).
  bool flows_known_empty_ = false;
  bool reused_ = false;
  std::string pin_note_;
  std::unique_ptr<::ring_buffer, RingDeleter> ring_;
  const RecordCallback* consuming_ = nullptr;  // the callback of the consume() in progress
  uint64_t flows_removed_ = 0;
};

}  // namespace cellos::ebpf
