// Sealing a nested cell's sub-log without blocking the reactor: the read, the SHA-256 and the
// verification of a file that may be a gigabyte run in a helper process, `cellos-reactor
// seal-sublog` (this binary, /proc/self/exe), watched by pidfd on the ring, its one JSON line
// read from a pipe on the ring, killed at a deadline. As cells/cell_export.h does for artifacts.
// Whatever happens to the helper, on_done gets a seal: a helper that failed, was killed or
// timed out gives a seal with verified == false and the reason.
#pragma once

#include <sys/types.h>
#include <sys/wait.h>

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "base/completion.h"
#include "base/fd.h"
#include "base/io.h"
#include "base/result.h"
#include "sinks/events.h"
#include "sinks/sublog_seal.h"

namespace cellos::sinks {

struct SublogSealJobOptions {
  base::IoPort* io = nullptr;
  SublogSealOptions seal;
  std::string helper = "/proc/self/exe";  // a binary with the `seal-sublog` subcommand
  std::chrono::milliseconds timeout{std::chrono::minutes(5)};
  // Called once, from a completion: emit make_event(data) into the reactor's log.
  std::function<void(NestedSealedData)> on_done;
};

class SublogSealJob {
 public:
  static base::Result<std::unique_ptr<SublogSealJob>> start(SublogSealJobOptions options);
  ~SublogSealJob();
  SublogSealJob(const SublogSealJob&) = delete;
  SublogSealJob& operator=(const SublogSealJob&) = delete;
  bool done() const { return done_; }
  // Kills the helper now (the reactor stopping for good); on_done follows with a failed seal.
  void abort();

 private:
  explicit SublogSealJob(SublogSealJobOptions o);
  void on_read(int res);
  void on_exit(int res);
  void maybe_done();

  SublogSealJobOptions o_;
  base::Fd pidfd_, out_;
  siginfo_t info_{};
  std::string received_;
  std::vector<std::byte> buf_ = std::vector<std::byte>(8192);
  base::MemberOp<&SublogSealJob::on_read> read_{this};
  base::MemberOp<&SublogSealJob::on_exit> exit_{this};
  base::Timer deadline_;
  bool eof_ = false, reaped_ = false, killed_ = false, aborted_ = false, done_ = false;
};

// The seal a failure of the helper leaves: the options' fields, the lexical relative path,
// verified == false and `why`.
NestedSealedData failed_seal(const SublogSealOptions& options, const std::string& why);

}  // namespace cellos::sinks
