#include "reactor/nats/channel.h"

#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>

namespace cellos::reactor::nats {

Channel::Channel(int fd) : fd_(fd), buf_(kMaxFrameBytes) {}

void Channel::send(const Frame& f) {
  const std::string bytes = encode(f);
  std::lock_guard lock(send_mu_);
  for (;;) {
    // MSG_NOSIGNAL: a daemon that died must end us through the error, not SIGPIPE.
    ssize_t n = ::send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL);
    if (n >= 0) return;
    if (errno == EINTR) continue;
    if (errno == EMSGSIZE) {
      std::fprintf(stderr, "cellos-reactor-nats: frame of %zu bytes too large for the socket\n",
                   bytes.size());
      return;
    }
    std::_Exit(0);  // EPIPE, ECONNRESET: the daemon is gone
  }
}

std::optional<Frame> Channel::receive() {
  for (;;) {
    ssize_t n = ::recv(fd_, buf_.data(), buf_.size(), 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return std::nullopt;
    auto f = decode(std::span(buf_.data(), static_cast<size_t>(n)));
    if (!f) {
      note("companion: bad frame from the daemon: " + f.error().message());
      continue;
    }
    return std::move(*f);
  }
}

}  // namespace cellos::reactor::nats
