#include "reactor/run_via_daemon.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/inotify.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <nlohmann/json.hpp>

#include "base/fd.h"
#include "reactor/spool.h"
#include "reactor/status.h"

namespace cellos::reactor {
namespace {

constexpr int kSetupFailed = 125;

int say(const std::string& line) {
  std::fprintf(stderr, "cellos-reactor: %s\n", line.c_str());
  return kSetupFailed;
}

// One of the cell's log files, copied to our own stream as it grows (the daemon creates both,
// empty, before it says the cell started).
struct Follower {
  base::Fd fd;
  FILE* out = nullptr;

  void open(const std::string& path, int inotify_fd) {
    fd = base::Fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd) {
      say("cannot follow " + path + ": " + std::strerror(errno));
      return;
    }
    (void)::inotify_add_watch(inotify_fd, path.c_str(), IN_MODIFY);
  }
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

// SIGINT/SIGTERM as a descriptor for the poll loop, restored (and unblocked) on return.
struct Signals {
  sigset_t set{}, old{};
  base::Fd fd;
  Signals() {
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    ::sigprocmask(SIG_BLOCK, &set, &old);
    fd = base::Fd(::signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK));
  }
  ~Signals() { ::sigprocmask(SIG_SETMASK, &old, nullptr); }
  int take() {
    signalfd_siginfo si{};
    if (::read(fd.get(), &si, sizeof si) != static_cast<ssize_t>(sizeof si)) return 0;
    return static_cast<int>(si.ssi_signo);
  }
};

// `stop ID` / `kill ID` on a connection of its own; the answer is one line.
void control(const std::string& state_dir, const std::string& verb, const std::string& id) {
  auto c = connect_status(state_dir, verb + " " + id);
  if (!c) {
    say(verb + " " + id + ": " + c.error().message());
    return;
  }
  char buf[512];
  ssize_t n = ::read(c->get(), buf, sizeof buf - 1);
  if (n <= 0) return;
  auto j = nlohmann::json::parse(std::string(buf, static_cast<size_t>(n)), nullptr, false);
  if (j.is_object() && j.contains("error")) say(verb + " " + id + ": " + j.value("error", ""));
}

}  // namespace

std::optional<int> run_via_daemon(const cells::Config& config, const std::string& cell_id,
                                  const std::string& spec_text) {
  const StateDirs dirs(config.host.state_dir);
  Signals sig;  // before the spec is queued: a ^C from now on is ours to handle
  auto conn = connect_status(dirs.state, "wait " + cell_id);
  if (!conn) {
    const int e = conn.error().err;
    if (e == ENOENT || e == ECONNREFUSED) return std::nullopt;  // no daemon: run it here
    return say("--via-daemon: " + conn.error().message());
  }
  const int sock = conn->get();
  base::Fd inotify(::inotify_init1(IN_CLOEXEC | IN_NONBLOCK));
  if (!inotify) return say(std::string("inotify_init1: ") + std::strerror(errno));
  Follower out{{}, stdout}, err{{}, stderr};
  std::string buffer, spooled;
  bool watching = false, started = false;
  int signo = 0, signals = 0;

  for (;;) {
    pollfd fds[3] = {{sock, POLLIN, 0}, {inotify.get(), POLLIN, 0}, {sig.fd.get(), POLLIN, 0}};
    if (::poll(fds, 3, -1) < 0) {
      if (errno == EINTR) continue;
      return say(std::string("poll: ") + std::strerror(errno));
    }
    if (fds[2].revents & POLLIN) {
      if (int s = sig.take()) {
        signo = s;
        ++signals;
        if (!started && !spooled.empty() && ::unlink(spooled.c_str()) == 0) {
          say(std::string("stopped by ") + strsignal(s) + " before the daemon started cell " +
              cell_id + ": nothing ran");
          return 128 + s;
        }
        if (!started && spooled.empty()) {
          say(std::string("stopped by ") + strsignal(s) + ": nothing was queued");
          return 128 + s;
        }
        // Started, or being started (the daemon took the spec): stopped as `run` stops its own.
        if (started) control(dirs.state, signals > 1 ? "kill" : "stop", cell_id);
      }
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
      return say("--via-daemon: the daemon closed the connection before cell " + cell_id +
                 " finished (it died?); `cellos-reactor show " + cell_id +
                 "` tells what the log holds");
    }
    buffer.append(chunk, static_cast<size_t>(n));
    for (size_t nl; (nl = buffer.find('\n')) != std::string::npos;) {
      auto j = nlohmann::json::parse(buffer.substr(0, nl), nullptr, false);
      buffer.erase(0, nl + 1);
      if (j.is_discarded() || !j.is_object())
        return say("--via-daemon: the daemon sent a line that is not JSON");
      const std::string event = j.value("event", "");
      if (event.empty()) return say("--via-daemon: the daemon refused: " + j.value("error", ""));
      if (event == "watching" && !watching) {
        watching = true;
        // Only now: the daemon listens, so the cell's start cannot be missed.
        auto path = submit_to_spool(dirs, cell_id, spec_text);
        if (!path) return say(path.error().message());
        spooled = *path;
      } else if (event == "started" && !started) {
        started = true;
        out.open(j.value("stdout", ""), inotify.get());
        err.open(j.value("stderr", ""), inotify.get());
        out.pump();
        err.pump();
        // A signal came while the daemon was taking the spec: the cell stops now.
        if (signals) control(dirs.state, signals > 1 ? "kill" : "stop", cell_id);
      } else if (event == "rejected") {
        return say(j.value("reason", "rejected"));
      } else if (event == "stopped" && !watching) {
        return say("--via-daemon: the daemon serving " + dirs.state +
                   " is stopping; nothing was queued");
      } else if (event == "stopped") {
        if (!started && !spooled.empty() && ::unlink(spooled.c_str()) == 0)
          return say("--via-daemon: the daemon stopped before cell " + cell_id +
                     " started; nothing ran");
        return say("--via-daemon: the daemon stopped before cell " + cell_id + " started");
      } else if (event == "finished") {
        out.pump();
        err.pump();
        const int status = j.value("exitStatus", kSetupFailed);
        // As `run`: the cause of a 125-127 in one line; a cell it had killed after a signal
        // reports that signal.
        if (status >= 125 && status <= 127 && j.contains("error") && j["error"].is_string())
          say(j["error"].get<std::string>());
        if (signo != 0 && j.value("forced", false)) return 128 + signo;
        return status;
      }
    }
  }
}

}  // namespace cellos::reactor
