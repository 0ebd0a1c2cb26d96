#include "cells/cell.h"

#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <ctime>

#include "base/text.h"
#include "cells/egress.h"
#include "ebpf/hook_keeper.h"
#include "cells/program_path.h"
#include "cells/root_view.h"
#include "cells/rootless.h"
#include "cells/warm_pool.h"

namespace cellos::cells {
namespace {

// A leaf whose last process is still being torn down refuses rmdir with EBUSY for a moment;
// retry on a timer rather than block the reactor, and give up after about two seconds.
constexpr auto kRemoveRetry = std::chrono::milliseconds(10);
constexpr int kMaxRemoveAttempts = 200;

uint64_t ms_between(std::chrono::steady_clock::time_point a,
                    std::chrono::steady_clock::time_point b) {
  return static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::milliseconds>(b - a).count());
}

}  // namespace

int CellOutcome::exit_status() const {
  if (refused) return 125;
  if (exec_failed) return exec_errno == ENOENT ? 127 : 126;
  // The command succeeded but a required artifact did not get out: the run failed all the same.
  if (export_failed && reason == sinks::CompletedReason::kExited && exit_code == 0) return 125;
  switch (reason) {
    case sinks::CompletedReason::kSetupFailed: return 125;
    case sinks::CompletedReason::kTimeout: return 124;
    case sinks::CompletedReason::kExited: return exit_code.value_or(125);
    case sinks::CompletedReason::kSignaled:
    case sinks::CompletedReason::kOom:
    case sinks::CompletedReason::kShutdown:
      // An OOM kill of a child, or a command that left on SIGTERM with a status of its own:
      // that status, as a shell would report it.
      if (exit_code) return *exit_code;
      return 128 + signal.value_or(SIGKILL);
  }
  return 125;
}

Cell::Cell(const CellHost& host, CellOptions options) : host_(host), opts_(std::move(options)) {
  for (Op* op : std::initializer_list<Op*>{&out_, &err_, &status_, &exit_}) op->cell = this;
  for (base::Timer* t : {&ttl_, &retry_, &defer_, &linger_, &grace_}) t->bind(*host_.io);
}

Cell::~Cell() {
  // The owner destroys a cell only after on_finished, when nothing is in flight; a cell dropped
  // earlier (reactor failure) still must not leave processes behind.
  if (launched_ && !exit_.reaped) kill_init();
}

void Cell::kill_init() {
  // By pid when there is no pidfd: our own child's pid stays ours until we reap it.
  if (pidfd_) ::syscall(SYS_pidfd_send_signal, pidfd_.get(), SIGKILL, nullptr, 0);
  else if (pid_ > 0) ::kill(pid_, SIGKILL);
}

void Cell::emit(sinks::EventData d) {
  auto e = sinks::make_event(std::move(d));
  e.correlation_id = opts_.spec.correlation_id.value_or("");
  host_.events->emit(e);
}

CgroupLimits Cell::effective_limits() const {
  const auto& l = opts_.spec.run.limits;
  const auto& d = host_.config->policy.default_limits;
  return CgroupLimits{l.memory_max_bytes.value_or(d.memory_max_bytes),
                      l.pids_max.value_or(d.pids_max), l.cpu_max};
}

std::chrono::milliseconds Cell::effective_deadline() const {
  uint64_t ttl_s = opts_.spec.ttl_seconds.value_or(host_.config->policy.default_ttl_seconds);
  uint64_t ms = ttl_s * 1000;
  if (opts_.spec.run.timeout_ms && *opts_.spec.run.timeout_ms < ms) ms = *opts_.spec.run.timeout_ms;
  return std::chrono::milliseconds(ms);
}

void Cell::start() {
  const Spec& spec = opts_.spec;
  backend_ = host_.backend;
  if (spec.run.backend)
    for (Backend* b : host_.backends)
      if (b->name() == *spec.run.backend) backend_ = b;
  auto lock = CellLock::acquire(host_.config->host.state_dir, spec.id);
  if (!lock) {
    outcome_.refused = true;
    outcome_.error = "spec.id: " + lock.error().message();
    emit(sinks::RejectedData{spec.id, outcome_.error});
    defer_.start(std::chrono::nanoseconds(0), [this](int) {
      finished_ = true;
      opts_.on_finished();
    });
    return;
  }
  lock_.emplace(std::move(*lock));

  const std::string& program = spec.run.program.empty() ? spec.run.argv[0] : spec.run.program;
  // The warm pool (warm_pool.h): a prepared cell this spec is bound to, or null (cold path).
  std::unique_ptr<PreparedCell> warm =
      host_.pool ? host_.pool->take(spec, effective_limits(), *backend_) : nullptr;
  pooled_ = warm != nullptr;
  emit(sinks::StartedData{spec.id, opts_.run_id, host_.config->host.id,
                          spec.correlation_id.value_or(""), program,
                          std::string(backend_->name()), warm ? "pool" : "cold"});
  // Hostnames were resolved at admission (egress.h); one that was not fails the cell's setup
  // (egress_targets names it), after its policy event says what was declared.
  sinks::NetworkPolicyData policy{spec.id, "clone_newnet", {}};
  for (const auto& r : spec.egress_rules)
    policy.declared_egress.push_back({r.host, r.port, r.protocol, r.resolved});
  emit(std::move(policy));

  if (spec.run.program.empty() && is_bare_program(spec.run.argv[0])) {
    // Admission found the name nowhere in the cell's PATH: the outcome of an absolute argv[0]
    // that does not exist (exec failed, ENOENT, status 127), without starting anything.
    outcome_.reason = sinks::CompletedReason::kSetupFailed;
    outcome_.exec_failed = true;
    outcome_.exec_errno = ENOENT;
    outcome_.error = "spec.run.argv[0]: " + base::clip(spec.run.argv[0]) + ": " + std::strerror(ENOENT) +
                     " (not found in the cell's PATH " + base::clip(cell_path(spec)) + ")";
    after(defer_, std::chrono::nanoseconds(0), nullptr);
    return;
  }

  auto leaf = warm ? host_.cgroups->adopt_leaf(std::move(warm->leaf()), effective_limits())
                      : host_.cgroups->create_leaf(spec.id, effective_limits(), host_.leaf_stock);
  if (!leaf) return fail_setup(leaf.error().message());
  leaf_.emplace(std::move(*leaf));

  if (!spec.egress_rules.empty() || spec.dns_authority) {
    // Whether BPF loaded decides who enforces, so before the namespace's ruleset.
    if (host_.flows) host_.flows->load();
    if (auto r = prepare_network(); !r) return fail_setup(r.error().message());
    if (auto r = watch_flows(); !r) return fail_setup(r.error().message());
    if (auto r = open_dns(); !r) return fail_setup(r.error().message());
  }

  if (spec.run.backend && backend_->name() != *spec.run.backend)
    return fail_setup("spec.run.backend: \"" + *spec.run.backend +
                      "\" is not running on this host (policy.allowed_backends)");
  // A backend whose packets the namespace's ruleset does not see cannot hold egress rules.
  if (!spec.egress_rules.empty() && !backend_->traits().netns_enforcement)
    return fail_setup("spec.authority.egressRules: the " + std::string(backend_->name()) +
                      " backend's packets bypass the cell's ruleset: egress is refused");
  // A uid of its own while its processes live (uid_pool.h); released in teardown.
  auto uid = UidLease::acquire({host_.config->policy.uid_first, host_.config->policy.uid_last},
                               uid_lease_file(*host_.config));
  if (!uid) return fail_setup(uid.error().message());
  uid_.emplace(std::move(*uid));
  if (auto r = prepare_delivery(); !r) return fail_setup(r.error().message());
  auto prepared = backend_->prepare(spec.id);
  if (!prepared) return fail_setup(prepared.error().message());
  backend_cell_ = std::move(*prepared);
  StartRequest req;
  req.cell_id = spec.id;
  req.argv = spec.run.argv;
  req.program = spec.run.program;
  if (!spec.export_artifacts.empty()) {
    auto ws = make_held_tmpfs("0755", uid_->uid(), uid_->gid());
    if (!ws) return fail_setup(ws.error().message());
    auto tmp = make_held_tmpfs("1777", 0, 0);
    if (!tmp) return fail_setup(tmp.error().message());
    held_workspace_ = std::move(*ws);
    held_tmp_ = std::move(*tmp);
    req.workspace_mount_fd = held_workspace_.get();
    req.tmp_mount_fd = held_tmp_.get();
  }
  req.env = opts_.env;
  req.workdir = spec.run.working_directory;
  req.uid = uid_->uid();
  req.gid = uid_->gid();
  req.host_paths = root_view_paths(host_.config->policy);
  req.masked_paths = masked_paths(*host_.config);
  for (const auto& in : spec.inputs) {
    req.input_host_paths.push_back(in.host_path);
    req.input_paths.push_back(in.path);
  }
  req.cgroup_v2_dirfd = leaf_->v2_dirfd();
  for (const auto& w : leaf_->writes()) {
    req.knob_paths.push_back(w.path.c_str());
    req.knob_values.push_back(w.value.c_str());
  }
  for (const auto& path : leaf_->v1_procs_paths()) req.v1_procs_paths.push_back(path.c_str());
  req.want_pidfd = !host_.io->can_wait_pid();
  req.io = host_.io;
  req.pids_max = effective_limits().pids_max;
  if (net_) req.netns_fd = net_->netns_fd();
  if (broker_) req.broker_dir = broker_->host_dir();
  if (dns_) {
    auto resolv = cell_resolv_conf(host_.config->host.state_dir);
    if (!resolv) return fail_setup(resolv.error().message());
    req.resolv_conf = *resolv;
  }
  req.memory_max_bytes = effective_limits().memory_max_bytes;
  req.deadline_unix_seconds =
      static_cast<uint64_t>(::time(nullptr)) +
      static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::seconds>(effective_deadline()).count());
  req.secret_refs = spec.secret_refs;
  // What a nested cell's reactor is given (its ceiling, where its sub-log lives): others skip it.
  if (backend_->name() == "nested") describe_for_nested(req);
  req.prepared = warm.get();
  launched_at_ = std::chrono::steady_clock::now();
  auto launched = backend_cell_->start(req);
  if (!launched) return fail_setup(launched.error().message());
  launched_ = true;
  pid_ = launched->pid;
  pidfd_ = std::move(launched->pidfd);
  if (broker_ && pid_ > 0) broker_->set_cell_pid(pid_);
  // clone3 placed the child; the leaf's dir fd is not needed again (closed by the ring).
  host_.io->close(leaf_->release_v2_dir());

  out_.from = std::move(launched->stdout_read);
  out_.to = opts_.stdout_fd;
  out_.name = "stdout";
  err_.from = std::move(launched->stderr_read);
  err_.to = opts_.stderr_fd;
  err_.name = "stderr";
  out_.cap = err_.cap = opts_.max_stream_bytes;
  if (!opts_.stdout_path.empty()) out_.path = &opts_.stdout_path, out_.to = -1;
  if (!opts_.stderr_path.empty()) err_.path = &opts_.stderr_path, err_.to = -1;
  status_.from = std::move(launched->status_read);
  out_.arm();
  err_.arm();
  status_.arm();
  // pid 0: the spawner sends it on the status pipe (on_status arms the watch then).
  if (pid_ != 0 && !backend_->traits().status_eof_at_root_exit) watch_exit();
  after(ttl_, effective_deadline(), [this](int res) {
    if (res == -ETIME)
      stop(KillCause::kTimeout,
           std::chrono::seconds(opts_.spec.run.limits.graceful_shutdown_seconds.value_or(0)));
  });
}

base::Result<void> Cell::prepare_network() {
  auto targets = egress_targets(opts_.spec);
  if (!targets) return std::move(targets).error();
  netns::CellNetOptions o;
  o.ruleset.targets = std::move(*targets);
  o.ruleset.nflog_group = host_.flows ? host_.flows->next_nflog_group() : 1;
  o.ruleset.append_invalid_rule = host_.config->network.test_fault_ruleset;
  o.ruleset.dns_sets = opts_.spec.dns_authority.has_value();
  o.uplink = host_.uplink;
  // Without a flow monitor nothing but nft can enforce, whatever was asked for.
  o.install_ruleset = host_.flows ? host_.flows->nft_enforces()
                                  : host_.config->network.enforcement != "none";
  // A nested cell's traffic is forwarded through this namespace from one its reactor owns
  // (netns/nested_link.h): the ruleset filters the forward hook too, and is always installed,
  // since the link is made only behind it.
  if (backend_->name() == "nested") {
    o.ruleset.forward = true;
    o.install_ruleset = true;
  }
  auto net = netns::CellNetwork::create(o);
  if (!net) return std::move(net).error().context("network");
  net_ = std::move(*net);
  return base::ok();
}

base::Result<void> Cell::watch_flows() {
  if (!host_.flows) return base::ok();
  auto targets = egress_targets(opts_.spec);
  if (!targets) return std::move(targets).error();
  flows::FlowMonitor::CellOptions o{opts_.spec.id, leaf_->v2_dirfd(), std::move(*targets), net_.get()};
  o.correlation_id = opts_.spec.correlation_id.value_or("");
  // Beside the host parents ("cellos/.bpf-keep"): keeps the kernel's cgroup-BPF hooks on
  // between cells and `run`s (ebpf/hook_keeper.h).
  const std::string& parent = host_.cgroups->parent();
  const auto slash = parent.rfind('/');
  o.keeper_cgroup = host_.cgroups->roots().unified + "/" +
                    (slash == std::string::npos ? "" : parent.substr(0, slash + 1)) +
                    ebpf::kKeeperCgroup;
  auto flows = host_.flows->open_cell(std::move(o));
  if (!flows) return std::move(flows).error();
  flows_ = std::move(*flows);
  return base::ok();
}

base::Result<void> Cell::open_dns() {
  const Spec& spec = opts_.spec;
  if (!spec.dns_authority || !net_) return base::ok();
  auto upstreams = dns_upstreams(*spec.dns_authority, host_.config->network.resolvers);
  if (!upstreams) return std::move(upstreams).error();
  CellDnsOptions o;
  o.cell_id = spec.id;
  o.authority = *spec.dns_authority;
  o.netns_fd = net_->netns_fd();
  o.upstreams = std::move(*upstreams);
  o.timeout = std::chrono::milliseconds(host_.config->network.resolve_timeout_ms);
  o.internal_names = host_.config->policy.internal_dns_names;
  const NetworkConfig& net = host_.config->network;
  o.min_ttl = std::chrono::seconds(net.dns_min_ttl_seconds);
  o.max_ttl = std::chrono::seconds(net.dns_max_ttl_seconds);
  o.grace = std::chrono::seconds(net.dns_grace_seconds);
  o.max_addresses_per_name = net.dns_max_addresses_per_name;
  for (const auto& r : spec.egress_rules)
    if (!netns::parse_target(r.host)) o.named_rules.push_back(r);
  // Under BPF enforcement the same addresses go into the cell's BPF allow-list (flows_).
  if (flows_ && flows_->bpf_enforces())
    o.update_bpf = [f = flows_.get()](const std::vector<netns::EgressTarget>& add,
                                      const std::vector<netns::EgressTarget>& del) {
      return f->update_allow(add, del);
    };
  o.update_sets = [n = net_.get()](const std::vector<netns::DnsSetElement>& add,
                                   const std::vector<netns::EgressTarget>& del) {
    return n->update_dns_sets(add, del);
  };
  o.emit = [this](sinks::EventData d) { emit(std::move(d)); };
  auto dns = CellDns::open(*host_.io, std::move(o));
  if (!dns) return std::move(dns).error();
  dns_ = std::move(*dns);
  return base::ok();
}

bool Cell::finish_flows() {
  if (!flows_) return true;
  if (auto wait = flows_->linger(); wait.count() > 0 && !lingered_) {
    lingered_ = true;
    // The kernel's batched denies are asked for (flush) rather than waited for: the ack that
    // follows the last one cancels the timer, whose end re-enters maybe_finish (never from
    // inside the nflog receive, which finish() below destroys). Unflushable: wait it out.
    flows_->flush([this] { linger_.cancel(); });
    after(linger_, wait, nullptr);
    return false;
  }
  // The DNS proxy may still update the BPF allow-list through flows_: it ends first.
  if (dns_ && !dns_summary_) dns_summary_ = dns_->finish();
  flow_summary_ = flows_->finish();
  flows_.reset();
  return true;
}

// After the command exited and before completed: what was enforced and what it counted, from
// one dump of the cell's table. Only cells that declared egress get a ruleset, so only they
// report (the rest are loopback-only by construction).
void Cell::emit_enforcement() {
  const Spec& spec = opts_.spec;
  if (spec.egress_rules.empty()) return;
  sinks::NetworkEnforcementData d;
  d.cell_id = spec.id;
  d.declared_egress_rule_count = spec.egress_rules.size();
  d.command_exit_code = outcome_.exit_code;
  if (net_) {
    d.nft_rules_applied = net_->rules_applied() > 0;
    d.supplementary_egress_filter_active =
        d.nft_rules_applied || (host_.flows && host_.flows->bpf_enforces());
    d.nft_rule_count = net_->rules_applied();
    d.cell_address = net_->address();
    for (size_t i = 0; i < spec.egress_rules.size(); ++i)
      d.rule_counters.push_back({"egress[" + std::to_string(i) + "]", 0, 0});
    auto counters = d.nft_rules_applied ? net_->counters()
                                        : base::Result<std::vector<netns::RuleCounter>>(
                                              std::vector<netns::RuleCounter>{});
    if (!counters) {
      std::fprintf(stderr, "cellos-reactor: cell %s: %s\n", spec.id.c_str(),
                   counters.error().message().c_str());
    } else {
      for (const auto& c : *counters) {
        auto it = std::find_if(d.rule_counters.begin(), d.rule_counters.end(),
                               [&](const sinks::RuleCounterData& r) { return r.rule == c.tag; });
        if (it == d.rule_counters.end()) it = d.rule_counters.insert(d.rule_counters.end(), {c.tag, 0, 0});
        it->packets += c.packets;
        it->bytes += c.bytes;
      }
    }
  }
  emit(std::move(d));
}

void Cell::fail_setup(std::string error) {
  outcome_.reason = sinks::CompletedReason::kSetupFailed;
  outcome_.error = "cell " + opts_.spec.id + ": " + std::move(error);
  // Finish from a completion, not from inside start(): the owner may not expect re-entrance.
  after(defer_, std::chrono::nanoseconds(0), nullptr);
}

void Cell::kill(KillCause cause) {
  // Past its command, a cell may still be exporting: killing it stops the export too.
  if (export_ && !export_->done()) export_->abort();
  if (seal_ && !seal_->done()) seal_->abort();
  if (!launched_ || exit_.reaped || killed_ != KillCause::kNone) return;
  killed_ = cause;
  // cgroup.kill takes every process at once, daemonized grandchildren included. Killing init
  // is the fallback: its pid namespace dies with it.
  if (!leaf_ || !leaf_->kill().ok()) kill_init();
}

std::chrono::seconds Cell::shutdown_grace(std::chrono::seconds host_grace) const {
  const auto& own = opts_.spec.run.limits.graceful_shutdown_seconds;
  if (own && std::chrono::seconds(*own) < host_grace) return std::chrono::seconds(*own);
  return host_grace;
}

void Cell::stop(KillCause cause, std::chrono::seconds grace) {
  if (!launched_ || exit_.reaped || killed_ != KillCause::kNone) return;
  if (stopping_ != KillCause::kNone) return;  // its first deadline stands
  if (grace.count() == 0 || !leaf_) return kill(cause);
  if (backend_->traits().stop_through_root) {
    const int r = pidfd_ ? static_cast<int>(::syscall(SYS_pidfd_send_signal, pidfd_.get(), SIGTERM,
                                                      nullptr, 0))
                         : ::kill(pid_, SIGTERM);
    if (r != 0) return kill(cause);
  } else if (!leaf_->signal_all(SIGTERM).ok()) {
    return kill(cause);
  }
  stopping_ = cause;
  stop_grace_ = grace;
  after(grace_, grace, [this, cause](int res) {
    if (res == -ETIME) kill(cause);
  });
}

void Cell::StatusReader::arm() {
  in_flight = true;
  cell->host_.io->read(from.get(), std::as_writable_bytes(std::span(&rec, 1)), *this);
}

void Cell::StatusReader::complete(int res) {
  in_flight = false;
  if (res == static_cast<int>(sizeof rec)) {
    cell->on_status(rec);
    return arm();
  }
  eof = true;
  cell->host_.io->close(from.release());
  // The init closed it by exiting (BackendTraits::status_eof_at_root_exit): now is the time to
  // wait for that exit (watch_exit).
  if (cell->launched_ && cell->pid_ != 0 && !cell->exit_.reaped) {
    cell->watch_exit();
    return;  // the exit's completion finishes the cell
  }
  if (cell->launched_ && cell->pid_ == 0 && !cell->exit_.reaped) {
    // The spawner never said a pid (its clone failed, and said so, or it died): nothing of the
    // cell runs, so there is no exit to wait for.
    if (!cell->setup_error_) {
      ChildStatus lost;
      lost.kind = ChildStatus::kSetupFailed;
      lost.stage = kStageClone;
      lost.err = EPIPE;
      cell->setup_error_ = lost;
    }
    cell->exit_.info.si_code = 0;
    cell->exit_.complete(0);
    return;
  }
  cell->maybe_finish();
}

void Cell::ExitWatcher::complete(int res) {
  in_flight = false;
  reaped = true;
  if (res < 0) info.si_code = 0;  // could not reap: decided from the status records alone
  cell->exited_at_ = std::chrono::steady_clock::now();
  cell->ttl_.cancel();
  cell->grace_.cancel();
  cell->maybe_finish();
}

void Cell::after(base::Timer& t, std::chrono::nanoseconds d, std::function<void(int)> fn) {
  t.start(d, [this, fn = std::move(fn)](int res) {
    if (fn) fn(res);
    if (exit_.reaped || !launched_) maybe_finish();
  });
}

// When the backend's status pipe ends with its root process (BackendTraits::
// status_eof_at_root_exit), the wait is armed only at that EOF, not at launch. Why: every
// waitid in flight, the ring's included, sits on the reactor's one child-exit wait queue, and
// each exit of any child of the reactor (every cell's init is one: spawner.h) walks that whole
// queue with the task-list lock held for writing and interrupts off. With one wait per live
// cell that walk grew with the live cells: 5% of all CPU at 5,000 live sleepers, in the
// admitted cells' exits (bench/README.md, "daemon"). Armed at EOF, only cells already ending
// are on the queue. Until the wait completes the init is our unreaped child, so its pid (which
// kill_init uses) cannot be reused meanwhile.
void Cell::watch_exit() {
  if (exit_.in_flight || exit_.reaped) return;
  exit_.in_flight = true;
  if (pidfd_) host_.io->wait_exit(pidfd_.get(), &exit_.info, exit_);
  else host_.io->wait_exit_pid(pid_, &exit_.info, exit_);
}

void Cell::on_status(const ChildStatus& s) {
  switch (s.kind) {
    case ChildStatus::kSpawned:
      // The cell's init, cloned by the spawner as our child (spawner.h): watched from now.
      if (pid_ != 0 || s.wait_status <= 0) break;
      pid_ = s.wait_status;
      if (broker_) broker_->set_cell_pid(pid_);
      if (!backend_->traits().status_eof_at_root_exit) watch_exit();
      // A kill that came first (cgroup.kill) may have found the cgroup still empty.
      if (killed_ != KillCause::kNone) kill_init();
      break;
    case ChildStatus::kSetupFailed:
    case ChildStatus::kExecFailed: setup_error_ = s; break;
    case ChildStatus::kExited: command_status_ = s.wait_status; break;
    default: break;  // kStarted: the command is running
  }
}

void Cell::maybe_finish() {
  if (finished_) return;
  if (!close_broker()) return;
  if (defer_.armed() || retry_.armed() || linger_.armed()) return;
  if (launched_) {
    if (!exit_.reaped || !out_.eof || !err_.eof || !status_.eof || ttl_.armed() ||
        grace_.armed())
      return;
  }
  if (!completed_emitted_) {
    if (launched_ && !read_usage()) return;  // its end re-enters maybe_finish
    if (!finish_flows()) return;  // the last flow reports come before completed
    if (launched_) decide_outcome();
    completed_emitted_ = true;
    if (outcome_.reason == sinks::CompletedReason::kSetupFailed) note_setup_failure();
    emit_enforcement();
    sinks::CompletedData c{opts_.spec.id, outcome_.exit_code, outcome_.signal,
                           outcome_.duration_ms, outcome_.reason, outcome_.error,
                           out_.truncated, err_.truncated, outcome_.resources,
                           outcome_.graceful_stop, std::string(backend_name())};
    emit(std::move(c));
  }
  if (!finish_export()) return;
  teardown();
}

bool Cell::finish_export() {
  const Spec& spec = opts_.spec;
  if (spec.export_artifacts.empty() || export_done_) return true;
  if (export_) return false;  // running: its end re-enters maybe_finish
  auto report = [this](std::vector<sinks::ExportData> receipts) {
    for (auto& d : receipts) {
      // A cell that never ran failed already, for its own reason.
      if (d.required && !d.succeeded && launched_) {
        outcome_.export_failed = true;
        if (outcome_.error.empty()) {
          std::string why = d.error;
          for (const auto& r : d.receipts)
            if (why.empty() && !r.succeeded) why = r.target_kind + " " + r.destination + ": " + r.error;
          outcome_.error = "spec.export.artifacts: required artifact " + d.name +
                           " was not exported: " + why;
        }
      }
      emit(std::move(d));
    }
    export_done_ = true;
    held_workspace_.reset();  // the workspace's and /tmp's memory goes back now
    held_tmp_.reset();
  };
  auto failed_all = [&](const std::string& why) {
    std::vector<sinks::ExportData> out;
    for (const auto& a : spec.export_artifacts) {
      sinks::ExportData d{spec.id, a.name, a.path, a.required};
      d.error = why;
      out.push_back(std::move(d));
    }
    report(std::move(out));
  };
  if (!launched_ || !held_workspace_) {
    failed_all("the command did not run");
    return true;
  }
  ExportJobOptions o;
  o.io = host_.io;
  o.config = host_.config;
  o.cell_id = spec.id;
  o.run_id = opts_.run_id;
  o.workdir = spec.run.working_directory;
  o.artifacts = spec.export_artifacts;
  o.workspace_fd = held_workspace_.get();
  o.tmp_fd = held_tmp_.get();
  o.on_done = [this, report](std::vector<sinks::ExportData> receipts) {
    report(std::move(receipts));
    // Not from inside the job's completion: teardown may lead the owner to destroy this cell.
    after(defer_, std::chrono::nanoseconds(0), nullptr);
  };
  auto job = ExportJob::start(std::move(o));
  if (!job) {
    failed_all("export: " + job.error().message());
    return true;
  }
  export_ = std::move(*job);
  return false;
}

void Cell::decide_outcome() {
  using R = sinks::CompletedReason;
  outcome_.duration_ms = ms_between(launched_at_, exited_at_);
  outcome_.forced = killed_ != KillCause::kNone;
  // The counters outlive the processes until the leaf is removed (teardown, after this).
  CgroupUsage usage;
  if (leaf_) {
    usage = usage_ ? *usage_ : leaf_->usage();
    // A stocked memory leaf's peak is reset by the planned writes of the cell's setup: one that
    // failed may not have got there, and the peak would be the previous cell's.
    if (setup_error_ && leaf_->memory_from_stock()) usage.memory_peak_bytes.reset();
    outcome_.resources =
        sinks::ResourcesData{usage.memory_peak_bytes, usage.cpu_usec, usage.pids_peak, usage.oom_kills};
  }
  if (stopping_ != KillCause::kNone)
    outcome_.graceful_stop = sinks::GracefulStopData{
        stopping_ == KillCause::kTimeout ? "timeout" : "shutdown",
        static_cast<uint64_t>(stop_grace_.count()), killed_ == KillCause::kNone};
  if (setup_error_) {
    const ChildStatus& s = *setup_error_;
    outcome_.reason = R::kSetupFailed;
    if (s.kind == ChildStatus::kExecFailed) {
      outcome_.exec_failed = true;
      outcome_.exec_errno = s.err;
      outcome_.error = "spec.run.argv[0]: " + opts_.spec.run.argv[0] + ": " + std::strerror(s.err);
    } else {
      std::string what = child_stage_name(s.stage);
      const auto& writes = leaf_ ? leaf_->writes() : std::vector<CgroupLeaf::KnobWrite>{};
      if (s.stage == kStageCgroupLimits && s.wait_status >= 0 &&
          static_cast<size_t>(s.wait_status) < writes.size())
        what += " (" + writes[s.wait_status].path + " = " + writes[s.wait_status].value + ")";
      // The call and its object when the setup named them: "mount tmpfs on /work: ...".
      if (s.what[0] != '\0') what = std::string(s.what, strnlen(s.what, sizeof s.what));
      outcome_.error = "cell " + opts_.spec.id + ": " + what + ": " + std::strerror(s.err);
    }
    return;
  }
  if (!command_status_ && !backend_->traits().status_records) {
    // The backend's root process stands for the command: its exit is the command's.
    const int st = exit_.info.si_status;
    if (exit_.info.si_code == CLD_EXITED && backend_->traits().exit_status_encodes_signals &&
        st > 128 && st < 128 + 65)
      command_status_ = st - 128;  // a wait status that WIFSIGNALED reads
    else if (exit_.info.si_code == CLD_EXITED) command_status_ = W_EXITCODE(st, 0);
    else if (exit_.info.si_code == CLD_KILLED || exit_.info.si_code == CLD_DUMPED)
      command_status_ = exit_.info.si_status & 0x7f;  // a wait status that WIFSIGNALED reads
  }
  const bool asked = killed_ != KillCause::kNone || stopping_ != KillCause::kNone;
  if (!command_status_ && exit_.info.si_code == CLD_EXITED && !asked) {
    // The setup or the init left without a word (it could not even reach the status pipe).
    outcome_.reason = R::kSetupFailed;
    outcome_.error = "cell " + opts_.spec.id + ": the cell's init exited with status " +
                     std::to_string(exit_.info.si_status) + " before reporting";
    return;
  }
  int st = command_status_.value_or(0);
  if (killed_ == KillCause::kNone && command_status_ && WIFEXITED(st)) {
    outcome_.exit_code = WEXITSTATUS(st);
  } else {
    // Signalled, killed by the reactor, or init itself died (no status record): which signal.
    outcome_.signal = killed_ != KillCause::kNone ? SIGKILL
                      : command_status_ && WIFSIGNALED(st) ? WTERMSIG(st)
                      : exit_.info.si_code == CLD_KILLED || exit_.info.si_code == CLD_DUMPED
                          ? exit_.info.si_status
                          : SIGKILL;
  }
  // Why it ended, most specific first: the reactor's deadline or stop (whether the cell left
  // on SIGTERM in time or was killed: gracefulStop says which), then the OOM killer (of any
  // process of the cell: a compiler's cc1 taken under the limit fails the build as surely as
  // the command itself), then the command's own end.
  const KillCause why = killed_ != KillCause::kNone ? killed_ : stopping_;
  const bool failed = !outcome_.exit_code || *outcome_.exit_code != 0;
  if (why == KillCause::kTimeout) outcome_.reason = R::kTimeout;
  else if (why == KillCause::kReactorStop) outcome_.reason = R::kShutdown;
  else if (usage.oom_kills > 0 && failed) outcome_.reason = R::kOom;
  else outcome_.reason = outcome_.exit_code ? R::kExited : R::kSignaled;
}

void Cell::teardown() {
  if (leaf_ && !leaf_->removed()) {
    if (backend_cell_) backend_cell_->before_leaf_removal();
    // Only a cold native cell's memory leaf is stocked: a nested cell's leaf was delegated
    // (chowned) to the reactor inside it, so it holds state a later cell must not inherit; a
    // pooled cell's leaf held its prepared process from before the spec, and handing such
    // leaves on made the next cells' memory.force_empty scan every shrinker of the host, over
    // and over (a fifth of a 2,000-cell burst's CPU).
    auto r = leaf_->remove(backend_->name() == "native" && !pooled_ ? host_.leaf_stock : nullptr);
    if (!r.ok()) {
      if (++remove_attempts_ < kMaxRemoveAttempts) {
        after(retry_, kRemoveRetry, nullptr);
        return;
      }
      std::fprintf(stderr, "cellos-reactor: cell %s: teardown: %s\n", opts_.spec.id.c_str(),
                   r.error().message().c_str());
    }
  }
  // A nested cell's reactor log, sealed into this log now that nothing writes it.
  if (!finish_nested_seal()) return;
  pidfd_.reset();
  // The processes are gone: whatever the backend made for the cell goes too.
  backend_cell_.reset();
  // The namespace's last fd and socket: the kernel then removes it, and with it the veth pair,
  // the cell's address and route (netns/cell_net.h); the address returns to the pool.
  if (dns_ && !dns_summary_) dns_summary_ = dns_->finish();
  dns_.reset();
  net_.reset();
  emit(sinks::DestroyedData{opts_.spec.id,
                            outcome_.reason == sinks::CompletedReason::kExited &&
                                outcome_.exit_code == 0 && !outcome_.export_failed,
                            outcome_.forced, outcome_.export_failed ? "export_failed" : "",
                            std::move(flow_summary_), std::string(backend_name()),
                            std::move(dns_summary_)});
  uid_.reset();  // after the cgroup's removal: its processes are gone
  lock_.reset();
  finished_ = true;
  if (opts_.on_finished) opts_.on_finished();
}

}  // namespace cellos::cells
