#include "reactor/supervisor.h"

namespace cellos::reactor {

base::Result<std::unique_ptr<Supervisor>> Supervisor::create(SupervisorOptions options) {
  std::unique_ptr<Supervisor> s(new Supervisor(std::move(options)));
  RingOptions ro;
  ro.entries = s->opts_.ring_entries;
  auto ring = Ring::create(ro);
  if (!ring) return std::move(ring).error();
  s->ring_ = std::move(*ring);
  auto sig = SignalWatcher::create(*s->ring_, [p = s.get()](int signo) { p->on_signal(signo); });
  if (!sig) return std::move(sig).error();
  s->signals_ = std::move(*sig);
  s->flows_ = cells::FlowMonitor::create({s->opts_.config, s->ring_.get(), s->opts_.events});
  s->host_ = cells::CellHost{s->ring_.get(), s->opts_.config, s->opts_.events, s->opts_.cgroups,
                             s->opts_.uplink, s->flows_.get()};
  return s;
}

Supervisor::~Supervisor() {
  // Cells still here mean the loop failed. The ring is closed first: that cancels every
  // operation without dispatching a completion, so nothing can complete into a cell, the
  // signal watcher or the flow monitor after they are freed. Each cell's destructor then kills
  // what it ran; the flow monitor goes after the cells that use it.
  ring_->close();
  signals_.reset();
  cells_.clear();
  flows_.reset();
}

void Supervisor::add(cells::CellOptions options) {
  // The cell reports its end through on_finished; the reactor collects it after the current
  // completion round, so a cell is never destroyed from inside its own handler.
  auto self = std::make_shared<cells::Cell*>(nullptr);
  options.on_finished = [this, self] { finished_.push_back(*self); };
  auto cell = std::make_unique<cells::Cell>(host_, std::move(options));
  cells::Cell* raw = cell.get();
  *self = raw;
  cells_.emplace(raw, std::move(cell));
  raw->start();
}

void Supervisor::on_signal(int signo) {
  stop_signal_ = signo;
  if (opts_.on_signal) return opts_.on_signal(signo);
  kill_all(cells::KillCause::kReactorStop);
}

void Supervisor::kill_all(cells::KillCause cause) {
  for (auto& [raw, cell] : cells_) cell->kill(cause);
}

void Supervisor::reap_finished() {
  for (cells::Cell* c : finished_) {
    if (opts_.on_cell_done) opts_.on_cell_done(*c);
    cells_.erase(c);
  }
  finished_.clear();
}

base::Result<void> Supervisor::run_until_idle() {
  return run_until([this] { return cells_.empty(); });
}

base::Result<void> Supervisor::run_until(const std::function<bool()>& done) {
  while (!done()) {
    auto n = ring_->run_once();
    if (!n) return std::move(n).error();
    reap_finished();
  }
  return drain_events();
}

base::Result<void> Supervisor::drain_events() {
  if (!opts_.events) return base::ok();
  opts_.events->flush();
  while (!opts_.events->drained()) {
    auto n = ring_->run_once();
    if (!n) return std::move(n).error();
  }
  return base::ok();
}

}  // namespace cellos::reactor
