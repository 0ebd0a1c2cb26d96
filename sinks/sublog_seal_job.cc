#include "sinks/sublog_seal_job.h"

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "base/spawn.h"
#include "base/text.h"

namespace cellos::sinks {
namespace {

// The helper prints one line of a few hundred bytes; anything longer is not ours.
constexpr size_t kMaxSealLine = 64 << 10;

}  // namespace

NestedSealedData failed_seal(const SublogSealOptions& o, const std::string& why) {
  NestedSealedData d;
  d.cell_id = o.cell_id;
  d.nesting_path = o.nesting_path;
  d.public_key = o.public_key;
  if (auto k = SigningKey::from_raw_public(o.public_key)) d.key_id = k->key_id();
  const size_t slash = o.log_path.rfind('/');
  const std::string prefix = slash == std::string::npos ? "" : o.log_path.substr(0, slash + 1);
  if (!prefix.empty() && o.sublog_path.starts_with(prefix) &&
      check_sealed_path(o.sublog_path.substr(prefix.size())).empty())
    d.path = o.sublog_path.substr(prefix.size());
  d.verified = false;
  d.error = base::bounded_line(why);
  return d;
}

SublogSealJob::SublogSealJob(SublogSealJobOptions o) : o_(std::move(o)) { deadline_.bind(*o_.io); }

SublogSealJob::~SublogSealJob() {
  // Dropped before it finished: the helper must not outlive the reactor's interest in it.
  if (pidfd_ && !reaped_) ::syscall(SYS_pidfd_send_signal, pidfd_.get(), SIGKILL, nullptr, 0);
}

base::Result<std::unique_ptr<SublogSealJob>> SublogSealJob::start(SublogSealJobOptions o) {
  auto pipe = base::make_pipe();
  if (!pipe) return std::move(pipe).error();
  const SublogSealOptions& s = o.seal;
  std::vector<std::string> args{"cellos-reactor", "seal-sublog",
                                "--log", s.log_path,
                                "--sublog", s.sublog_path,
                                "--public-key-base64", base64(s.public_key),
                                "--cell", s.cell_id,
                                "--nesting", s.nesting_path,
                                "--max-bytes", std::to_string(s.max_bytes)};
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_adddup2(&fa, pipe->write.get(), 1);
  char* envp[] = {nullptr};
  auto spawned = base::spawn_helper(o.helper, fa, argv.data(), envp, "seal-sublog helper");
  posix_spawn_file_actions_destroy(&fa);
  if (!spawned) return std::move(spawned).error();
  std::unique_ptr<SublogSealJob> job(new SublogSealJob(std::move(o)));
  job->pidfd_ = std::move(spawned->pidfd);
  job->out_ = std::move(pipe->read);
  pipe->write.reset();  // the helper's copy is the only writer: EOF means it is done
  job->o_.io->wait_exit(job->pidfd_.get(), &job->info_, job->exit_.arm());
  job->o_.io->read(job->out_.get(), std::span(job->buf_), job->read_.arm());
  SublogSealJob* raw = job.get();
  job->deadline_.start(job->o_.timeout, [raw](int res) {
    if (res == -ETIME && !raw->reaped_) {
      raw->killed_ = true;
      ::syscall(SYS_pidfd_send_signal, raw->pidfd_.get(), SIGKILL, nullptr, 0);
    }
    raw->maybe_done();  // cancelled once the helper was reaped
  });
  return job;
}

void SublogSealJob::abort() {
  if (done_ || reaped_ || aborted_) return;
  aborted_ = true;
  ::syscall(SYS_pidfd_send_signal, pidfd_.get(), SIGKILL, nullptr, 0);
}

void SublogSealJob::on_read(int res) {
  if (res <= 0) {
    eof_ = true;
    out_.reset();
    return maybe_done();
  }
  if (received_.size() < kMaxSealLine)
    received_.append(reinterpret_cast<const char*>(buf_.data()), static_cast<size_t>(res));
  o_.io->read(out_.get(), std::span(buf_), read_.arm());
}

void SublogSealJob::on_exit(int res) {
  (void)res;
  reaped_ = true;
  deadline_.cancel();
  maybe_done();
}

void SublogSealJob::maybe_done() {
  if (done_ || !eof_ || !reaped_ || deadline_.armed()) return;
  done_ = true;
  NestedSealedData d;
  const size_t nl = received_.find('\n');
  const bool exited_ok = info_.si_code == CLD_EXITED && info_.si_status == 0;
  if (aborted_) {
    d = failed_seal(o_.seal, "the seal was stopped (the reactor is stopping)");
  } else if (killed_) {
    d = failed_seal(o_.seal, "the seal timed out: the sub-log was not read in time");
  } else if (!exited_ok || nl == std::string::npos) {
    d = failed_seal(o_.seal, info_.si_code == CLD_EXITED
                                 ? "the seal helper exited with status " + std::to_string(info_.si_status)
                                 : "the seal helper was killed by signal " + std::to_string(info_.si_status));
  } else if (auto parsed = sealed_from_json(std::string_view(received_).substr(0, nl))) {
    d = std::move(*parsed);
    // What the reactor asked for, whatever the helper says (it is our binary, but the seal's
    // identity must come from the caller).
    d.cell_id = o_.seal.cell_id;
    d.nesting_path = o_.seal.nesting_path;
    d.public_key = o_.seal.public_key;
  } else {
    d = failed_seal(o_.seal, "the seal helper's answer is unreadable: " + parsed.error().message());
  }
  if (o_.on_done) o_.on_done(std::move(d));
}

}  // namespace cellos::sinks
