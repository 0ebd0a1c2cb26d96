#include "cells/cell_export.h"

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/mount.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include "base/spawn.h"

namespace cellos::cells {
namespace {

// What the helper may say: a line per artifact, each bounded by the artifact's paths and a few
// errors. More than this is a broken helper: the rest is dropped and reported as missing.
constexpr size_t kMaxReceiptBytes = 4u << 20;
// The helper's own deadline is [export] timeout_seconds; the reactor's kill comes this much
// later, so a helper that honours its deadline still reports what it finished.
constexpr auto kKillSlack = std::chrono::seconds(5);

}  // namespace

base::Result<void> check_export(const Spec& spec, const Config& config) {
  if (spec.export_artifacts.empty()) return base::ok();
  if (config.exports.dir.empty() && config.exports.http_url.empty())
    return base::value_error("spec.export.artifacts",
                             "this fleet has no export target (fleet.toml [export] dir or http_url)");
  return base::ok();
}

base::Result<base::Fd> make_held_tmpfs(const char* mode, uid_t uid, gid_t gid) {
  int fs = static_cast<int>(::syscall(SYS_fsopen, "tmpfs", FSOPEN_CLOEXEC));
  if (fs < 0) return base::sys_error("fsopen", "tmpfs (the held workspace)");
  base::Fd fsfd(fs);
  const std::string u = std::to_string(uid), g = std::to_string(gid);
  for (auto [key, value] : {std::pair<const char*, const char*>{"mode", mode}, {"uid", u.c_str()},
                            {"gid", g.c_str()}})
    if (::syscall(SYS_fsconfig, fs, FSCONFIG_SET_STRING, key, value, 0) != 0)
      return base::sys_error("fsconfig", std::string("tmpfs ") + key);
  if (::syscall(SYS_fsconfig, fs, FSCONFIG_CMD_CREATE, nullptr, nullptr, 0) != 0)
    return base::sys_error("fsconfig", "tmpfs create");
  int m = static_cast<int>(
      ::syscall(SYS_fsmount, fs, FSMOUNT_CLOEXEC, MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV));
  if (m < 0) return base::sys_error("fsmount", "tmpfs (the held workspace)");
  return base::Fd(m);
}

std::string export_helper_path(const Config& config) {
  if (!config.exports.helper.empty()) return config.exports.helper;
  char buf[4096];
  ssize_t n = ::readlink("/proc/self/exe", buf, sizeof buf - 1);
  if (n <= 0) return "cellos-reactor-export";
  std::string self(buf, static_cast<size_t>(n));
  return self.substr(0, self.rfind('/') + 1) + "cellos-reactor-export";
}

ExportJob::ExportJob(ExportJobOptions o) : o_(std::move(o)) { deadline_.bind(*o_.io); }

ExportJob::~ExportJob() {
  // Dropped before it finished (the reactor failing): the helper must not outlive it.
  if (pidfd_ && !reaped_) ::syscall(SYS_pidfd_send_signal, pidfd_.get(), SIGKILL, nullptr, 0);
}

base::Result<std::unique_ptr<ExportJob>> ExportJob::start(ExportJobOptions o) {
  const ExportConfig& ec = o.config->exports;
  const std::string helper = export_helper_path(*o.config);
  auto pipe = base::make_pipe();
  if (!pipe) return std::move(pipe).error();
  std::vector<std::string> args{helper,
                                "--cell", o.cell_id,
                                "--run", o.run_id,
                                "--max-artifact-bytes", std::to_string(ec.max_artifact_bytes),
                                "--max-cell-bytes", std::to_string(ec.max_cell_bytes),
                                "--timeout-seconds", std::to_string(ec.timeout_seconds)};
  if (!ec.dir.empty()) args.insert(args.end(), {"--dir", ec.dir});
  if (!ec.http_url.empty()) args.insert(args.end(), {"--http-url", ec.http_url});
  for (const auto& a : o.artifacts) {
    // Below the root of the tmpfs holding it: the path without its mount point and the '/'.
    const bool work = a.path.starts_with(o.workdir + "/");
    const size_t cut = work ? o.workdir.size() + 1 : std::string_view("/tmp/").size();
    args.insert(args.end(), {"--artifact", a.name, a.path, work ? "work" : "tmp", a.path.substr(cut)});
  }
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  // Copies above the helper's fixed numbers, so no dup2 below overwrites a source it still
  // needs (the reactor's own fds 3 and 4 could be either root).
  base::Fd work(::fcntl(o.workspace_fd, F_DUPFD_CLOEXEC, 10));
  base::Fd tmp(::fcntl(o.tmp_fd, F_DUPFD_CLOEXEC, 10));
  if (!work || !tmp) return base::sys_error("fcntl F_DUPFD_CLOEXEC", "the cell's held tmpfs");
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  // dup2 clears close-on-exec on the target; every other descriptor of ours is CLOEXEC.
  posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_adddup2(&fa, pipe->write.get(), 1);
  posix_spawn_file_actions_adddup2(&fa, work.get(), 3);
  posix_spawn_file_actions_adddup2(&fa, tmp.get(), 4);
  // No proxy or curl settings from the reactor's environment: fleet.toml configures the export.
  char* envp[] = {nullptr};
  auto spawned = base::spawn_helper(helper, fa, argv.data(), envp, "export helper");
  posix_spawn_file_actions_destroy(&fa);
  if (!spawned) return std::move(spawned).error();
  std::unique_ptr<ExportJob> job(new ExportJob(std::move(o)));
  job->pid_ = spawned->pid;
  job->pidfd_ = std::move(spawned->pidfd);
  job->out_ = std::move(pipe->read);
  pipe->write.reset();  // the helper's copy is the only writer: EOF means it is done writing
  job->o_.io->wait_exit(job->pidfd_.get(), &job->info_, job->exit_.arm());
  job->o_.io->read(job->out_.get(), std::span(job->buf_), job->read_.arm());
  ExportJob* raw = job.get();
  job->deadline_.start(std::chrono::seconds(job->o_.config->exports.timeout_seconds) + kKillSlack,
                       [raw](int res) {
                         if (res == -ETIME && !raw->reaped_) {
                           raw->killed_ = true;
                           ::syscall(SYS_pidfd_send_signal, raw->pidfd_.get(), SIGKILL, nullptr, 0);
                         }
                         // Cancelled once the helper was reaped: the job may be done now.
                         raw->maybe_done();
                       });
  return job;
}

void ExportJob::abort() {
  if (done_ || reaped_ || aborted_) return;
  aborted_ = true;
  ::syscall(SYS_pidfd_send_signal, pidfd_.get(), SIGKILL, nullptr, 0);
}

void ExportJob::on_read(int res) {
  if (res <= 0) {
    eof_ = true;
    out_.reset();
    return maybe_done();
  }
  if (received_.size() < kMaxReceiptBytes)
    received_.append(reinterpret_cast<const char*>(buf_.data()), static_cast<size_t>(res));
  o_.io->read(out_.get(), std::span(buf_), read_.arm());
}

void ExportJob::on_exit(int res) {
  (void)res;
  reaped_ = true;
  deadline_.cancel();
  maybe_done();
}

void ExportJob::maybe_done() {
  if (done_ || !eof_ || !reaped_ || deadline_.armed()) return;
  done_ = true;
  // The helper's lines, by artifact name; an artifact it did not report failed for the
  // reason the helper ended.
  std::string why = aborted_ ? "the export was stopped (the reactor is stopping)"
                    : killed_ ? "export timed out ([export] timeout_seconds)"
                    : info_.si_code == CLD_EXITED
                        ? "the export helper exited with status " + std::to_string(info_.si_status)
                        : "the export helper was killed by signal " + std::to_string(info_.si_status);
  std::vector<sinks::ExportData> out;
  for (const auto& a : o_.artifacts) {
    sinks::ExportData d{o_.cell_id, a.name, a.path, a.required};
    d.error = why;
    out.push_back(std::move(d));
  }
  size_t start = 0;
  while (start < received_.size()) {
    size_t end = received_.find('\n', start);
    if (end == std::string::npos) break;  // a torn last line: that artifact is not reported
    auto j = nlohmann::json::parse(received_.substr(start, end - start), nullptr, false);
    start = end + 1;
    if (!j.is_object() || !j.contains("name") || !j["name"].is_string()) continue;
    // A value of the wrong type (never from our helper) leaves that artifact as not reported.
    try {
    for (auto& d : out) {
      if (d.name != j["name"].get<std::string>()) continue;
      d.size_bytes = j.value("sizeBytes", uint64_t{0});
      d.files = j.value("files", uint64_t{0});
      d.sha256 = j.value("sha256", std::string());
      d.error = j.value("error", std::string());
      bool all = d.error.empty();
      if (j.contains("receipts") && j["receipts"].is_array())
        for (const auto& r : j["receipts"]) {
          if (!r.is_object()) continue;
          sinks::ExportTargetReceiptData t{r.value("targetKind", std::string()),
                                           r.value("destination", std::string()),
                                           r.value("succeeded", false), r.value("error", std::string())};
          all = all && t.succeeded;
          d.receipts.push_back(std::move(t));
        }
      d.succeeded = all && !d.receipts.empty();
    }
    } catch (const std::exception&) {
    }
  }
  if (o_.on_done) o_.on_done(std::move(out));
}

}  // namespace cellos::cells
