#include "reactor/companion.h"

#include <fcntl.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>

#include "base/spawn.h"

namespace cellos::reactor {
namespace {

constexpr auto kMaxBackoff = std::chrono::milliseconds(10000);
// A companion that ran this long was healthy: the next failure starts the backoff afresh.
constexpr auto kHealthy = std::chrono::seconds(30);
// A SEQPACKET datagram must fit the send buffer whole: room for a few specs of the largest size.
constexpr int kSockBuf = 4 * static_cast<int>(nats::kMaxFrameBytes);

void raise_buffers(int fd) {
  for (auto [force, plain] : {std::pair{SO_SNDBUFFORCE, SO_SNDBUF}, std::pair{SO_RCVBUFFORCE, SO_RCVBUF}}) {
    if (::setsockopt(fd, SOL_SOCKET, force, &kSockBuf, sizeof kSockBuf) != 0)
      (void)::setsockopt(fd, SOL_SOCKET, plain, &kSockBuf, sizeof kSockBuf);
  }
}

std::string describe(const siginfo_t& si) {
  if (si.si_code == CLD_EXITED) return "exited with status " + std::to_string(si.si_status);
  const char* abbrev = sigabbrev_np(si.si_status);
  return "was killed by " + (abbrev ? "SIG" + std::string(abbrev) : "signal " + std::to_string(si.si_status));
}

}  // namespace

std::string Companion::beside_self() {
  char buf[4096];
  ssize_t n = ::readlink("/proc/self/exe", buf, sizeof buf - 1);
  if (n <= 0) return "cellos-reactor-nats";
  std::string self(buf, static_cast<size_t>(n));
  return self.substr(0, self.rfind('/') + 1) + "cellos-reactor-nats";
}

Companion::Companion(Ring& ring, CompanionOptions o) : ring_(ring), o_(std::move(o)) {
  rbuf_.resize(nats::kMaxFrameBytes);
}

Companion::~Companion() = default;

base::Result<std::unique_ptr<Companion>> Companion::start(Ring& ring, CompanionOptions o) {
  if (::access(o.binary.c_str(), X_OK) != 0)
    return base::sys_error("access", "NATS companion \"" + o.binary + "\"");
  std::unique_ptr<Companion> c(new Companion(ring, std::move(o)));
  CELLOS_TRY(c->spawn());
  return c;
}

base::Result<void> Companion::spawn() {
  int sv[2];
  if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) != 0)
    return base::sys_error("socketpair", "NATS companion");
  base::Fd ours(sv[0]), theirs(sv[1]);
  raise_buffers(ours.get());
  raise_buffers(theirs.get());
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  // dup2 onto fd 3 clears close-on-exec there; every other descriptor of ours is CLOEXEC.
  posix_spawn_file_actions_adddup2(&fa, theirs.get(), 3);
  // spawn_helper gives it the default signals back, so a stray signal can end it and the
  // daemon restarts it.
  std::vector<std::string> args = {o_.binary, "serve", "--fd", "3", "--parent-pid", std::to_string(::getpid())};
  args.insert(args.end(), o_.args.begin(), o_.args.end());
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  char* envp[] = {nullptr};  // nothing configures the companion but its flags
  auto spawned = base::spawn_helper(o_.binary, fa, argv.data(), envp, "NATS companion");
  posix_spawn_file_actions_destroy(&fa);
  if (!spawned) return std::move(spawned).error();
  pid_ = spawned->pid;
  pidfd_ = std::move(spawned->pidfd);
  sock_ = std::move(ours);
  closing_ = exited_ = false;
  started_at_ = std::chrono::steady_clock::now();
  ring_.wait_exit(pidfd_.get(), &info_, exit_.arm());
  arm_read();
  if (o_.on_up) o_.on_up();
  return base::ok();
}

void Companion::arm_read() {
  if (read_.busy() || !sock_ || closing_) return;
  ring_.read(sock_.get(), std::span(rbuf_), read_.arm());
}

void Companion::send(const nats::Frame& f) {
  if (!up()) return;
  wq_.push_back(nats::encode(f));
  kick();
}

void Companion::kick() {
  if (write_.busy() || wq_.empty() || !up()) return;
  ring_.write(sock_.get(), std::as_bytes(std::span(wq_.front())), write_.arm());
}

void Companion::on_write(int res) {
  if (res < 0) teardown();  // EPIPE: the companion is gone; the pidfd reports its exit
  if (closing_) {
    wq_.clear();  // teardown kept the frame this write was reading
    return maybe_restart();
  }
  if (!wq_.empty()) wq_.pop_front();  // SEQPACKET: a datagram is sent whole or not at all
  kick();
}

void Companion::on_read(int res) {
  if (res <= 0) {
    teardown();
    return maybe_restart();
  }
  auto f = nats::decode(std::span(rbuf_.data(), static_cast<size_t>(res)));
  if (!f)
    std::fprintf(stderr, "cellos-reactor: NATS companion: %s\n", f.error().message().c_str());
  else if (o_.on_frame)
    o_.on_frame(std::move(*f));
  arm_read();
}

void Companion::on_exit(int) {
  exited_ = true;
  pidfd_.reset();
  if (std::chrono::steady_clock::now() - started_at_ > kHealthy) {
    backoff_ = std::chrono::milliseconds(200);
    said_down_ = false;
  }
  if (!stopped_ && !said_down_) {
    // Once per failure streak: a companion that keeps failing does not flood the log.
    std::fprintf(stderr, "cellos-reactor: NATS companion (pid %d) %s; restarting it with backoff "
                 "(intake pauses, the local event log goes on)\n", pid_, describe(info_).c_str());
    said_down_ = true;
  }
  teardown();
  maybe_restart();
}

// Our end stops: shutdown wakes the read in flight, so the ring gives every buffer back.
void Companion::teardown() {
  if (closing_) return;
  closing_ = true;
  // A write in flight still reads the front frame: it goes when that write completes.
  wq_.erase(write_.busy() && !wq_.empty() ? wq_.begin() + 1 : wq_.begin(), wq_.end());
  if (sock_) ::shutdown(sock_.get(), SHUT_RDWR);
  if (!exited_ && pidfd_) ::syscall(SYS_pidfd_send_signal, pidfd_.get(), SIGKILL, nullptr, 0);
  if (o_.on_down) o_.on_down();
}

void Companion::maybe_restart() {
  if (!closing_ || read_.busy() || write_.busy() || !exited_) return;
  sock_.reset();
  if (stopped_ || timer_.busy()) return;
  ring_.timeout(backoff_, timer_.arm());
  backoff_ = std::min(backoff_ * 2, kMaxBackoff);
}

void Companion::on_timer(int) {
  if (stopped_) return;
  if (auto r = spawn(); !r) {
    if (!said_down_)
      std::fprintf(stderr, "cellos-reactor: NATS companion: %s; retrying\n", r.error().message().c_str());
    said_down_ = true;
    closing_ = exited_ = true;
    maybe_restart();
  }
}

void Companion::stop() {
  stopped_ = true;
  if (timer_.busy()) ring_.cancel(timer_);
  // Closing our end is the companion's signal to exit (it reads EOF).
  if (sock_) ::shutdown(sock_.get(), SHUT_RDWR);
  closing_ = true;
}

}  // namespace cellos::reactor
