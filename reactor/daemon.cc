#include "reactor/daemon.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <nlohmann/json.hpp>
#include <optional>
#include <unordered_map>
#include <unordered_set>

#include "cells/cell_init.h"
#include "cells/cell_lock.h"
#include "cells/cgroup.h"
#include "cells/config.h"
#include "cells/egress.h"
#include "cells/secrets.h"
#include "netns/uplink.h"
#include "reactor/event_log_config.h"
#include "reactor/metrics.h"
#include "reactor/nats_bridge.h"
#include "reactor/nats_commands.h"
#include "reactor/run_command.h"
#include "reactor/spool.h"
#include "reactor/status.h"
#include "reactor/supervisor.h"

namespace cellos::reactor {
namespace {

constexpr int kSetupFailed = 125;
// Metrics are rewritten at most this often, and only after something changed: an idle
// daemon with sleeping cells does no periodic work at all.
constexpr auto kMetricsInterval = std::chrono::seconds(1);
// Start-up recovery waits at most this long for a lost cell's processes to die.
constexpr auto kReclaimWait = std::chrono::seconds(5);

int complain(const std::string& line) {
  std::fprintf(stderr, "cellos-reactor: %s\n", line.c_str());
  return kSetupFailed;
}

struct Callback final : base::Completion {
  std::function<void(int)> fn;
  bool in_flight = false;
  void complete(int res) override {
    in_flight = false;
    if (fn) fn(res);
  }
};

// Out of descriptors, memory or disk for a moment: the spec waits and is tried again, it is
// never rejected for the host's trouble.
bool transient(int err) {
  return err == EMFILE || err == ENFILE || err == ENOMEM || err == ENOSPC || err == EDQUOT ||
         err == EAGAIN;
}
constexpr auto kRetryInterval = std::chrono::milliseconds(500);

// What the metrics and the status call a finished cell: "exit_nonzero" for a command that
// exited non-zero, otherwise the completed event's reason.
std::optional<std::string> failure_reason(const cells::CellOutcome& o) {
  if (o.reason == sinks::CompletedReason::kExited)
    return o.exit_code == 0 ? std::nullopt : std::optional<std::string>("exit_nonzero");
  return std::string(sinks::reason_name(o.reason));
}

class Daemon {
 public:
  explicit Daemon(cells::Config config) : config_(std::move(config)), dirs_(config_.host.state_dir) {}
  int run();

 private:
  // A spec that came from the NATS work queue instead of the spool.
  struct NatsOrigin {
    std::string token;  // its ack subject
    uint64_t stream_seq = 0;
    std::string text;   // the spec as delivered: active/<id>.json while its cell runs
  };
  struct Waiting {
    std::string name;  // spool entry ("nats:<stream seq>" for a NATS spec)
    cells::Spec spec;
    std::optional<NatsOrigin> nats;
  };
  struct Running {
    std::string name;  // the spool entry its spec came in as (its file is now active/<id>.json)
    std::optional<NatsOrigin> nats;
  };

  base::Result<void> lock_state_dir();
  void recover();
  void offer(const std::string& name);
  // A spec delivered from [intake.nats].
  void offer_nats(nats::Frame f);
  void reject_nats(const NatsOrigin& n, const std::optional<std::string>& id,
                   const std::string& reason);
  // Another host took over a NATS spec's claim: its cell is killed and never completed here.
  void fence_nats(uint64_t stream_seq);
  // Rejects a waiting spec, wherever it came from.
  void refuse(const Waiting& w, const std::string& reason, bool active);
  uint64_t free_slots() const {
    const uint64_t taken = running_.size() + waiting_.size();
    return taken >= cap_ ? 0 : cap_ - taken;
  }
  void reject(const std::string& name, const std::optional<std::string>& id,
              const std::string& reason, bool active);
  // active/<id>.json -> rejected/<name> beside its .error (a spec that had left the spool).
  void active_to_rejected(const std::string& id, const std::string& name,
                          const std::string& reason);
  std::string active_path(const std::string& id) const { return dirs_.active + "/" + id + ".json"; }
  void pump();
  // False when a transient failure put `w` back at the head of the queue.
  bool launch(Waiting w);
  void retry_later();
  void on_cell_done(const cells::Cell& c);
  void on_signal(int signo);
  void changed();
  void publish_metrics();
  std::string snapshot() const;

  cells::Config config_;
  StateDirs dirs_;
  base::Fd state_lock_;
  std::optional<cells::CgroupTree> tree_;

  std::deque<Waiting> waiting_;
  std::unordered_set<std::string> waiting_ids_, waiting_names_;
  std::unordered_map<std::string, Running> running_;
  Metrics metrics_;
  uint64_t succeeded_ = 0, failed_ = 0;
  bool stopping_ = false, killing_ = false;
  Callback grace_, metrics_timer_, retry_;
  uint64_t cap_ = 1;       // max_concurrent_cells, or less if descriptors cannot cover it
  bool paused_ = false;    // a transient failure: no launch until the retry or a cell ends
  std::unordered_set<std::string> retry_names_;  // spool entries to read again
  bool metrics_dirty_ = false;

  // The host side of [network] uplink = "nat": outlives the supervisor and its cells.
  std::unique_ptr<netns::HostUplink> uplink_;
  // [intake.nats] / [events.nats]: the companion process and what must outlive it.
  std::unique_ptr<NatsBridge> nats_;
  Callback settle_timer_, publish_timer_;
  bool settle_gave_up_ = false, publish_gave_up_ = false;
  // Declared last so they go first: the supervisor closes the ring before anything the ring
  // could still complete into is freed.
  std::unique_ptr<sinks::EventSink> events_;
  std::unique_ptr<SpoolWatcher> watcher_;
  std::unique_ptr<StatusServer> status_;
  std::unique_ptr<Supervisor> sup_;
};

base::Result<void> Daemon::lock_state_dir() {
  const std::string path = dirs_.state + "/reactor.lock";
  auto fd = base::open_at(AT_FDCWD, path, O_RDWR | O_CREAT | O_NOFOLLOW, 0600);
  if (!fd) return std::move(fd).error();
  if (::flock(fd->get(), LOCK_EX | LOCK_NB) != 0) {
    if (errno != EWOULDBLOCK) return base::sys_error("flock", "\"" + path + "\"");
    auto pid = base::read_fd(fd->get(), path, 64);
    std::string holder = pid.ok() && !pid->empty() ? " (pid " + pid->substr(0, pid->find('\n')) + ")" : "";
    return base::Error{EWOULDBLOCK, "flock", "\"" + path + "\"",
                       "another cellos-reactor daemon serves " + dirs_.state + holder, {}};
  }
  std::string pid = std::to_string(::getpid()) + "\n";
  if (::ftruncate(fd->get(), 0) == 0) (void)::pwrite(fd->get(), pid.data(), pid.size(), 0);
  state_lock_ = std::move(*fd);
  return base::ok();
}

// Whatever a predecessor that died left: cgroup leaves (with processes, if its cells outlived
// it) and active/ entries of cells it had started. A leaf whose cell lock is held belongs to a
// live `run` sharing this state dir, and is left alone.
void Daemon::recover() {
  std::vector<std::string> ids = tree_->list_leaves();
  DIR* d = ::opendir(dirs_.active.c_str());
  if (d) {
    while (dirent* e = ::readdir(d)) {
      std::string n = e->d_name;
      if (n.size() > 5 && n.ends_with(".json")) {
        std::string id = n.substr(0, n.size() - 5);
        if (std::find(ids.begin(), ids.end(), id) == ids.end()) ids.push_back(id);
      }
    }
    ::closedir(d);
  }
  for (const std::string& id : ids) {
    auto lock = cells::CellLock::acquire(dirs_.state, id);
    if (!lock) continue;
    if (auto r = tree_->reclaim_leaf(id, kReclaimWait); !r)
      complain("recovering lost cell " + id + ": " + r.error().message());
    ::unlink(active_path(id).c_str());
    events_->emit(sinks::make_event(sinks::DestroyedData{id, false, true, "lost"}));
    ++metrics_.failed["lost"];
    ++failed_;
    std::fprintf(stderr, "cellos-reactor: cell %s was running when the previous daemon died: "
                 "killed, removed and reported lost\n", id.c_str());
  }
}

void Daemon::active_to_rejected(const std::string& id, const std::string& name,
                                const std::string& reason) {
  const std::string from = active_path(id), to = dirs_.rejected + "/" + name;
  (void)base::replace_file(to + ".error", reason + "\n");
  if (::rename(from.c_str(), to.c_str()) != 0) ::unlink(from.c_str());
}

void Daemon::reject(const std::string& name, const std::optional<std::string>& id,
                    const std::string& reason, bool active) {
  events_->emit(sinks::make_event(sinks::RejectedData{id, reason}));
  ++metrics_.rejected;
  changed();
  if (active && id) {
    active_to_rejected(*id, name, reason);
  } else if (auto r = move_to_rejected(dirs_, name, reason); !r) {
    // The spool entry cannot be moved: say so, and never look at it again in this run.
    complain("spool entry " + name + ": " + r.error().message());
  }
  std::fprintf(stderr, "cellos-reactor: rejected %s: %s\n", name.c_str(), reason.c_str());
}

void Daemon::offer(const std::string& name) {
  if (stopping_ || waiting_names_.count(name)) return;
  auto text = read_spool_entry(dirs_, name);
  if (!text) {
    // Gone already: taken by this daemon after a rescan, or withdrawn by its submitter.
    if (text.error().err == ENOENT) return;
    if (transient(text.error().err)) {
      retry_names_.insert(name);
      return retry_later();
    }
    return reject(name, std::nullopt, "spool entry " + name + ": " + text.error().message(), false);
  }
  auto spec = cells::parse_spec(*text);
  if (!spec) return reject(name, std::nullopt, "spool entry " + name + ": " + spec.error().message(), false);
  const std::string id = spec->id;
  if (auto r = cells::check_policy(*spec, config_.policy); !r)
    return reject(name, id, "spool entry " + name + ": " + r.error().message(), false);
  // Hostnames in egress rules are resolved once, at admission, through the host's resolver;
  // the addresses go into the cell's ruleset and its network_policy event.
  if (auto r = cells::resolve_egress(*spec); !r)
    return reject(name, id, "spool entry " + name + ": " + r.error().message(), false);
  if (running_.count(id))
    return reject(name, id, "spool entry " + name + ": spec.id: cell " + id + " is already running", false);
  if (waiting_ids_.count(id))
    return reject(name, id, "spool entry " + name + ": spec.id: cell " + id + " is already waiting", false);
  waiting_ids_.insert(id);
  waiting_names_.insert(name);
  waiting_.push_back(Waiting{name, std::move(*spec), std::nullopt});
  changed();
  pump();
}

void Daemon::reject_nats(const NatsOrigin& n, const std::optional<std::string>& id,
                         const std::string& reason) {
  events_->emit(sinks::make_event(sinks::RejectedData{id, reason}));
  ++metrics_.rejected;
  changed();
  nats_->term(n.token, n.stream_seq, reason);
  std::fprintf(stderr, "cellos-reactor: rejected nats spec (stream seq %llu): %s\n",
               static_cast<unsigned long long>(n.stream_seq), reason.c_str());
}

void Daemon::refuse(const Waiting& w, const std::string& reason, bool active) {
  if (!w.nats) return reject(w.name, w.spec.id, reason, active);
  if (active) ::unlink(active_path(w.spec.id).c_str());
  reject_nats(*w.nats, w.spec.id, reason);
}

void Daemon::offer_nats(nats::Frame f) {
  NatsOrigin origin{std::move(f.token), f.seq, std::move(f.text)};
  const std::string where = "nats spec (stream seq " + std::to_string(origin.stream_seq) + ")";
  // Completed or rejected here, and the settlement is still on its way to the server (the
  // companion hung or restarting, a late heartbeat): settled with it, never run or rejected twice.
  if (nats_->settling(origin.stream_seq, origin.token)) {
    std::fprintf(stderr, "cellos-reactor: nats: %s redelivered (delivery %llu) before this "
                 "host's ack or term for it reached the server: settled the same way, not run "
                 "again\n", where.c_str(),
                 static_cast<unsigned long long>(f.count));
    return;
  }
  if (stopping_) return nats_->give_back(origin.token);
  if (!f.key.empty())  // the companion refused to carry it: "too-large:<bytes>"
    return reject_nats(origin, std::nullopt, where + ": " + f.key.substr(f.key.find(':') + 1) +
                                                 " bytes: over the 1 MiB a spec may have");
  auto spec = cells::parse_spec(origin.text);
  if (!spec) return reject_nats(origin, std::nullopt, where + ": " + spec.error().message());
  const std::string id = spec->id;
  // The same message again (redelivered while it waits or runs here: a late heartbeat, or a
  // companion restart): keep the one cell, and settle it through the newest delivery.
  auto adopt = [&](std::optional<NatsOrigin>& held) {
    if (!held || held->stream_seq != origin.stream_seq) return false;
    if (held->token != origin.token) nats_->release(held->token);
    nats_->hold(origin.token);
    held->token = origin.token;
    std::fprintf(stderr, "cellos-reactor: nats: spec %s redelivered (delivery %llu) while it %s "
                 "here: kept, not run twice\n", id.c_str(), static_cast<unsigned long long>(f.count),
                 running_.count(id) ? "runs" : "waits");
    return true;
  };
  if (auto it = running_.find(id); it != running_.end() && adopt(it->second.nats)) return;
  for (Waiting& w : waiting_)
    if (w.spec.id == id && adopt(w.nats)) return;
  if (auto r = cells::check_policy(*spec, config_.policy); !r)
    return reject_nats(origin, id, where + ": " + r.error().message());
  if (auto r = cells::resolve_egress(*spec); !r)
    return reject_nats(origin, id, where + ": " + r.error().message());
  if (running_.count(id))
    return reject_nats(origin, id, where + ": spec.id: cell " + id + " is already running");
  if (waiting_ids_.count(id))
    return reject_nats(origin, id, where + ": spec.id: cell " + id + " is already waiting");
  nats_->hold(origin.token);
  const std::string name = "nats:" + std::to_string(origin.stream_seq);
  waiting_ids_.insert(id);
  waiting_names_.insert(name);
  waiting_.push_back(Waiting{name, std::move(*spec), std::move(origin)});
  changed();
  pump();
}

void Daemon::fence_nats(uint64_t stream_seq) {
  for (auto& [id, r] : running_) {
    if (!r.nats || r.nats->stream_seq != stream_seq) continue;
    r.nats.reset();  // on_cell_done records and acks nothing for it
    for (const auto& [raw, c] : sup_->cells())
      if (c->id() == id) c->kill(cells::KillCause::kReactorStop);
  }
  std::erase_if(waiting_, [&](const Waiting& w) {
    if (!w.nats || w.nats->stream_seq != stream_seq) return false;
    waiting_ids_.erase(w.spec.id);
    waiting_names_.erase(w.name);
    return true;
  });
  pump();
}

void Daemon::pump() {
  while (!stopping_ && !paused_ && !waiting_.empty() && running_.size() < cap_) {
    Waiting w = std::move(waiting_.front());
    waiting_.pop_front();
    waiting_ids_.erase(w.spec.id);
    waiting_names_.erase(w.name);
    if (!launch(std::move(w))) break;
  }
  if (nats_) nats_->offer_room(free_slots());
  changed();
}

void Daemon::retry_later() {
  if (retry_.in_flight || stopping_) return;
  retry_.fn = [this](int) {
    paused_ = false;
    auto names = std::move(retry_names_);
    retry_names_.clear();
    for (const std::string& n : names) offer(n);
    pump();
  };
  retry_.in_flight = true;
  sup_->ring().timeout(kRetryInterval, retry_);
}

bool Daemon::launch(Waiting w) {
  const std::string id = w.spec.id;
  const auto admitted = std::chrono::steady_clock::now();
  auto requeue = [&] {
    std::fprintf(stderr, "cellos-reactor: cell %s waits: the host is short of descriptors, "
                 "memory or disk; retrying\n", id.c_str());
    waiting_ids_.insert(id);
    waiting_names_.insert(w.name);
    waiting_.push_front(std::move(w));
    paused_ = true;
    retry_later();
    return false;
  };
  auto env = cells::build_environment(w.spec, config_.secrets);
  if (!env) {
    if (transient(env.error().err)) return requeue();
    refuse(w, (w.nats ? "" : "spool entry " + w.name + ": ") + env.error().message(), false);
    return true;
  }
  // A NATS spec has no spool file: its text becomes active/<id>.json, so a daemon that dies
  // knows which cells it lost (the server redelivers their specs elsewhere after AckWait).
  auto active = w.nats ? base::replace_file(active_path(id), w.nats->text, 0640).ok()
                             ? base::Result<std::string>(active_path(id))
                             : base::Result<std::string>(base::sys_error("write", "\"" + active_path(id) + "\""))
                       : move_to_active(dirs_, w.name, id);
  if (!active) {
    if (active.error().err == ENOENT && !w.nats) return true;  // withdrawn from the spool
    if (transient(active.error().err)) return requeue();
    refuse(w, (w.nats ? "" : "spool entry " + w.name + ": ") + active.error().message(), false);
    return true;
  }
  const std::string logdir = dirs_.logs + "/" + id;
  // The log files exist (empty) from the start, but are opened only when output arrives: a
  // quiet cell holds no descriptor for them. A reused id's old logs are emptied.
  auto made = [&]() -> base::Result<void> {
    bool fresh = ::mkdir(logdir.c_str(), 0750) == 0;
    if (!fresh && errno != EEXIST) return base::sys_error("mkdir", "\"" + logdir + "\"");
    for (const char* stream : {"/stdout", "/stderr"}) {
      const std::string path = logdir + stream;
      if (::mknodat(AT_FDCWD, path.c_str(), S_IFREG | 0640, 0) == 0) continue;
      if (errno != EEXIST || ::truncate(path.c_str(), 0) != 0)
        return base::sys_error(errno == EEXIST ? "truncate" : "mknod", "\"" + path + "\"");
    }
    return base::ok();
  }();
  if (!made) {
    if (transient(made.error().err) &&
        (w.nats ? ::unlink(active->c_str()) == 0
                : ::rename(active->c_str(), (dirs_.spool + "/" + w.name).c_str()) == 0))
      return requeue();
    refuse(w, "cell " + id + ": logs: " + made.error().message(), true);
    return true;
  }

  cells::CellOptions co;
  co.spec = std::move(w.spec);
  co.env = std::move(*env);
  co.run_id = new_run_id();
  co.stdout_path = logdir + "/stdout";
  co.stderr_path = logdir + "/stderr";
  co.max_stream_bytes = config_.logs.max_bytes_per_stream;
  running_.emplace(id, Running{w.name, std::move(w.nats)});
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
    // rejection; the spec goes to rejected/ with the reason.
    ++metrics_.rejected;
    if (it != running_.end() && it->second.nats) {
      ::unlink(active_path(c.id()).c_str());
      nats_->term(it->second.nats->token, it->second.nats->stream_seq, o.error);
    } else if (it != running_.end()) {
      active_to_rejected(c.id(), it->second.name, o.error);
    }
  } else {
    ++metrics_.completed[sinks::reason_name(o.reason)];
    if (auto f = failure_reason(o)) {
      ++metrics_.failed[*f];
      ++failed_;
    } else {
      ++succeeded_;
    }
    if (it != running_.end()) ::unlink(active_path(c.id()).c_str());
    if (it != running_.end() && it->second.nats) {
      // Recorded and acked once the destroyed event (emitted just now) is on disk.
      nlohmann::json rec = {{"specId", c.id()},
                            {"streamSeq", it->second.nats->stream_seq},
                            {"hostId", config_.host.id},
                            {"reason", sinks::reason_name(o.reason)},
                            {"failure", failure_reason(o).value_or("")}};
      if (o.exit_code) rec["exitCode"] = *o.exit_code;
      nats_->completed(it->second.nats->token, it->second.nats->stream_seq, c.id(), rec.dump(),
                       events_->emitted_seq());
    }
  }
  if (it != running_.end()) running_.erase(it);
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
      if (grace_.in_flight) sup_->ring().cancel(grace_);
    }
    return;
  }
  stopping_ = true;
  watcher_->stop();
  if (nats_) {
    // Specs from the work queue that have not started go back to it at once, for any host.
    nats_->stop_intake();
    for (auto w = waiting_.begin(); w != waiting_.end();) {
      if (!w->nats) {
        ++w;
        continue;
      }
      nats_->give_back(w->nats->token);
      waiting_ids_.erase(w->spec.id);
      waiting_names_.erase(w->name);
      w = waiting_.erase(w);
    }
  }
  if (status_) status_->stop();
  std::fprintf(stderr,
               "cellos-reactor: %s: intake stopped; %zu running cells have %llus to finish "
               "(%zu waiting specs stay in the spool); send SIGTERM again to kill them now\n",
               strsignal(signo), running_.size(),
               static_cast<unsigned long long>(config_.host.shutdown_grace_seconds),
               waiting_.size());
  if (running_.empty()) return;
  grace_.fn = [this](int res) {
    if (res != -ETIME || killing_) return;
    killing_ = true;
    std::fprintf(stderr, "cellos-reactor: grace period over: killing %zu running cells\n",
                 running_.size());
    sup_->kill_all(cells::KillCause::kReactorStop);
  };
  grace_.in_flight = true;
  sup_->ring().timeout(std::chrono::seconds(config_.host.shutdown_grace_seconds), grace_);
}

void Daemon::changed() {
  metrics_dirty_ = true;
  if (metrics_timer_.in_flight || !sup_) return;
  metrics_timer_.fn = [this](int) { publish_metrics(); };
  metrics_timer_.in_flight = true;
  sup_->ring().timeout(kMetricsInterval, metrics_timer_);
}

void Daemon::publish_metrics() {
  if (!metrics_dirty_) return;
  metrics_dirty_ = false;
  metrics_.running = running_.size();
  metrics_.waiting = waiting_.size();
  metrics_.events_written = events_ ? events_->events_written() : 0;
  if (auto r = base::replace_file(dirs_.state + "/metrics.prom", metrics_.render(config_.host.id));
      !r)
    complain("metrics: " + r.error().message());
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
                    {"ageSeconds", std::chrono::duration<double>(now - c->launched_at()).count()},
                    {"memoryBytes", c->memory_bytes()}});
  }
  ordered_json j = {{"hostId", config_.host.id},
                    {"pid", ::getpid()},
                    {"stopping", stopping_},
                    {"running", running_.size()},
                    {"waiting", waiting_.size()},
                    {"completed", succeeded_},
                    {"failed", failed_},
                    {"rejected", metrics_.rejected},
                    {"cells", std::move(list)}};
  return j.dump(-1, ' ', false, ordered_json::error_handler_t::replace);
}

// Each running cell holds about eight descriptors (pidfd, three pipes, two log files, its lock
// and cgroup dir): thousands of cells need far more than the usual 1024 or 20000. Root may
// raise the hard limit up to fs.nr_open.
void raise_fd_limit() {
  rlim_t want = 1 << 20;
  if (auto nr = base::read_file_at(AT_FDCWD, "/proc/sys/fs/nr_open"); nr.ok())
    want = std::min<rlim_t>(want, std::strtoull(nr->c_str(), nullptr, 10));
  rlimit cur{};
  if (::getrlimit(RLIMIT_NOFILE, &cur) != 0 || cur.rlim_cur >= want) return;
  rlimit next{want, std::max(want, cur.rlim_max)};
  if (::setrlimit(RLIMIT_NOFILE, &next) != 0) {
    next = {cur.rlim_max, cur.rlim_max};  // not root enough: the soft limit up to the hard one
    (void)::setrlimit(RLIMIT_NOFILE, &next);
  }
}

int Daemon::run() {
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
  if (auto r = dirs_.make(); !r) return complain("host.state_dir: " + r.error().message());
  if (auto r = lock_state_dir(); !r) return complain(r.error().message());
  auto roots = cells::detect_cgroup_roots();
  if (!roots) return complain(roots.error().message());
  auto tree = cells::CgroupTree::prepare(std::move(*roots), "cellos/" + config_.host.id);
  if (!tree) return complain(tree.error().message());
  tree_.emplace(std::move(*tree));
  if (const auto& init = cells::cell_init_binary(); !init.ok())
    return complain(init.error().message());

  if (config_.network.uplink == "nat") {
    // Made at start (after removing what a crashed predecessor left), removed at exit.
    auto u = netns::HostUplink::create({config_.host.id, config_.host.state_dir,
                                         config_.network.subnet});
    if (!u) return complain("network.uplink: " + u.error().message());
    uplink_ = std::move(*u);
  }
  SupervisorOptions so;
  so.config = &config_;
  so.cgroups = &*tree_;
  so.uplink = uplink_.get();
  so.on_cell_done = [this](const cells::Cell& c) { on_cell_done(c); };
  so.on_signal = [this](int signo) { on_signal(signo); };
  so.ring_entries = 4096;
  auto sup = Supervisor::create(std::move(so));
  if (!sup) return complain(sup.error().message());
  sup_ = std::move(*sup);
  auto events = open_event_log(config_, sup_->io(), std::nullopt);
  if (!events) return complain(events.error().message());
  events_ = std::move(*events);
  sup_->set_events(events_.get());
  // The flow probes load now, not at the first networked cell: whether they run (and who
  // enforces) is said once, at start, on stderr and in a flow_probes event.
  sup_->flows().announce();

  recover();

  if (config_.intake.nats.enabled || config_.events.nats.enabled) {
    NatsBridgeOptions no;
    no.config = &config_;
    no.ring = &sup_->ring();
    no.events = events_.get();
    no.on_spec = [this](nats::Frame f) { offer_nats(std::move(f)); };
    no.on_claim_lost = [this](uint64_t seq) { fence_nats(seq); };
    auto b = NatsBridge::create(std::move(no));
    if (!b) return complain("nats: " + b.error().message());
    nats_ = std::move(*b);
    nats_->offer_room(free_slots());
  }

  auto status = StatusServer::create(sup_->ring(), dirs_.state + "/reactor.sock",
                                     [this] { return snapshot(); });
  if (!status) return complain(status.error().message());
  status_ = std::move(*status);
  // Watch first, then scan: a spec renamed in between is seen twice, never missed (the second
  // sighting finds it waiting or gone).
  auto watcher = SpoolWatcher::create(
      sup_->io(), dirs_.spool,
      {[this](std::string name) { offer(name); },
       [this] {
         for (const std::string& n : scan_spool(dirs_)) offer(n);
       }});
  if (!watcher) return complain(watcher.error().message());
  watcher_ = std::move(*watcher);
  std::fprintf(stderr, "cellos-reactor: serving %s as host %s (up to %llu cells at once)\n",
               dirs_.state.c_str(), config_.host.id.c_str(),
               static_cast<unsigned long long>(cap_));
  for (const std::string& n : scan_spool(dirs_)) offer(n);
  changed();

  auto r = sup_->run_until([this] {
    if (!stopping_ || !running_.empty()) return false;
    if (!nats_ || nats_->settled() || settle_gave_up_) return true;
    // Finished cells' completions still to be recorded and acked: wait for them a while; what
    // is left is redelivered and then found in the completion bucket, or run again.
    if (!settle_timer_.in_flight) {
      settle_timer_.fn = [this](int) {
        settle_gave_up_ = true;
        std::fprintf(stderr, "cellos-reactor: nats: stopping with completions not yet acked\n");
      };
      settle_timer_.in_flight = true;
      // Longer than the companion's own bound on one settlement (an ack request tried 5 times
      // with a 2 s timeout, ~11 s), so a slow server reply does not cut a settlement short.
      sup_->ring().timeout(std::chrono::seconds(15), settle_timer_);
    }
    return false;
  });
  if (settle_timer_.in_flight) sup_->ring().cancel(settle_timer_);
  if (nats_ && r && !nats_->caught_up()) {
    // The last batches were just written: a few seconds for the companion to publish them, so
    // a host leaving the fleet leaves its stream whole (a later start would resume anyway).
    publish_timer_.fn = [this](int) { publish_gave_up_ = true; };
    publish_timer_.in_flight = true;
    sup_->ring().timeout(std::chrono::seconds(5), publish_timer_);
    r = sup_->run_until([this] { return nats_->caught_up() || publish_gave_up_; });
    if (publish_timer_.in_flight) sup_->ring().cancel(publish_timer_);
  }
  if (nats_) nats_->stop();
  if (grace_.in_flight) sup_->ring().cancel(grace_);
  if (retry_.in_flight) sup_->ring().cancel(retry_);
  metrics_dirty_ = true;
  publish_metrics();
  tree_->remove_empty_parents();
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

int submit_command(const SubmitArgs& args) {
  std::optional<cells::Config> loaded;
  if (!args.config_path.empty() || args.nats_url.empty()) {
    loaded = load_config_or_say(args.config_path);
    if (!loaded) return kSetupFailed;
  } else {
    loaded = cells::default_config();
  }
  const cells::Config& config = *loaded;
  // A fleet fed by [intake.nats] takes its specs from the work queue: its spool only on request.
  const std::string url = !args.nats_url.empty() ? args.nats_url
                          : config.intake.nats.enabled && !args.spool ? config.intake.nats.url
                                                                       : "";
  auto text = read_spec_text(args.spec_path);
  if (!text) return complain(text.error().message());
  // The same limit the daemons' companions enforce: a spec they would reject is never queued.
  if (!url.empty() && text->size() > nats::kMaxSpecBytes)
    return complain("spec: " + std::to_string(text->size()) +
                    " bytes: over the 1 MiB a spec may have on the NATS work queue");
  auto spec = cells::parse_spec(*text);
  if (!spec) return complain(spec.error().message());
  if (auto r = cells::check_policy(*spec, config.policy); !r) return complain(r.error().message());
  if (!url.empty()) return exec_nats_publish(url, config.intake.nats, *text);
  auto path = submit_to_spool(StateDirs(config.host.state_dir), spec->id, *text);
  if (!path) return complain(path.error().message());
  std::printf("%s\n", path->c_str());
  return 0;
}

}  // namespace cellos::reactor
