#include "reactor/recovery.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>

#include "base/file_lock.h"
#include "cells/cell_lock.h"
#include "cells/gvisor_backend.h"
#include "cells/leaf_stock.h"
#include "cells/prepared_cell.h"

namespace cellos::reactor {

base::Result<base::Fd> lock_state_dir(const StateDirs& dirs) {
  const std::string path = dirs.state + "/reactor.lock";
  auto fd = base::open_at(AT_FDCWD, path, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
  if (!fd) return std::move(fd).error();
  base::FlockOptions lo;
  lo.what = "\"" + path + "\"";
  if (auto locked = base::flock_exclusive(fd->get(), lo); !locked) {
    if (locked.error().err != EWOULDBLOCK) return std::move(locked).error();
    auto pid = base::read_fd(fd->get(), path, 64);
    std::string holder =
        pid.ok() && !pid->empty() ? " (pid " + pid->substr(0, pid->find('\n')) + ")" : "";
    return base::Error{EWOULDBLOCK, "flock", "\"" + path + "\"",
                       "another cellos-reactor daemon serves " + dirs.state + holder, {}};
  }
  std::string pid = std::to_string(::getpid()) + "\n";
  if (::ftruncate(fd->get(), 0) == 0) (void)::pwrite(fd->get(), pid.data(), pid.size(), 0);
  return std::move(*fd);
}

std::vector<std::string> recover_lost_cells(const RecoveryOptions& o) {
  std::vector<std::string> ids = o.tree->list_leaves();
  if (DIR* d = ::opendir(o.dirs->active.c_str())) {
    while (dirent* e = ::readdir(d)) {
      std::string n = e->d_name;
      if (n.size() > 5 && n.ends_with(".json")) {
        std::string id = n.substr(0, n.size() - 5);
        if (std::find(ids.begin(), ids.end(), id) == ids.end()) ids.push_back(id);
      }
    }
    ::closedir(d);
  }
  // A gVisor cell's runsc state outlives its processes (which the leaf above holds and kills).
  if (o.config)
    for (std::string& id : cells::gvisor_leftover_cells(*o.config))
      if (std::find(ids.begin(), ids.end(), id) == ids.end()) ids.push_back(std::move(id));
  std::vector<std::string> lost;
  for (const std::string& id : ids) {
    // A prepared cell of a dead daemon's warm pool (cells/prepared_cell.h): no cell, no spec,
    // nothing to report; its process and leaf go.
    // An empty memory leaf of a dead daemon's stock (cells/leaf_stock.h): no cell either.
    if (id.rfind(cells::kPreparedLeafPrefix, 0) == 0 || id.rfind(cells::kStockLeafPrefix, 0) == 0) {
      (void)o.tree->reclaim_leaf(id, o.reclaim_wait);
      continue;
    }
    auto lock = cells::CellLock::acquire(o.dirs->state, id);
    if (!lock) continue;
    if (auto r = o.tree->reclaim_leaf(id, o.reclaim_wait); !r)
      std::fprintf(stderr, "cellos-reactor: recovering lost cell %s: %s\n", id.c_str(),
                   r.error().message().c_str());
    ::unlink((o.dirs->active + "/" + id + ".json").c_str());
    // Its secret broker's socket (cells/secret_broker.h): dead with the daemon that served it.
    ::unlink((o.dirs->state + "/broker/" + id + "/secrets.sock").c_str());
    ::rmdir((o.dirs->state + "/broker/" + id).c_str());
    if (o.config)
      if (auto r = cells::remove_gvisor_cell_state(*o.config, id); !r)
        std::fprintf(stderr, "cellos-reactor: recovering lost cell %s: %s\n", id.c_str(),
                     r.error().message().c_str());
    o.events->emit(sinks::make_event(sinks::DestroyedData{id, false, true, "lost"}));
    std::fprintf(stderr, "cellos-reactor: cell %s was running when the previous daemon died: "
                 "killed, removed and reported lost\n", id.c_str());
    lost.push_back(id);
  }
  return lost;
}

}  // namespace cellos::reactor
