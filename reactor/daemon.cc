#include "reactor/daemon.h"

#include <fcntl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <nlohmann/json.hpp>
#include <unordered_map>
#include <unordered_set>

#include "base/completion.h"
#include "cells/admission.h"
#include "cells/egress.h"
#include "cells/secrets.h"
#include "cells/root_view.h"
#include "cells/warm_pool.h"
#include "reactor/cell_logs.h"
#include "reactor/cgroup_parent.h"
#include "reactor/fd_limit.h"
#include "reactor/finished_cells.h"
#include "reactor/host.h"
#include "reactor/intakes.h"
#include "reactor/metrics.h"
#include "reactor/recovery.h"
#include "reactor/run_command.h"
#include "reactor/spool.h"
#include "reactor/spool_intake.h"
#include "reactor/status.h"
#include "reactor/supervisor.h"
#include "reactor/waiting_queue.h"

namespace cellos::reactor {
namespace {

constexpr int kSetupFailed = 125;
// Metrics are rewritten at most this often, and only after something changed: an idle
// daemon with sleeping cells does no periodic work at all.
constexpr auto kMetricsInterval = std::chrono::seconds(1);
// A launch that failed for the host's trouble (descriptors, memory, disk) is tried again after.
constexpr auto kRetryInterval = std::chrono::milliseconds(500);
// At exit, how long finished cells' settlements (a completion record and an ack) may take:
// longer than an intake's own bound on one settlement (the work-queue companion tries an ack 5 times
// with a 2 s timeout, ~11 s), so a slow server reply does not cut one short.
constexpr auto kSettlePatience = std::chrono::seconds(15);
// Then how long the log's last batches may take to leave the host, so a host leaving the fleet
// leaves its stream whole (a later start would resume anyway).
constexpr auto kPublishPatience = std::chrono::seconds(5);

int complain(const std::string& line) {
  std::fprintf(stderr, "cellos-reactor: %s\n", line.c_str());
  return kSetupFailed;
}

class Daemon final : public IntakeSink {
 public:
  explicit Daemon(cells::Config config) : config_(std::move(config)), dirs_(config_.host.state_dir) {}
  int run();

  // IntakeSink
  void offer(IntakeEntry entry) override;
  IntakeEntry* held(const Intake& from, uint64_t seq) override;
  bool stopping() const override { return stopping_; }
  void rejected(const IntakeEntry& e, const std::optional<std::string>& cell_id,
                const std::string& reason) override;
  void fence(const Intake& from, uint64_t seq) override;

 private:
  base::Result<void> start();
  uint64_t free_slots() const {
    const uint64_t taken = running_.size() + waiting_.size() + resolving_.size();
    return taken >= cap_ ? 0 : cap_ - taken;
  }
  // Refuses a spec: the rejected event and stderr line, then its intake settles it.
  void refuse(const IntakeEntry& e, const std::optional<std::string>& id, const std::string& reason,
              bool active);
  void pump();
  // An admitted spec, its hostnames resolved: waits for a slot.
  void enqueue(WaitingSpec w);
  // False when a transient failure put `w` back at the head of the queue.
  bool launch(WaitingSpec w);
  bool requeue(WaitingSpec w);
  void on_cell_done(const cells::Cell& c);
  void on_signal(int signo);
  void changed();
  void publish_metrics();
  std::string snapshot() const;
  nlohmann::ordered_json pool_json() const;  // `status`'s "pool": the warm pool's counters
  bool all_settled() const;
  bool all_caught_up() const;

  cells::Config config_;
  StateDirs dirs_;
  base::Fd state_lock_;
  // Declared first, so destroyed last: everything below uses its ring, which it closes first.
  std::unique_ptr<Host> host_;
  // NATS-delivered cells' completed events wait for their completion record (completion_gate.h).
  std::unique_ptr<CompletionGate> gate_;
  // [pool]: cells prepared ahead of demand (cells/warm_pool.h); null when off.
  std::unique_ptr<cells::WarmPool> pool_;
  // Empty v1 memory leaves of ended cells, for the next cells (cells/leaf_stock.h).
  std::unique_ptr<cells::LeafStock> stock_;
  std::unique_ptr<Supervisor> sup_;
  std::vector<std::unique_ptr<Intake>> intakes_;
  std::unique_ptr<StatusServer> status_;

  WaitingQueue waiting_;
  // Admitted specs whose egress hostnames are being looked up, by lookup number.
  std::unordered_map<uint64_t, std::unique_ptr<WaitingSpec>> resolving_;
  std::unordered_set<std::string> resolving_ids_, resolving_names_;
  uint64_t resolve_seq_ = 0;
  std::unordered_map<std::string, IntakeEntry> running_;  // by cell id
  Metrics metrics_;
  uint64_t succeeded_ = 0, failed_ = 0;
  FinishedCells finished_;
  bool stopping_ = false, killing_ = false;
  base::Timer grace_, metrics_timer_, retry_;
  uint64_t cap_ = 1;     // max_concurrent_cells, or less if descriptors cannot cover it
  bool paused_ = false;  // a transient failure: no launch until the retry or a cell ends
  bool metrics_dirty_ = false;
};

void Daemon::rejected(const IntakeEntry& e, const std::optional<std::string>& id,
                      const std::string& reason) {
  host_->events().emit(sinks::make_event(sinks::RejectedData{id, reason}));
  if (id && status_ && status_->watched(*id))
    status_->tell(*id, StatusServer::Step::kRejected, "",
                  nlohmann::json{{"event", "rejected"}, {"id", *id}, {"reason", reason}}.dump(
                      -1, ' ', false, nlohmann::json::error_handler_t::replace));
  ++metrics_.rejected;
  changed();
  std::fprintf(stderr, "cellos-reactor: rejected %s: %s\n", e.name.c_str(), reason.c_str());
}

void Daemon::refuse(const IntakeEntry& e, const std::optional<std::string>& id,
                    const std::string& reason, bool active) {
  rejected(e, id, reason);
  e.from->refuse(e, id, reason, active);
}

IntakeEntry* Daemon::held(const Intake& from, uint64_t seq) {
  for (auto& [id, e] : running_)
    if (e.from == &from && e.seq == seq) return &e;
  WaitingSpec* w = waiting_.find_if(
      [&](const WaitingSpec& x) { return x.entry.from == &from && x.entry.seq == seq; });
  return w ? &w->entry : nullptr;
}

void Daemon::fence(const Intake& from, uint64_t seq) {
  auto match = [&](const IntakeEntry& e) { return e.from == &from && e.seq == seq; };
  for (auto& [id, e] : running_) {
    if (!match(e)) continue;
    e.fenced = true;
    for (const auto& [raw, c] : sup_->cells())
      if (c->id() == id) c->kill(cells::KillCause::kFenced);
    std::fprintf(stderr, "cellos-reactor: %s: another host took it over: cell %s killed, its "
                 "end not recorded here\n", from.where(e).c_str(), id.c_str());
  }
  waiting_.remove_if([&](const WaitingSpec& w) { return match(w.entry); }, [](const WaitingSpec&) {});
  for (auto& [key, w] : resolving_)
    if (match(w->entry)) w->entry.fenced = true;  // dropped when its lookup ends
  pump();
}

void Daemon::offer(IntakeEntry e) {
  if (stopping_ || waiting_.has_name(e.name) || resolving_names_.count(e.name)) return;
  cells::AdmissionOptions ao;
  ao.config = &config_;
  ao.id_taken = [this](const std::string& id) -> std::optional<std::string> {
    if (running_.count(id)) return "is already running";
    if (waiting_.has_id(id) || resolving_ids_.count(id)) return "is already waiting";
    return std::nullopt;
  };
  cells::Admission a = cells::admit(e.text, ao);
  if (!a.admitted()) {
    return refuse(e, a.cell_id, e.from->where(e) + ": " + a.refusal.message(), false);
  }
  WaitingSpec w{std::move(e), std::move(*a.spec)};
  if (!cells::needs_resolution(w.spec)) return enqueue(std::move(w));
  // Hostnames in its egress rules: looked up on the ring; the spec waits aside meanwhile, its
  // id and entry held, so a slow or dead DNS server delays only the specs that need it.
  const uint64_t key = ++resolve_seq_;
  auto held = std::make_unique<WaitingSpec>(std::move(w));
  WaitingSpec& spec = *held;
  resolving_ids_.insert(spec.spec.id);
  resolving_names_.insert(spec.entry.name);
  resolving_.emplace(key, std::move(held));
  cells::resolve_egress(spec.spec, host_->resolver(), [this, key](base::Result<void> r) {
    auto it = resolving_.find(key);
    WaitingSpec done = std::move(*it->second);
    resolving_.erase(it);
    resolving_ids_.erase(done.spec.id);
    resolving_names_.erase(done.entry.name);
    if (done.entry.fenced) return;  // another host runs it
    if (stopping_) {
      // Never started: back to its intake (a spool file just stays in the spool).
      (void)done.entry.from->give_back(done.entry);
      return;
    }
    if (!r) return refuse(done.entry, done.spec.id, done.entry.from->where(done.entry) + ": " +
                                                        r.error().message(), false);
    enqueue(std::move(done));
  });
}

void Daemon::enqueue(WaitingSpec w) {
  waiting_.push_back(std::move(w));
  changed();
  pump();
}

void Daemon::pump() {
  while (!stopping_ && !paused_ && !waiting_.empty() && running_.size() < cap_) {
    if (!launch(*waiting_.pop_front())) break;
  }
  for (auto& in : intakes_) in->offer_room(free_slots());
  changed();
}

bool Daemon::requeue(WaitingSpec w) {
  std::fprintf(stderr, "cellos-reactor: cell %s waits: the host is short of descriptors, "
               "memory or disk; retrying\n", w.spec.id.c_str());
  waiting_.push_front(std::move(w));
  paused_ = true;
  if (!retry_.armed())
    retry_.start(kRetryInterval, [this](int) {
      paused_ = false;
      pump();
    });
  return false;
}

bool Daemon::launch(WaitingSpec w) {
  const std::string id = w.spec.id;
  const auto admitted = std::chrono::steady_clock::now();
  const std::string prefix = w.entry.from->where(w.entry) + ": ";
  auto env = cells::build_environment(w.spec, config_.secrets);
  if (!env) {
    if (transient_errno(env.error().err)) return requeue(std::move(w));
    refuse(w.entry, id, prefix + env.error().message(), false);
    return true;
  }
  auto brokered = cells::read_brokered_secrets(w.spec, config_.secrets);
  if (!brokered) {
    if (transient_errno(brokered.error().err)) return requeue(std::move(w));
    refuse(w.entry, id, prefix + brokered.error().message(), false);
    return true;
  }
  if (auto r = w.entry.from->activate(w.entry, id); !r) {
    if (r.error().err == ENOENT) return true;  // withdrawn meanwhile
    if (transient_errno(r.error().err)) return requeue(std::move(w));
    refuse(w.entry, id, prefix + r.error().message(), false);
    return true;
  }
  const std::string logdir = dirs_.logs + "/" + id;
  // Only for a followed cell, or to empty a reused id's old logs (cell_logs.h).
  const bool watched = status_ && status_->watched(id);
  auto made = prepare_cell_logs(logdir, watched);
  if (!made) {
    if (transient_errno(made.error().err) && w.entry.from->deactivate(w.entry, id))
      return requeue(std::move(w));
    refuse(w.entry, id, "cell " + id + ": logs: " + made.error().message(), true);
    return true;
  }

  cells::CellOptions co;
  co.spec = std::move(w.spec);
  co.env = std::move(*env);
  co.brokered_secrets = std::move(*brokered);
  co.run_id = new_run_id();
  co.stdout_path = logdir + "/stdout";
  co.stderr_path = logdir + "/stderr";
  co.max_stream_bytes = config_.logs.max_bytes_per_stream;
  running_.emplace(id, std::move(w.entry));
  if (watched)
    status_->tell(id, StatusServer::Step::kStarted, co.run_id,
                  nlohmann::json{{"event", "started"},
                                 {"id", id},
                                 {"runId", co.run_id},
                                 {"stdout", co.stdout_path},
                                 {"stderr", co.stderr_path}}
                      .dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
  sup_->add(std::move(co));
  // start() returns once the cell's init runs (CLONE_VFORK): this is the spawn latency.
  metrics_.observe_spawn(std::chrono::steady_clock::now() - admitted);
  ++metrics_.started;
  return true;
}

void Daemon::on_cell_done(const cells::Cell& c) {
  const cells::CellOutcome& o = c.outcome();
  auto it = running_.find(c.id());
  if (o.refused) {
    // The id was running in another reactor sharing the state dir: the cell emitted its own
    // rejection; the intake settles the spec as rejected.
    ++metrics_.rejected;
    if (it != running_.end()) it->second.from->refuse(it->second, c.id(), o.error, true);
  } else {
    metrics_.observe_finished(o);
    if (failure_reason(o)) ++failed_;
    else ++succeeded_;
    if (it != running_.end())
      it->second.from->finished(it->second, c, host_->events().emitted_seq());
  }
  if (it != running_.end()) running_.erase(it);
  // A NATS cell whose events the gate still holds: its waiters hear once they are written.
  const bool held = gate_ && gate_->gated(c.id()) && !o.refused;
  finished_.add(c, held ? FinishedCells::kHeld : host_->events().emitted_seq(),
                host_->events().written_seq());
  // A client waits for this cell's finished line, told once its events are on disk: write
  // them now rather than at the batch timer.
  if (!held && status_ && status_->watched(c.id())) host_->events().seal_now();
  paused_ = false;  // a cell's descriptors and memory are free again
  changed();
  pump();
}

void Daemon::on_signal(int signo) {
  if (stopping_) {
    if (!killing_) {
      std::fprintf(stderr, "cellos-reactor: %s again: killing %zu running cells now\n",
                   strsignal(signo), running_.size());
      killing_ = true;
      sup_->kill_all(cells::KillCause::kReactorStop);
      grace_.cancel();
    }
    return;
  }
  stopping_ = true;
  // No cell is admitted from now on: nothing prepared is kept (processes, leaves).
  if (pool_) pool_->shutdown();
  for (auto& in : intakes_) in->stop();
  if (status_) status_->draining();
  // Waiting specs an intake takes back (to run elsewhere) leave the queue; the rest (spool
  // files) stay where they are for the next start.
  waiting_.remove_if([](const WaitingSpec& w) { return w.entry.from->give_back(w.entry); },
                     [](const WaitingSpec&) {});
  std::fprintf(stderr,
               "cellos-reactor: %s: intake stopped; %zu running cells got SIGTERM and have %llus "
               "to finish (%zu waiting specs stay in the spool); send SIGTERM again to kill "
               "them now\n",
               strsignal(signo), running_.size(),
               static_cast<unsigned long long>(config_.host.shutdown_grace_seconds),
               waiting_.size());
  if (running_.empty()) return;
  // Warned now, killed at the end of the host's grace or of their own shorter
  // gracefulShutdownSeconds: their completed events say reason "shutdown" and whether they
  // left in time.
  const std::chrono::seconds host_grace(config_.host.shutdown_grace_seconds);
  sup_->stop_all(cells::KillCause::kReactorStop,
                 [&](const cells::Cell& c) { return c.shutdown_grace(host_grace); });
  grace_.start(std::chrono::seconds(config_.host.shutdown_grace_seconds), [this](int res) {
    if (res != -ETIME || killing_) return;
    killing_ = true;
    std::fprintf(stderr, "cellos-reactor: grace period over: killing %zu running cells\n",
                 running_.size());
    sup_->kill_all(cells::KillCause::kReactorStop);
  });
}

void Daemon::changed() {
  metrics_dirty_ = true;
  if (metrics_timer_.armed() || !host_) return;
  metrics_timer_.start(kMetricsInterval, [this](int) { publish_metrics(); });
}

void Daemon::publish_metrics() {
  if (!metrics_dirty_) return;
  metrics_dirty_ = false;
  metrics_.running = running_.size();
  metrics_.waiting = waiting_.size();
  metrics_.events_written = host_ ? host_->events().events_written() : 0;
  if (auto r = base::replace_file(dirs_.state + "/metrics.prom", metrics_.render(config_.host.id));
      !r)
    complain("metrics: " + r.error().message());
}

nlohmann::ordered_json Daemon::pool_json() const {
  if (!pool_) return {{"enabled", false}};
  const cells::WarmPoolStats s = pool_->stats();
  return {{"enabled", true},      {"ready", s.ready},     {"starting", s.starting},
          {"hits", s.hits},       {"misses", s.misses},   {"cold", s.cold},
          {"prepared", s.prepared}, {"discarded", s.discarded}};
}

std::string Daemon::snapshot() const {
  using nlohmann::ordered_json;
  const auto now = std::chrono::steady_clock::now();
  std::vector<const cells::Cell*> cells;
  for (const auto& [raw, cell] : sup_->cells()) cells.push_back(cell.get());
  std::sort(cells.begin(), cells.end(), [](const cells::Cell* a, const cells::Cell* b) {
    return a->launched_at() < b->launched_at();
  });
  ordered_json list = ordered_json::array();
  for (const cells::Cell* c : cells) {
    if (c->finished()) continue;
    list.push_back({{"id", c->id()},
                    {"pid", c->pid()},
                    {"backend", c->backend_name()},
                    {"ageSeconds", std::chrono::duration<double>(now - c->launched_at()).count()},
                    {"memoryBytes", c->memory_bytes()},
                    {"cgroup", c->cgroup_path()}});
  }
  ordered_json j = {{"hostId", config_.host.id},
                    {"pid", ::getpid()},
                    {"stopping", stopping_},
                    {"running", running_.size()},
                    {"waiting", waiting_.size()},
                    {"succeeded", succeeded_},
                    {"failed", failed_},
                    {"rejected", metrics_.rejected},
                    {"cells", std::move(list)},
                    {"pool", pool_json()},
                    {"recentlyFinished", finished_.recent()}};
  return j.dump(-1, ' ', false, ordered_json::error_handler_t::replace);
}

bool Daemon::all_settled() const {
  return std::all_of(intakes_.begin(), intakes_.end(), [](const auto& i) { return i->settled(); });
}

bool Daemon::all_caught_up() const {
  return std::all_of(intakes_.begin(), intakes_.end(),
                     [](const auto& i) { return i->caught_up(); });
}

base::Result<void> Daemon::start() {
  raise_fd_limit();
  // A running cell holds at least three descriptors (its stdout, stderr and status pipes);
  // more cells than the limit covers would fail their setup, so run fewer and say so.
  rlimit nofile{};
  ::getrlimit(RLIMIT_NOFILE, &nofile);
  const uint64_t budget = nofile.rlim_cur > 512 ? (nofile.rlim_cur - 256) / 3 : 64;
  cap_ = std::min<uint64_t>(config_.host.max_concurrent_cells, budget);
  if (cap_ < config_.host.max_concurrent_cells)
    std::fprintf(stderr, "cellos-reactor: host.max_concurrent_cells is %llu but the descriptor "
                 "limit (RLIMIT_NOFILE %llu, not raisable here) covers %llu cells: running at "
                 "most %llu at once\n",
                 static_cast<unsigned long long>(config_.host.max_concurrent_cells),
                 static_cast<unsigned long long>(nofile.rlim_cur),
                 static_cast<unsigned long long>(budget), static_cast<unsigned long long>(cap_));
  if (auto r = dirs_.make(); !r) return std::move(r).error().context("host.state_dir");
  auto lock = lock_state_dir(dirs_);
  if (!lock) return std::move(lock).error();
  state_lock_ = std::move(*lock);

  auto roots = cells::detect_cgroup_roots();
  if (!roots) return std::move(roots).error();
  auto self = base::read_file_at(AT_FDCWD, "/proc/self/cgroup");
  auto placement = cgroup_placement_for_daemon(config_, roots->unified, self ? *self : "");
  if (!placement) return std::move(placement).error().context("host.cgroup_parent");
  HostOptions ho;
  ho.config = &config_;
  ho.uplink = true;
  ho.ring_entries = 4096;
  ho.cgroups = std::move(*placement);
  auto host = Host::create(std::move(ho));
  if (!host) return std::move(host).error();
  host_ = std::move(*host);
  host_->on_signal([this](int signo) { on_signal(signo); });
  if (config_.intake.nats.enabled) gate_ = std::make_unique<CompletionGate>(host_->events());
  if (config_.pool.enabled && config_.pool.max_size > 0 && config_.cells.backend == "native") {
    pool_ = std::make_unique<cells::WarmPool>(cells::WarmPoolOptions{
        &host_->ring(), &host_->cgroups(), config_.pool, !host_->ring().can_wait_pid(),
        cells::root_view_paths(config_.policy)});
    host_->set_pool(pool_.get());
  }
  stock_ = std::make_unique<cells::LeafStock>(host_->cgroups(), config_.host.cgroup_leaf_stock);
  if (stock_->usable()) host_->set_leaf_stock(stock_.get());
  sup_ = std::make_unique<Supervisor>(
      *host_, SupervisorOptions{[this](const cells::Cell& c) { on_cell_done(c); }, gate_.get()});
  // The flow probes load now, not at the first networked cell: whether they run (and who
  // enforces) is said once, at start, on stderr and in a flow_probes event.
  host_->flows().announce();

  RecoveryOptions ro;
  ro.dirs = &dirs_;
  ro.tree = &host_->cgroups();
  ro.events = &host_->events();
  ro.config = &config_;
  if (const size_t lost = recover_lost_cells(ro).size()) {
    metrics_.failed["lost"] += lost;
    failed_ += lost;
  }

  auto status = StatusServer::create(host_->ring(), dirs_.state + "/reactor.sock",
                                     [this] { return snapshot(); });
  if (!status) return std::move(status).error();
  status_ = std::move(*status);
  finished_.set_status(status_.get());
  // `run --via-daemon`'s SIGINT/SIGTERM: its cell stops as `run` stops its own (the spec's
  // grace, then killed; a second signal kills it now).
  // `run --via-daemon` hands its staged spec over with its wait (status.h `hand`).
  status_->set_spool_dir(dirs_.spool);
  status_->set_control([this](std::string_view verb, const std::string& id) {
    for (const auto& [raw, cell] : sup_->cells()) {
      if (cell->id() != id || cell->finished()) continue;
      if (verb == "kill") cell->kill(cells::KillCause::kReactorStop);
      else cell->stop(cells::KillCause::kReactorStop, cell->shutdown_grace(std::chrono::seconds(0)));
      return true;
    }
    return false;
  });
  host_->events().add_on_written([this](uint64_t written) { finished_.written(written); });
  if (gate_)
    gate_->on_release([this](const std::string& id, uint64_t emitted) {
      finished_.emitted(id, emitted, host_->events().written_seq());
    });
  grace_.bind(host_->ring());
  metrics_timer_.bind(host_->ring());
  retry_.bind(host_->ring());

  intakes_ = make_intakes({&config_, host_.get(), dirs_, this, gate_.get()});
  std::fprintf(stderr, "cellos-reactor: serving %s as host %s (up to %llu cells at once)\n",
               dirs_.state.c_str(), config_.host.id.c_str(),
               static_cast<unsigned long long>(cap_));
  for (auto& in : intakes_) {
    if (auto r = in->start(); !r) return std::move(r).error();
    in->offer_room(free_slots());
  }
  // After recovery (which reclaims a dead daemon's prepared leaves) and the intakes' start.
  if (pool_) pool_->start();
  changed();
  return base::ok();
}

int Daemon::run() {
  if (auto r = start(); !r) return complain(r.error().message());
  // Lookups still pending end too (at their timeout at worst): their callbacks use this daemon.
  auto r = sup_->run_until([this] { return stopping_ && running_.empty() && resolving_.empty(); });
  // Finished cells' settlements still on their way: wait for them a while; what is left is
  // redelivered later and found settled, or run again.
  base::Timer patience(&host_->ring());
  bool gave_up = false;
  if (r && !all_settled()) {
    patience.start(kSettlePatience, [&](int) { gave_up = true; });
    r = sup_->run_until([&] { return all_settled() || gave_up; });
    if (gave_up)
      for (auto& in : intakes_)
        if (!in->settled()) in->abandon_settling();
    patience.cancel();
    if (r) r = sup_->run_until([&] { return !patience.armed(); });
  }
  if (r && !all_caught_up()) {
    gave_up = false;
    patience.start(kPublishPatience, [&](int) { gave_up = true; });
    r = sup_->run_until([&] { return all_caught_up() || gave_up; });
    patience.cancel();
    if (r) r = sup_->run_until([&] { return !patience.armed(); });
  }
  for (auto& in : intakes_) in->close();
  // Status answered through the drain ("draining"); the socket goes only now, once its last
  // lines (to `submit --wait` clients) are out, or after a second at most.
  if (status_) {
    status_->stop();
    gave_up = false;
    patience.start(std::chrono::seconds(1), [&](int) { gave_up = true; });
    auto flushed = sup_->run_until([&] { return status_->idle() || gave_up; });
    patience.cancel();
    if (flushed) flushed = sup_->run_until([&] { return !patience.armed(); });
    if (r) r = flushed;
  }
  grace_.cancel();
  retry_.cancel();
  if (pool_) {
    pool_->shutdown();  // a daemon that stopped on an error never took a signal
    if (r) r = sup_->run_until([&] { return pool_->idle(); });
  }
  metrics_dirty_ = true;
  publish_metrics();
  // Every cell is gone: the stocked leaves go with them (no daemon leaves a stock behind).
  if (stock_) stock_->clear();
  host_->cgroups().remove_empty_parents();
  if (!r) return complain(r.error().message());
  std::fprintf(stderr, "cellos-reactor: stopped (%llu succeeded, %llu failed, %llu rejected; "
               "%zu specs left waiting in the spool)\n",
               static_cast<unsigned long long>(succeeded_),
               static_cast<unsigned long long>(failed_),
               static_cast<unsigned long long>(metrics_.rejected), waiting_.size());
  return 0;
}

}  // namespace

int serve_command(const ServeArgs& args) {
  auto config = load_config_or_say(args.config_path);
  if (!config) return kSetupFailed;
  Daemon d(std::move(*config));
  return d.run();
}

}  // namespace cellos::reactor
