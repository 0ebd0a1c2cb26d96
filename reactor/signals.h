// SignalWatcher: SIGINT and SIGTERM as ring completions instead of asynchronous handlers.
//
// The signals are blocked for the whole process and read from a signalfd through the ring, so
// a stop request is handled on the reactor thread between completions, never in the middle of
// one. Cells do not inherit the block: the child unblocks everything before exec.
#pragma once

#include <sys/signalfd.h>

#include <functional>
#include <memory>

#include "base/fd.h"
#include "base/io.h"

namespace cellos::reactor {

class SignalWatcher final : public base::Completion {
 public:
  using Handler = std::function<void(int signo)>;

  // Blocks SIGINT/SIGTERM and ignores SIGPIPE (a closed stdout must be an error on the write
  // that hit it, not the death of every cell's supervisor).
  static base::Result<std::unique_ptr<SignalWatcher>> create(base::IoPort& io, Handler h);

  // Destroy it only after the ring that reads for it (Supervisor's teardown order).
  void complete(int res) override;

 private:
  SignalWatcher(base::IoPort& io, base::Fd fd, Handler h)
      : io_(io), fd_(std::move(fd)), handler_(std::move(h)) {}
  void arm();

  base::IoPort& io_;
  base::Fd fd_;
  Handler handler_;
  signalfd_siginfo info_{};
};

}  // namespace cellos::reactor
