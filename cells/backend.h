// Backend: how an admitted cell's command becomes running processes.
//
// The Cell (cell.h) owns everything every backend shares: the id lock, the events, the cgroup
// leaf and its limits, the network namespace with its ruleset and flow probes, the log pumps,
// the TTL, the outcome. A backend owns only what lies between "here is a prepared cell" and
// "here is its root process": the native backend clones into new namespaces and execs the
// cell's init; a gVisor backend would start runsc; a nested backend a reactor of the cell's own.
//
// The contract, for a backend author:
//   - prepare() runs once per cell, before start(), on the reactor thread; it may make what the
//     cell needs on disk (a bundle, a state dir) and must not block on anything slow.
//   - start() creates the cell's root process inside the given cgroup (CLONE_INTO_CGROUP or
//     equivalent: every process of the cell, the backend's own helpers included, must be in
//     the leaf so cgroup.kill and the limits reach them) and returns its pid (and pidfd when
//     asked), the read ends of its stdout and stderr, and a status pipe.
//   - The root process's exit ends the cell. The Cell reaps it through the ring (never a
//     thread, never polling) and kills the whole cell with cgroup.kill, so a backend needs no
//     signal or reap code of its own.
//   - The status pipe carries ChildStatus records (child_status.h) when traits().status_records;
//     otherwise the backend closes its write end and the root process's own exit status is
//     the command's.
//   - Destroying the BackendCell (after the root process is reaped and the leaf is empty)
//     removes whatever prepare() and start() left; it must not block.
//   - traits() says what the backend cannot do, so events and docs can say it too.
#pragma once

#include <sys/types.h>

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "base/fd.h"
#include "base/io.h"
#include "base/result.h"
#include "cells/config.h"

namespace cellos::cells {

class PreparedCell;

struct BackendTraits {
  // The status pipe carries ChildStatus records (setup stage and errno, exec errors, the
  // command's own wait status); false: the root process's exit status is the command's.
  bool status_records = true;
  // The command's packets leave through the cell's network namespace, where its nftables
  // ruleset and the cgroup_skb probes see them.
  bool netns_enforcement = true;
  // Without status records: the root process reports a command killed by signal N as exit
  // status 128+N (as runsc does), which the Cell reads back as that signal.
  bool exit_status_encodes_signals = false;
  // A graceful stop signals the root process only, which passes it on to the command: the
  // leaf holds the backend's own processes (runsc's sandbox and its ptrace stubs), which a
  // SIGTERM would kill under the command instead of warning it.
  bool stop_through_root = false;
  // The status pipe's write end is held by the root process alone (the cell init: its command
  // gets it close-on-exec), so its EOF comes with the root's exit: the Cell then arms its exit
  // wait only at that EOF (cell.cc, Cell::watch_exit says why). False: armed at launch.
  bool status_eof_at_root_exit = true;
};

// What the Cell hands a backend to start the command: all decided, nothing left to look up.
struct StartRequest {
  std::string cell_id;
  std::vector<std::string> argv;
  std::string program;  // the file exec'd with argv (a bare argv[0] resolved); empty: argv[0]
  std::vector<std::string> env;  // "KEY=value", complete: nothing is inherited
  std::string workdir;
  uid_t uid = 65534;  // the cell's own (uid_pool.h)
  gid_t gid = 65534;
  // The root view: host paths bound read-only, and reactor files under them masked
  // (root_view.h). Every backend builds the same view.
  std::vector<std::string> host_paths, masked_paths;
  // spec.inputs (inputs.h): host paths bound read-only at the cell paths of the same index.
  std::vector<std::string> input_host_paths, input_paths;
  // A workspace tmpfs the reactor made and keeps (cell_export.h), or -1: the setup mounts one.
  int workspace_mount_fd = -1;
  int tmp_mount_fd = -1;  // likewise for /tmp (both or neither)
  int cgroup_v2_dirfd = -1;  // the cell's leaf (CLONE_INTO_CGROUP)
  // Limit writes and v1 cgroup joins to make as root inside the cell before the command runs
  // (CgroupLeafOptions::defer_writes). Parallel vectors; the strings outlive start().
  std::vector<const char*> knob_paths, knob_values;
  std::vector<const char*> v1_procs_paths;
  // The spec's (or policy's) pidsMax: a backend whose own processes share the leaf enforces the
  // command's count inside the cell (0: none).
  uint64_t pids_max = 0;
  // CLONE_PIDFD. Off when the reactor watches exits by pid (IoPort::can_wait_pid).
  bool want_pidfd = true;
  base::IoPort* io = nullptr;  // launcher.h's LaunchOptions::io
  // The cell's prepared network namespace, or -1: a new, empty one. Not owned.
  int netns_fd = -1;
  // Runtime secret delivery: the host directory holding the broker socket, which the view
  // holds at /run/cellos (secret_broker.h); empty: none.
  std::string broker_dir = {};
  // A host file bound read-only over the cell's /etc/resolv.conf (a cell with a dnsAuthority:
  // cells/cell_dns.h), or empty.
  std::string resolv_conf;
  // The cell's authority, for a backend that hands it on (nested_backend.h writes it as the
  // nested reactor's [policy.ceiling]): its memory limit, its end (unix seconds), its secrets.
  uint64_t memory_max_bytes = 0;
  uint64_t deadline_unix_seconds = 0;
  std::vector<std::string> secret_refs = {};
  // Its egress rules as the ceiling writes them ("host:port", "host:port/tcp", "[v6]:port").
  std::vector<std::string> egress = {};
  // The directory of the event log the cell's events go to ("" when it is stdout): a nested
  // cell's sub-log lives below it (<log dir>/nested/<cell id>/), since a seal records the
  // sub-log's path relative to the log (sinks/sublog_seal.h).
  std::string log_dir = {};
  // A prepared cell of the warm pool (prepared_cell.h) to bind instead of cloning one; null:
  // clone. Only the native backend is handed one (WarmPool::refusal).
  PreparedCell* prepared = nullptr;
};

// A nested cell's files on the host (nested_backend.h): its reactor's state dir, that
// reactor's event log (kept after the cell's end) and the public key it signs with (outside
// the state dir, which the nested cell can write).
struct NestedCellFiles {
  std::string state_dir, event_log, public_key;
  std::string public_key_raw;  // the 32 bytes of that key, for the seal
};

// What the Cell keeps of a started cell.
struct Started {
  // 0: not known yet; a ChildStatus::kSpawned record on status_read brings it (spawner.h).
  pid_t pid = -1;
  base::Fd pidfd;  // empty without want_pidfd
  base::Fd stdout_read;
  base::Fd stderr_read;
  base::Fd status_read;  // ChildStatus records (traits().status_records), then EOF
};

// One cell's share of a backend: made by prepare(), destroyed at the cell's teardown.
class BackendCell {
 public:
  virtual ~BackendCell() = default;
  virtual base::Result<Started> start(const StartRequest& request) = 0;
  // Called before each attempt to remove the cell's leaf (its processes are gone): a backend
  // whose cell made cgroups below the leaf (a nested reactor) removes them here.
  virtual void before_leaf_removal() {}
  // The nested backend's files; null for every other backend.
  virtual const NestedCellFiles* nested_files() const { return nullptr; }
};

class Backend {
 public:
  virtual ~Backend() = default;
  // The name fleet.toml and the events use ("native", ...).
  virtual std::string_view name() const = 0;
  virtual BackendTraits traits() const = 0;
  virtual base::Result<std::unique_ptr<BackendCell>> prepare(const std::string& cell_id) = 0;
};

// The registered backends by name (backend_registry.cc): checks, once per host, that the backend
// can run cells here (its binaries load, its kernel features exist), naming what is missing.
base::Result<std::unique_ptr<Backend>> make_backend(std::string_view name, const Config& config);
// Every registered name, for configuration errors and docs.
std::vector<std::string_view> backend_names();

}  // namespace cellos::cells
