#include "cells/native_backend.h"

#include "cells/cell_init.h"
#include "cells/launcher.h"
#include "cells/prepared_cell.h"
#include "cells/spawner.h"

namespace cellos::cells {
namespace {

class NativeCell final : public BackendCell {
 public:
  explicit NativeCell(std::string hostname) : hostname_(std::move(hostname)) {}
  base::Result<Started> start(const StartRequest& r) override {
    LaunchOptions lo;
    lo.argv = r.argv;
    lo.program = r.program;
    lo.env = r.env;
    lo.workdir = r.workdir;
    lo.hostname = hostname_;
    lo.uid = r.uid;
    lo.gid = r.gid;
    lo.host_paths = r.host_paths;
    lo.masked_paths = r.masked_paths;
    lo.input_host_paths = r.input_host_paths;
    lo.input_paths = r.input_paths;
    lo.workspace_mount_fd = r.workspace_mount_fd;
    lo.tmp_mount_fd = r.tmp_mount_fd;
    lo.cgroup_v2_dirfd = r.cgroup_v2_dirfd;
    lo.knob_paths = r.knob_paths;
    lo.knob_values = r.knob_values;
    lo.v1_procs_paths = r.v1_procs_paths;
    lo.want_pidfd = r.want_pidfd;
    lo.io = r.io;
    lo.netns_fd = r.netns_fd;
    lo.broker_dir = r.broker_dir;
    lo.resolv_conf = r.resolv_conf;
    auto l = r.prepared ? r.prepared->bind(lo) : launch(lo);
    if (!l) return std::move(l).error();
    return Started{l->pid, std::move(l->pidfd), std::move(l->stdout_read),
                   std::move(l->stderr_read), std::move(l->status_read)};
  }

 private:
  std::string hostname_;  // the cell's UTS name: its id
};

class NativeBackend final : public Backend {
 public:
  std::string_view name() const override { return "native"; }
  BackendTraits traits() const override { return {}; }
  base::Result<std::unique_ptr<BackendCell>> prepare(const std::string& cell_id) override {
    return std::unique_ptr<BackendCell>(new NativeCell(cell_id));
  }
};

}  // namespace

base::Result<std::unique_ptr<Backend>> make_native_backend(const Config&) {
  // Loaded once, before any cell: a host that cannot load it runs no cell at all.
  if (const auto& init = cell_init_binary(); !init.ok()) return init.error();
  // Forked now, while the reactor's descriptor table and memory are small (spawner.h); without
  // it the launcher clones cells itself.
  Spawner::start_early();
  return std::unique_ptr<Backend>(new NativeBackend());
}

}  // namespace cellos::cells
