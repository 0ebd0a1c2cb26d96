// Artifacts out: spec.export.artifacts copied to the fleet's export targets ([export] dir and
// http_url) after a cell's command exited and before its teardown.
//
// The cell's processes are gone by then, and with them its mount namespace; so a cell that
// declares artifacts gets a workspace the reactor made (HeldWorkspace: a tmpfs from fsopen /
// fsmount, moved into the cell's view by its setup) and keeps open past the cell's end. The
// copy itself never runs in the reactor: an ExportJob spawns cellos-reactor-export (a helper
// binary beside the reactor, linking libcurl) with that workspace as its fd 3, watches it by
// pidfd on the ring, reads its receipts (one JSON line per artifact) from a pipe on the ring,
// and kills it at [export] timeout_seconds. A slow target delays only its own cell's teardown.
#pragma once

#include <sys/types.h>

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "base/completion.h"
#include "base/fd.h"
#include "base/io.h"
#include "base/result.h"
#include "cells/config.h"
#include "cells/spec.h"
#include "sinks/events.h"

namespace cellos::cells {

// Admission: a spec with artifacts needs a fleet with an export target.
base::Result<void> check_export(const Spec& spec, const Config& config);

// A fresh tmpfs (nosuid, nodev) as a detached mount: the cell's setup moves it into place (its
// workspace: mode 0755, owned by the cell's uid/gid; its /tmp: 1777, root's); the fd keeps it
// readable after the cell's mount namespace is gone.
base::Result<base::Fd> make_held_tmpfs(const char* mode, uid_t uid, gid_t gid);

// The helper binary: [export] helper, else cellos-reactor-export beside /proc/self/exe.
std::string export_helper_path(const Config& config);

struct ExportJobOptions {
  base::IoPort* io = nullptr;
  const Config* config = nullptr;
  std::string cell_id, run_id, workdir;
  std::vector<ExportArtifact> artifacts;
  int workspace_fd = -1;  // borrowed; both must stay open until on_done
  int tmp_fd = -1;
  // Called once from a completion, with one receipt per artifact (in spec order).
  std::function<void(std::vector<sinks::ExportData>)> on_done;
};

class ExportJob {
 public:
  static base::Result<std::unique_ptr<ExportJob>> start(ExportJobOptions options);
  ~ExportJob();
  ExportJob(const ExportJob&) = delete;
  ExportJob& operator=(const ExportJob&) = delete;
  bool done() const { return done_; }
  // Kills the helper now (the reactor stopping for good): what it had not reported fails with
  // "the export was stopped"; on_done follows as usual.
  void abort();

 private:
  explicit ExportJob(ExportJobOptions o);
  void on_read(int res);
  void on_exit(int res);
  void maybe_done();

  ExportJobOptions o_;
  base::Fd pidfd_, out_;
  pid_t pid_ = -1;
  siginfo_t info_{};
  std::string received_;
  std::vector<std::byte> buf_ = std::vector<std::byte>(16384);
  base::MemberOp<&ExportJob::on_read> read_{this};
  base::MemberOp<&ExportJob::on_exit> exit_{this};
  base::Timer deadline_;
  bool eof_ = false, reaped_ = false, killed_ = false, aborted_ = false, done_ = false;
};

}  // namespace cellos::cells
