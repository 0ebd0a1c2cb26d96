#include "reactor/supervisor.h"

namespace cellos::reactor {

Supervisor::Supervisor(Host& host, SupervisorOptions options)
    : host_(host), opts_(std::move(options)), cell_host_(host.cell_host()) {
  if (opts_.events) cell_host_.events = opts_.events;
}

Supervisor::~Supervisor() {
  // Cells still here mean the loop failed: close the ring so nothing completes into them once
  // freed; each cell's destructor then kills what it ran.
  if (!cells_.empty()) host_.ring().close();
}

void Supervisor::add(cells::CellOptions options) {
  // The cell reports its end through on_finished; the reactor collects it after the current
  // completion round, so a cell is never destroyed from inside its own handler.
  auto self = std::make_shared<cells::Cell*>(nullptr);
  options.on_finished = [this, self] { finished_.push_back(*self); };
  auto cell = std::make_unique<cells::Cell>(cell_host_, std::move(options));
  cells::Cell* raw = cell.get();
  *self = raw;
  cells_.emplace(raw, std::move(cell));
  raw->start();
}

void Supervisor::kill_all(cells::KillCause cause) {
  for (auto& [raw, cell] : cells_) cell->kill(cause);
}

void Supervisor::stop_all(cells::KillCause cause,
                          const std::function<std::chrono::seconds(const cells::Cell&)>& grace) {
  for (auto& [raw, cell] : cells_) cell->stop(cause, grace(*cell));
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
    auto n = host_.ring().run_once();
    if (!n) return std::move(n).error();
    reap_finished();
  }
  return host_.drain_events();
}

}  // namespace cellos::reactor
