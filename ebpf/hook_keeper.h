// Keeping the kernel's cgroup-BPF hooks switched on between cells (and between `run`s).
//
// The kernel guards every cgroup BPF hook (inet egress/ingress, connect4/6) with a static key:
// the first program attached anywhere on the host for an attach type turns it on, and the last
// one detached turns it off again, each by patching kernel text, which stops every CPU with
// IPIs (perf of a networked `run`: static_key_slow_inc/dec, text_poke, smp_call_function; four
// attaches at 40-80 us each, the four detaches as much again, and one in a few hundred took
// 30 ms on a loaded two-vCPU VM). A one-shot `run` with egress was the first and last user of
// all four hooks every time.
//
// So the reactor that holds the pin directory (probe_pins.h) keeps one link of each program
// attached to an empty cgroup of its own, `.bpf-keep` beside the host parents
// (`<cgroup2>/[<delegated>/]cellos/.bpf-keep`, named by the cell: CellAttachOptions::
// keeper_cgroup), and pins those links next to the object
// (`keep_<program>`): they outlive the reactor, so the keys stay on and a cell's own
// attach/detach is only a list update. No process ever joins that cgroup, so the programs
// never run there. What it costs the host: the four hooks' checks stay armed (one test of an
// empty program array per socket operation or packet), as they are whenever any cell runs.
//
// It goes with the pins: removing the pin directory (or a fresh load clearing it) unpins the
// links, which detaches them. `rmdir .bpf-keep` detaches them too; the next attach notices
// (a kept link whose cgroup is gone reads cgroup id 0) and makes a new one. Nothing here can
// fail a cell: without a keeper the hooks are only switched on and off per cell, as before.
#pragma once

#include <span>
#include <string>

#include "base/result.h"

namespace cellos::ebpf {

// The keeper's directory name, beside the host parents ("cellos/.bpf-keep").
inline constexpr const char* kKeeperCgroup = ".bpf-keep";

// True when the keeper's links (pinned in the pin directory `pin_path`) are attached to a
// live cgroup. Three syscalls: a bpf_obj_get and a link info of the last one pinned.
bool hooks_kept(const std::string& pin_path);

// Makes sure the keeper exists: when hooks_kept() is false, creates the cgroup2 directory
// `keeper_cgroup` (its parent must exist), attaches each of `progs` (in kPinnedProgs order)
// to it and pins the links in `pin_path` (replacing stale ones). The caller holds the pin
// directory's lock, so no other reactor does this at the same time.
base::Result<void> keep_hooks(const std::string& pin_path, const std::string& keeper_cgroup,
                              std::span<const int> progs);

}  // namespace cellos::ebpf
