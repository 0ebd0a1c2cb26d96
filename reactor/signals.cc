#include "reactor/signals.h"

#include <signal.h>

#include <cstring>

namespace cellos::reactor {

base::Result<std::unique_ptr<SignalWatcher>> SignalWatcher::create(base::IoPort& io, Handler h) {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  if (sigprocmask(SIG_BLOCK, &set, nullptr) != 0) return base::sys_error("sigprocmask", "");
  ::signal(SIGPIPE, SIG_IGN);
  int fd = ::signalfd(-1, &set, SFD_CLOEXEC);
  if (fd < 0) return base::sys_error("signalfd", "SIGINT|SIGTERM");
  std::unique_ptr<SignalWatcher> w(new SignalWatcher(io, base::Fd(fd), std::move(h)));
  w->arm();
  return w;
}

void SignalWatcher::arm() {
  in_flight_ = true;
  io_.read(fd_.get(), std::as_writable_bytes(std::span(&info_, 1)), *this);
}

void SignalWatcher::stop() {
  stopped_ = true;
  if (in_flight_) io_.cancel(*this);
}

void SignalWatcher::complete(int res) {
  in_flight_ = false;
  if (stopped_) return;
  if (res == static_cast<int>(sizeof info_)) handler_(static_cast<int>(info_.ssi_signo));
  // The signalfd is blocking on purpose: io_uring then arms a poll and completes the read
  // when a signal is pending, instead of returning -EAGAIN (which O_NONBLOCK would make it do).
  if (!stopped_) arm();
}

}  // namespace cellos::reactor
