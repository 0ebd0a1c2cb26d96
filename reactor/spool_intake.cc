#include "reactor/spool_intake.h"

#include <unistd.h>

#include <cstdio>

#include "base/text.h"

namespace cellos::reactor {
namespace {

constexpr auto kRetryInterval = std::chrono::milliseconds(500);

std::string active_path(const StateDirs& dirs, const std::string& id) {
  return dirs.active + "/" + id + ".json";
}

}  // namespace

bool transient_errno(int err) {
  return err == EMFILE || err == ENFILE || err == ENOMEM || err == ENOSPC || err == EDQUOT ||
         err == EAGAIN;
}

SpoolIntake::~SpoolIntake() = default;

base::Result<void> SpoolIntake::start() {
  // Watch first, then scan: a spec renamed in between is seen twice, never missed (the second
  // sighting finds it waiting or gone).
  auto watcher = SpoolWatcher::create(io_, dirs_.spool,
                                      {[this](std::string name) { offer(name); },
                                       [this] { rescan(); }});
  if (!watcher) return std::move(watcher).error();
  watcher_ = std::move(*watcher);
  rescan();
  return base::ok();
}

void SpoolIntake::rescan() {
  for (const std::string& n : scan_spool(dirs_)) offer(n);
}

void SpoolIntake::offer(const std::string& name) {
  if (stopped_ || sink_.stopping()) return;
  IntakeEntry e{this, name, {}, {}, 0};
  auto text = read_spool_entry(dirs_, name, &io_);
  if (!text) {
    // Gone already: taken by this daemon after a rescan, or withdrawn by its submitter.
    if (text.error().err == ENOENT) return;
    if (transient_errno(text.error().err)) {
      retry_names_.insert(name);
      if (!retry_.armed())
        retry_.start(kRetryInterval, [this](int) {
          auto names = std::move(retry_names_);
          retry_names_.clear();
          for (const std::string& n : names) offer(n);
        });
      return;
    }
    const std::string reason = where(e) + ": " + text.error().message();
    sink_.rejected(e, std::nullopt, reason);
    return refuse(e, std::nullopt, reason, false);
  }
  e.text = std::move(*text);
  sink_.offer(std::move(e));
}

base::Result<void> SpoolIntake::activate(IntakeEntry& e, const std::string& cell_id) {
  auto r = move_to_active(dirs_, e.name, cell_id);
  if (!r) return std::move(r).error();
  e.text.clear();  // the file in active/ holds it now
  return base::ok();
}

bool SpoolIntake::deactivate(IntakeEntry& e, const std::string& cell_id) {
  return ::rename(active_path(dirs_, cell_id).c_str(), (dirs_.spool + "/" + e.name).c_str()) == 0;
}

void SpoolIntake::refuse(const IntakeEntry& e, const std::optional<std::string>& cell_id,
                         const std::string& reason, bool active) {
  if (active && cell_id) {
    // active/<id>.json -> rejected/<name> beside its .error
    const std::string from = active_path(dirs_, *cell_id), to = dirs_.rejected + "/" + e.name;
    (void)base::replace_file(to + ".error", base::bounded_line(reason) + "\n");
    if (::rename(from.c_str(), to.c_str()) != 0) ::unlink(from.c_str());
    prune_rejected(dirs_);  // rejected/ stays bounded on this path too
  } else if (auto r = move_to_rejected(dirs_, e.name, reason); !r) {
    // The spool entry cannot be moved: say so, and never look at it again in this run.
    std::fprintf(stderr, "cellos-reactor: spool entry %s: %s\n", e.name.c_str(),
                 r.error().message().c_str());
  }
}

void SpoolIntake::finished(const IntakeEntry&, const cells::Cell& cell, uint64_t) {
  // Here, not through the ring: once the cell's destroyed event is in the log (written after
  // this), its active/ entry must be gone, or a start after a crash would report it lost.
  ::unlink(active_path(dirs_, cell.id()).c_str());
}

void SpoolIntake::stop() {
  stopped_ = true;
  if (watcher_) watcher_->stop();
  retry_.cancel();
}

}  // namespace cellos::reactor
