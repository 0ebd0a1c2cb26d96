#include "reactor/submit_wait.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/inotify.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <nlohmann/json.hpp>

#include "base/fd.h"
#include "reactor/status.h"

namespace cellos::reactor {
namespace {

constexpr int kSetupFailed = 125;

int say(const std::string& line) {
  std::fprintf(stderr, "cellos-reactor: %s\n", line.c_str());
  return kSetupFailed;
}

// One of the cell's log files, copied to our own stream as it grows. The daemon creates both
// (empty) before it says the cell started, so they can be opened at once.
struct Follower {
  base::Fd fd;
  FILE* out = nullptr;
  int watch = -1;

  void open(const std::string& path, int inotify_fd) {
    fd = base::Fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd) {
      say("cannot follow " + path + ": " + std::strerror(errno));
      return;
    }
    watch = ::inotify_add_watch(inotify_fd, path.c_str(), IN_MODIFY);
  }
  // Copies what the file holds beyond what was copied already.
  void pump() {
    if (!fd) return;
    char buf[65536];
    for (;;) {
      ssize_t n = ::read(fd.get(), buf, sizeof buf);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) break;
      std::fwrite(buf, 1, static_cast<size_t>(n), out);
    }
    std::fflush(out);
  }
};

}  // namespace

int submit_and_wait(const SubmitWaitOptions& o) {
  auto conn = connect_status(o.dirs->state, "wait " + o.cell_id);
  if (!conn)
    return say("--wait: " + conn.error().message() +
               " (nothing was queued: start the daemon, or submit without --wait)");
  const int sock = conn->get();
  std::string buffer;
  base::Fd inotify(::inotify_init1(IN_CLOEXEC | IN_NONBLOCK));
  if (!inotify) return say(std::string("inotify_init1: ") + std::strerror(errno));
  Follower out{{}, stdout}, err{{}, stderr};
  bool watching = false, started = false;

  for (;;) {
    pollfd fds[2] = {{sock, POLLIN, 0}, {inotify.get(), POLLIN, 0}};
    if (::poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      return say(std::string("poll: ") + std::strerror(errno));
    }
    if (fds[1].revents & POLLIN) {
      char ev[4096];
      while (::read(inotify.get(), ev, sizeof ev) > 0) {
      }
      out.pump();
      err.pump();
    }
    if (!(fds[0].revents & (POLLIN | POLLHUP | POLLERR))) continue;
    char chunk[4096];
    ssize_t n = ::read(sock, chunk, sizeof chunk);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      out.pump();
      err.pump();
      return say("--wait: the daemon closed the connection before cell " + o.cell_id +
                 " finished (it died?); `cellos-reactor show " + o.cell_id +
                 "` tells what the log holds");
    }
    buffer.append(chunk, static_cast<size_t>(n));
    for (size_t nl; (nl = buffer.find('\n')) != std::string::npos;) {
      auto j = nlohmann::json::parse(buffer.substr(0, nl), nullptr, false);
      buffer.erase(0, nl + 1);
      if (j.is_discarded() || !j.is_object()) return say("--wait: the daemon sent a line that is not JSON");
      const std::string event = j.value("event", "");
      if (event.empty()) return say("--wait: the daemon refused: " + j.value("error", ""));
      if (event == "watching" && !watching) {
        watching = true;
        // Only now: the daemon listens, so the cell's start cannot be missed.
        auto path = submit_to_spool(*o.dirs, o.cell_id, o.spec_text);
        if (!path) return say(path.error().message());
        std::fprintf(stderr,
                     "cellos-reactor: submitted %s (%s); waiting for it (Ctrl-C stops waiting, "
                     "the cell keeps running)\n",
                     o.cell_id.c_str(), path->c_str());
      } else if (event == "started" && !started) {
        started = true;
        out.open(j.value("stdout", ""), inotify.get());
        err.open(j.value("stderr", ""), inotify.get());
        out.pump();
        err.pump();
      } else if (event == "rejected") {
        return say("rejected " + o.cell_id + ": " + j.value("reason", ""));
      } else if (event == "stopped" && !watching) {
        return say("--wait: the daemon serving " + o.dirs->state +
                   " is stopping; nothing was queued");
      } else if (event == "stopped") {
        return say("--wait: the daemon stopped before cell " + o.cell_id +
                   " started; its spec stays in the spool for the daemon's next start");
      } else if (event == "finished") {
        out.pump();
        err.pump();
        const int status = j.value("exitStatus", kSetupFailed);
        if (j.contains("error") && j["error"].is_string())
          std::fprintf(stderr, "cellos-reactor: cell %s: %s\n", o.cell_id.c_str(),
                       j["error"].get<std::string>().c_str());
        else if (status != 0)
          std::fprintf(stderr, "cellos-reactor: cell %s: %s (exit status %d)\n",
                       o.cell_id.c_str(), j.value("reason", "").c_str(), status);
        return status;
      }
    }
  }
}

}  // namespace cellos::reactor
