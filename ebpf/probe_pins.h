// Pinning the flow probes in bpffs, so a host loads and verifies them once, not per `run`.
//
// Loading the object costs tens of milliseconds (the LRU flow map is preallocated, the vmlinux
// BTF is parsed for CO-RE, the verifier walks each program): more than a whole cell without
// egress. So the first reactor that loads it pins its maps and programs under
// <root>/<digest>/ and later reactors (`run` after `run`, the daemon) take them from there
// with bpf_obj_get, a few microseconds each.
//
// Why reuse is safe:
//  - One user at a time. The user holds an exclusive flock on the pin directory for its whole
//    life; the kernel drops it when the process ends, however it ends. A reactor that finds it
//    held (a daemon running, a concurrent `run`) loads a private object as before: no two
//    reactors ever share a ring buffer or delete each other's flow entries.
//  - Nothing of the previous user stays in effect. Its cells' programs were attached through
//    link fds (bpf_link.h), which the kernel detaches when they close, so after it is gone the
//    programs run for no cgroup; the new user then empties every map, zeroes the counters and
//    discards the ring buffer's unread records before its first attach (reset_for_reuse), so
//    it sees what a fresh load would give it.
//  - Only an identical object is reused. <digest> covers the embedded ELF (programs, map
//    definitions and, through its BTF, the layouts shared with user space), the map sizes
//    and the kernel release. A directory with another digest is stale (another build, other
//    sizes): it is removed by the next fresh load (one that found no usable pins) that can
//    lock it; a reuse does not look (it stays a lock and ten bpf_obj_gets).
//
// Clean-up: pins live in bpffs (memory) until reboot or until removed. `rm -r <root>` while
// no reactor runs frees everything (the flow map's preallocated entries are the bulk:
// max_flows x ~150 bytes), the hook keeper's links (`keep_*`, hook_keeper.h) included; its
// empty cgroup `cellos/.bpf-keep` goes with `rmdir`. `[flows] bpf_pin_dir = ""` turns
// pinning, and so the keeper, off.
#pragma once

#include <span>
#include <string>
#include <vector>

#include "base/fd.h"
#include "base/result.h"

namespace cellos::ebpf {

// The pinned objects, in this order: maps, then the programs FlowProbes attaches.
inline constexpr const char* kPinnedMaps[] = {"flows", "cell_config", "cell_storage",
                                              "allow", "events",      "stats"};
inline constexpr const char* kPinnedProgs[] = {"cellos_egress", "cellos_ingress",
                                               "cellos_connect4", "cellos_connect6"};

// A hex digest (64-bit FNV-1a: a version check among trusted builds, not a security
// boundary; the directory is root's, mode 0700) of the object's bytes and `parameters`.
std::string probe_digest(std::span<const std::byte> elf, const std::string& parameters);

// <root>/<digest>, created if missing, opened and exclusively locked. <root>'s parent must be
// a bpffs; when it is /sys/fs/bpf and nothing is mounted there, a bpffs is mounted (mode
// 0700), as systemd does at boot. An error means "load a private object": the directory is
// held by another reactor (EWOULDBLOCK), or there is no bpffs to pin in.
struct PinDir {
  base::Fd dir;  // flock'ed: the lock lasts as long as this descriptor
  std::string path;
};
base::Result<PinDir> lock_pin_dir(const std::string& root, const std::string& digest);

// Every object `names` names, from the directory; fails if any is missing.
base::Result<std::vector<base::Fd>> get_pins(const PinDir& d,
                                             const std::vector<std::string>& names);
// Pins fds[i] as names[i]; on failure, what was pinned is removed again.
base::Result<void> pin_all(const PinDir& d, const std::vector<std::string>& names,
                           const std::vector<int>& fds);
// Unlinks every entry of the (locked) directory: a partial set left by a crashed loader.
void clear_pins(const PinDir& d);
// Removes every directory under `root` but `keep` that no reactor holds.
void remove_stale_pins(const std::string& root, const std::string& keep);

}  // namespace cellos::ebpf
