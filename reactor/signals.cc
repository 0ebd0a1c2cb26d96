#include "reactor/signals.h"

#include <signal.h>

#include <cstdio>
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
  io_.read(fd_.get(), std::as_writable_bytes(std::span(&info_, 1)), *this);
}

void SignalWatcher::complete(int res) {
  if (res == static_cast<int>(sizeof info_)) handler_(static_cast<int>(info_.ssi_signo));
  if (res < 0 && res != -EINTR && res != -EAGAIN) {
    // Re-arming a read that fails for good would spin the loop; say so once and stop.
    std::fprintf(stderr, "cellos-reactor: read(signalfd): %s; SIGINT/SIGTERM no longer heard\n",
                 std::strerror(-res));
    return;
  }
  // The signalfd is blocking on purpose: io_uring then arms a poll and completes the read
  // when a signal is pending, instead of returning -EAGAIN (which O_NONBLOCK would make it do).
  arm();
}

}  // namespace cellos::reactor
