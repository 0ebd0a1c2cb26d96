// The daemon's side of the NATS companion (cellos-reactor-nats, see reactor/nats/frames.h for
// why it is a separate process): spawns it beside /proc/self/exe with one end of a
// SOCK_SEQPACKET socketpair, reads and writes frames through the ring (so the reactor stays one
// thread and nothing of libnats ever runs in it), watches its exit through a pidfd, and
// restarts it with backoff. The companion dies with the daemon (PR_SET_PDEATHSIG).
#pragma once

#include <signal.h>

#include <chrono>
#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "base/completion.h"
#include "base/fd.h"
#include "reactor/nats/frames.h"
#include "reactor/ring.h"

namespace cellos::reactor {

struct CompanionOptions {
  std::string binary;             // cellos-reactor-nats
  std::vector<std::string> args;  // after `serve --fd 3 --parent-pid P`
  std::function<void(nats::Frame)> on_frame;
  // A new companion runs: it knows nothing yet (credit, unsettled specs).
  std::function<void()> on_up;
  // The companion is gone: credit it held is void, frames sent to it may be lost.
  std::function<void()> on_down;
};

class Companion {
 public:
  static base::Result<std::unique_ptr<Companion>> start(Ring& ring, CompanionOptions o);
  ~Companion();
  // Queued and written in order; dropped while no companion runs (on_up says when to resend).
  void send(const nats::Frame& f);
  bool up() const { return sock_.valid() && !closing_; }
  // At daemon exit: closes our end (the companion exits on EOF) and restarts no more.
  void stop();
  bool idle() const { return !read_.busy() && !write_.busy() && !exit_.busy() && !timer_.busy(); }

  // The companion binary beside the running executable.
  static std::string beside_self();

 private:
  Companion(Ring& ring, CompanionOptions o);
  base::Result<void> spawn();
  void arm_read();
  void kick();
  void on_read(int res);
  void on_write(int res);
  void on_exit(int res);
  void on_timer(int res);
  void teardown();
  void maybe_restart();

  Ring& ring_;
  CompanionOptions o_;
  base::Fd sock_, pidfd_;
  pid_t pid_ = -1;
  siginfo_t info_{};
  std::vector<std::byte> rbuf_;
  std::deque<std::string> wq_;
  base::MemberOp<&Companion::on_read> read_{this};
  base::MemberOp<&Companion::on_write> write_{this};
  base::MemberOp<&Companion::on_exit> exit_{this};
  base::MemberOp<&Companion::on_timer> timer_{this};
  bool closing_ = false, stopped_ = false, exited_ = false;
  std::chrono::milliseconds backoff_{200};
  std::chrono::steady_clock::time_point started_at_;
  bool said_down_ = false;
};

}  // namespace cellos::reactor
