// Cell: one cell's life, as a state machine driven by reactor completions.
//
//   start: lock id ─► started, network_policy ─► cgroup leaf ─► launch (clone3)
//   running: status pipe · stdout/stderr pumps · exit of init (WAITID, armed at the status pipe's
//            EOF: watch_exit) · TTL timer
//   done: every stream at EOF and init reaped ─► completed ─► cgroup removed ─► destroyed
//
// A cell never ends the process: every failure becomes this cell's setup_failed outcome and its
// events. The owner learns of the end through on_finished and may then destroy the Cell.
#pragma once

#include <signal.h>

#include <array>
#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "base/completion.h"
#include "base/fd.h"
#include "base/io.h"
#include "cells/backend.h"
#include "cells/cell_export.h"
#include "cells/cell_lock.h"
#include "cells/cell_dns.h"
#include "cells/cgroup.h"
#include "cells/child_setup.h"
#include "cells/identity.h"
#include "cells/secret_broker.h"
#include "cells/secrets.h"
#include "cells/config.h"
#include "flows/flow_monitor.h"
#include "cells/spec.h"
#include "cells/uid_pool.h"
#include "netns/cell_net.h"
#include "sinks/events.h"
#include "sinks/sublog_seal_job.h"

namespace cellos::cells {

class WarmPool;
class LeafStock;

// Host-wide services a cell uses; owned by the reactor and outliving every cell.
struct CellHost {
  base::IoPort* io = nullptr;
  const Config* config = nullptr;
  sinks::EventSink* events = nullptr;
  const CgroupTree* cgroups = nullptr;
  // The host side of [network] uplink = "nat"; null for "none" (cells with egress rules then
  // get their ruleset but no interface and no route).
  netns::HostUplink* uplink = nullptr;
  // How the command runs (backend.h); required: the host's default ([cells] backend).
  Backend* backend = nullptr;
  // Every backend the host can run (policy.allowed_backends), for specs choosing one with
  // spec.run.backend; empty: `backend` only.
  std::vector<Backend*> backends = {};
  // Flow probes, nflog and BPF enforcement; null: none (cells get nft enforcement only).
  flows::FlowMonitor* flows = nullptr;
  // Mints workload identity tokens ([identity] signing_key); null: none configured.
  const IdentityIssuer* identity = nullptr;
  // The event log the cells' events go to, when not config->events_path() (a `run` beside a
  // daemon writes a log of its own): a nested cell's sub-log is sealed relative to it.
  std::string events_path = {};
  // The daemon's warm pool (warm_pool.h); null: every cell takes the cold path (`run`).
  WarmPool* pool = nullptr;
  // The daemon's stock of empty v1 memory leaves (leaf_stock.h); null: each cell makes and
  // removes its own (`run`, pure-v2 hosts).
  LeafStock* leaf_stock = nullptr;
};

struct CellOptions {
  Spec spec;
  std::vector<std::string> env;  // complete "KEY=value" block (build_environment)
  // Runtime secret delivery: the values the broker serves (read_brokered_secrets).
  BrokeredSecrets brokered_secrets = {};
  std::string run_id;
  int stdout_fd = STDOUT_FILENO;  // where the cell's streams are copied
  int stderr_fd = STDERR_FILENO;
  // Instead of the fds: files opened (O_APPEND) when the stream's first bytes arrive and closed
  // at its end, so a cell that is quiet holds no descriptor for its logs. A file (and its
  // directory, mode 0750) that does not exist yet is created then: a quiet stream has none.
  std::string stdout_path, stderr_path;
  // Per stream: past this many bytes the copy is cut with a marker line and the rest of the
  // stream is drained and dropped (the cell keeps running). 0: no cap.
  uint64_t max_stream_bytes = 0;
  std::function<void()> on_finished;  // called once, from a completion, never from start()
};

// Why the reactor ends a cell: its TTL or timeout, the reactor stopping (daemon SIGTERM, `run`
// interrupted), or another host taking its spec over (a NATS fence: no outcome of ours counts).
enum class KillCause { kNone, kTimeout, kReactorStop, kFenced };

struct CellOutcome {
  sinks::CompletedReason reason = sinks::CompletedReason::kExited;
  std::optional<int> exit_code;
  std::optional<int> signal;
  bool forced = false;         // the reactor killed it (TTL, timeout, stop) with SIGKILL
  bool exec_failed = false;    // argv[0] could not be executed: exec_errno says why
  int exec_errno = 0;
  bool refused = false;        // never started (id already running): no cell events
  bool export_failed = false;  // an artifact marked required did not reach every target
  std::string error;           // one line, for setup failures and refusals
  uint64_t duration_ms = 0;
  std::optional<sinks::ResourcesData> resources;  // from the cgroup, for cells that ran
  std::optional<sinks::GracefulStopData> graceful_stop;

  // `run`'s exit status: the command's own, 128+N, 124 timeout, 125 setup, 126/127 exec.
  int exit_status() const;
};

class Cell {
 public:
  Cell(const CellHost& host, CellOptions options);
  ~Cell();
  Cell(const Cell&) = delete;
  Cell& operator=(const Cell&) = delete;

  // Starts the cell. If it cannot start, the outcome is set and on_finished follows from the
  // next completion round (never re-entrantly from here).
  void start();
  // Kills every process of the cell at once; the cell then finishes as usual.
  void kill(KillCause cause);
  // Asks the cell to stop: SIGTERM to every process of the cell now, kill() when `grace` runs
  // out (a zero grace is kill() at once). A cell already stopping keeps its first deadline.
  void stop(KillCause cause, std::chrono::seconds grace);
  // The grace the cell gets when the reactor stops and the host allows `host_grace`: its own
  // gracefulShutdownSeconds when shorter (a cell may ask to be killed sooner, never later).
  std::chrono::seconds shutdown_grace(std::chrono::seconds host_grace) const;

  const std::string& id() const { return opts_.spec.id; }
  const std::string& run_id() const { return opts_.run_id; }
  bool finished() const { return finished_; }
  const CellOutcome& outcome() const { return outcome_; }
  // The backend's name ("native", "gvisor") once start() chose it.
  std::string_view backend_name() const { return backend_ ? backend_->name() : std::string_view(); }
  pid_t pid() const { return pid_; }
  // When the command was launched (zero before), and its memory use now (0 when unknown).
  std::chrono::steady_clock::time_point launched_at() const { return launched_at_; }
  uint64_t memory_bytes() const { return leaf_ ? leaf_->memory_bytes() : 0; }
  // Its cgroup leaf below the hierarchies' roots ("cellos/<host>/<id>", or a warm pool's
  // ".pool-*" leaf: warm_pool.h); empty before it has one.
  std::string cgroup_path() const { return leaf_ ? leaf_->relative_path() : std::string(); }

 private:
  // One Completion per kind of operation; each knows its cell and whether it is in flight.
  struct Op : base::Completion {
    Cell* cell = nullptr;
    bool in_flight = false;
  };
  struct StreamPump final : Op {
    base::Fd from;
    int to = -1;
    bool writing = false, eof = false, sink_broken = false, truncated = false;
    size_t len = 0, written = 0;
    uint64_t copied = 0, cap = 0;  // bytes passed on so far; cap 0 = none
    const char* name = "";
    const std::string* path = nullptr;  // opened on first data when `to` is -1
    base::Fd owned;                     // `to`, when opened from `path`
    bool open_sink();
    void accept(size_t n);
    std::array<std::byte, 32 * 1024> buf;
    void arm();
    void complete(int res) override;
  };
  struct StatusReader final : Op {
    base::Fd from;
    ChildStatus rec;
    bool eof = false;
    void arm();
    void complete(int res) override;
  };
  struct ExitWatcher final : Op {
    siginfo_t info{};
    bool reaped = false;
    void complete(int res) override;
  };

  // Arms `t`; when it fires, fn (if any), then the cell finishes if it can.
  void after(base::Timer& t, std::chrono::nanoseconds d, std::function<void(int)> fn);
  void fail_setup(std::string error);
  void kill_init();
  void on_status(const ChildStatus& s);
  void watch_exit();  // the init's exit, through the ring (by pidfd, or by pid)
  void maybe_finish();
  void decide_outcome();
  // Starts the reads of the leaf's counters; true once usage_ holds them (or there is no leaf).
  bool read_usage();
  void note_setup_failure();
  void teardown();
  void emit(sinks::EventData d);
  // A cell with egress rules: its namespace, ruleset and veth, before clone.
  base::Result<void> prepare_network();
  // The probes on the cell's cgroup and its nflog listener, before clone.
  base::Result<void> watch_flows();
  // A cell with a dnsAuthority: its DNS proxy in the namespace, before clone.
  base::Result<void> open_dns();
  // After the processes are gone: waits linger(), then the final flow reports and summary.
  // False while waiting.
  bool finish_flows();
  void emit_enforcement();
  // The identity token and the secret broker, before launch (cell_secrets.cc).
  base::Result<void> prepare_delivery();
  // Closes the broker once the command has exited (or never ran); false while it drains.
  bool close_broker();
  // After completed, before teardown: spec.export through an ExportJob. False while it runs.
  bool finish_export();
  // Seals a nested cell's sub-log into the log (sinks/sublog_seal_job.h) once its leaf is
  // empty; false while the seal runs.
  bool finish_nested_seal();
  // Fills the StartRequest fields only a nested cell needs (cell_nested.cc).
  void describe_for_nested(StartRequest& req) const;
  std::string events_path() const;
  CgroupLimits effective_limits() const;
  std::chrono::milliseconds effective_deadline() const;

  CellHost host_;
  CellOptions opts_;
  std::optional<CellLock> lock_;
  std::optional<UidLease> uid_;
  std::optional<CgroupLeaf> leaf_;
  Backend* backend_ = nullptr;  // the one running this cell (spec.run.backend or the default)
  std::unique_ptr<BackendCell> backend_cell_;
  std::unique_ptr<netns::CellNetwork> net_;
  std::unique_ptr<flows::CellFlows> flows_;
  std::unique_ptr<SecretBroker> broker_;
  std::unique_ptr<CellDns> dns_;  // a cell with a dnsAuthority: its proxy (cells/cell_dns.h)
  std::optional<sinks::DnsSummaryData> dns_summary_;
  std::optional<sinks::FlowSummaryData> flow_summary_;
  base::Fd held_workspace_, held_tmp_;  // the workspace and /tmp, kept for spec.export (cell_export.h)
  std::unique_ptr<ExportJob> export_;
  bool export_done_ = false;
  std::unique_ptr<sinks::SublogSealJob> seal_;
  bool seal_done_ = false;
  base::Fd pidfd_;
  pid_t pid_ = -1;
  std::chrono::steady_clock::time_point launched_at_;
  std::chrono::steady_clock::time_point exited_at_;

  StreamPump out_, err_;
  StatusReader status_;
  ExitWatcher exit_;
  // Timers whose end may finish the cell (after()): TTL, teardown retry, deferred finish, the
  // flows' last-records wait.
  base::Timer ttl_, retry_, defer_, linger_, grace_;
  bool lingered_ = false;
  int remove_attempts_ = 0;
  bool pooled_ = false;  // bound to a prepared cell of the warm pool

  std::optional<ChildStatus> setup_error_;  // kSetupFailed / kExecFailed from the child
  std::optional<int> command_status_;       // waitpid status of the command
  KillCause killed_ = KillCause::kNone;
  KillCause stopping_ = KillCause::kNone;  // stop() sent SIGTERM for this cause
  std::chrono::seconds stop_grace_{0};
  bool launched_ = false, completed_emitted_ = false, finished_ = false;
  CellOutcome outcome_;
  // The leaf's counters, read through the ring once the processes are gone (read_usage): no
  // open/read/close of the reactor's own per counter file.
  std::optional<CgroupUsage> usage_;
  int usage_pending_ = 0;
  std::array<std::optional<std::string>, CgroupLeaf::kUsageFiles> usage_texts_;
};

}  // namespace cellos::cells
