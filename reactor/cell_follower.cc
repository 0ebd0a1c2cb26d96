#include "reactor/cell_follower.h"

#include <fcntl.h>
#include <poll.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

namespace cellos::reactor {

int say_refused(const std::string& line) {
  std::fprintf(stderr, "cellos-reactor: %s\n", line.c_str());
  return 125;
}

CellFollower::CellFollower(base::Fd conn) : conn_(std::move(conn)) {
  if (!conn_) error_ = "no connection to the daemon";
}

// The daemon creates both log files (empty) before it says the cell started, so they can be
// opened at once.
void CellFollower::Log::open(const std::string& log_path) {
  path = log_path;
  fd = base::Fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) say_refused("cannot follow " + path + ": " + std::strerror(errno));
}

bool CellFollower::Log::pump() {
  if (!fd) return false;
  bool copied = false;
  char buf[65536];
  for (;;) {
    ssize_t n = ::read(fd.get(), buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    std::fwrite(buf, 1, static_cast<size_t>(n), out);
    copied = true;
  }
  if (copied) std::fflush(out);
  return copied;
}

void CellFollower::follow(const nlohmann::json& started) {
  out_.open(started.value("stdout", ""));
  err_.open(started.value("stderr", ""));
  read_every_ms_ = kFirstReadMs;
  pump();
}

void CellFollower::pump() {
  // Both, always: || would skip stderr when stdout had something.
  const bool out = out_.pump();
  const bool err = err_.pump();
  read_every_ms_ = out || err ? kFirstReadMs : std::min(read_every_ms_ * 2, kMaxReadMs);
}

CellFollower::Next CellFollower::next(nlohmann::json& line, int extra_fd) {
  for (;;) {
    // A whole line already buffered comes first.
    if (size_t nl = buffer_.find('\n'); nl != std::string::npos) {
      line = nlohmann::json::parse(buffer_.substr(0, nl), nullptr, false);
      buffer_.erase(0, nl + 1);
      if (line.is_discarded() || !line.is_object()) {
        error_ = "the daemon sent a line that is not JSON";
        return Next::kError;
      }
      return Next::kLine;
    }
    pollfd fds[2] = {{conn_.get(), POLLIN, 0}, {extra_fd, POLLIN, 0}};
    const bool following = out_.fd.valid() || err_.fd.valid();
    const int ready = ::poll(fds, extra_fd >= 0 ? 2 : 1, following ? read_every_ms_ : -1);
    if (ready < 0) {
      if (errno == EINTR) continue;
      error_ = std::string("poll: ") + std::strerror(errno);
      return Next::kError;
    }
    if (ready == 0) {  // still running: copy what came so far
      pump();
      continue;
    }
    if (extra_fd >= 0 && (fds[1].revents & POLLIN)) return Next::kExtra;
    if (!(fds[0].revents & (POLLIN | POLLHUP | POLLERR))) continue;
    char chunk[4096];
    ssize_t n = ::read(conn_.get(), chunk, sizeof chunk);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      pump();
      return Next::kClosed;
    }
    buffer_.append(chunk, static_cast<size_t>(n));
  }
}

}  // namespace cellos::reactor
