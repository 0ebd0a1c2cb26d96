#include "cells/spawner.h"

#include <fcntl.h>
#include <linux/sched.h>
#include <sched.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "cells/cell_init.h"
#include "cells/sys_template.h"
#include "cells/prepared_cell.h"

namespace cellos::cells {
namespace {

// The spawner's descriptors: 0-2 /dev/null (0 is every cell's stdin), 3 its socket, 4 the init.
constexpr int kSock = 3;
constexpr int kInit = 4;

// A request: which WireFd slots its SCM_RIGHTS carries (bit i: slot i) and whether the reactor
// waits for a reply (kReplyWanted), then the plan's bytes.
using FdMask = uint32_t;
constexpr FdMask kReplyWanted = 1u << 31;
constexpr FdMask kPrepare = 1u << 30;  // a warm pool's prepared cell (prepared_cell.h)

struct Reply {
  int32_t pid = -1;
  int32_t err = 0;
};

// Whether kSysTemplateFd holds the sysfs template (sys_template.h).
bool g_sys_template = false;

Spawner* g_spawner = nullptr;
bool g_tried = false;

void send_reply(const Reply& r, int pidfd) {
  iovec iov{const_cast<Reply*>(&r), sizeof r};
  msghdr m{};
  m.msg_iov = &iov;
  m.msg_iovlen = 1;
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))];
  if (pidfd >= 0) {
    m.msg_control = control;
    m.msg_controllen = sizeof control;
    cmsghdr* c = CMSG_FIRSTHDR(&m);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int));
    std::memcpy(CMSG_DATA(c), &pidfd, sizeof pidfd);
  }
  while (::sendmsg(kSock, &m, MSG_NOSIGNAL) < 0)
    if (errno != EINTR) _exit(0);  // the reactor is gone
}

// One request: decode, clone, reply. Allocation-free (see spawn_plan.h).
void serve_one(char* buf, size_t len, const int* received, int n_received, FdMask mask) {
  static const char* pointers[kMaxWirePointers];
  int fds[kWireFdCount];
  int next = 0;
  bool fds_ok = true;
  for (int i = 0; i < kWireFdCount; ++i) {
    fds[i] = -1;
    if (!(mask & (1u << i))) continue;
    if (next < n_received) fds[i] = received[next++];
    else fds_ok = false;
  }
  Reply r;
  int pidfd = -1;
  DecodedPlan d;
  if (!fds_ok || next != n_received ||
      !decode_plan(buf, len, fds, 0, kInit, pointers, kMaxWirePointers, d)) {
    r.err = EINVAL;
  } else {
    clone_args args{};
    args.flags = CLONE_PARENT | CLONE_INTO_CGROUP | CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWIPC |
                 CLONE_NEWUTS;
    if (d.want_pidfd) args.flags |= CLONE_PIDFD;
    if (d.plan.netns_fd < 0) args.flags |= CLONE_NEWNET;
    if (g_sys_template && d.plan.netns_fd < 0 && !d.plan.rootless) d.plan.sys_template_fd = kSysTemplateFd;
    args.pidfd = reinterpret_cast<uint64_t>(&pidfd);
    // CLONE_PARENT takes the exit signal from the spawner's own (SIGCHLD); clone3 wants 0 here.
    args.exit_signal = 0;
    args.cgroup = static_cast<uint64_t>(d.cgroup_fd);
    // Fork-like, not CLONE_VM|CLONE_VFORK: the spawner's memory is small, and the reply goes
    // back now rather than after the cell's setup.
    long pid = ::syscall(SYS_clone3, &args, sizeof args);
    if (pid == 0) {
      if (mask & kPrepare) prepared_cell_main(d.plan);
      cell_setup_main(d.plan);
    }
    if (pid < 0) r.err = errno;
    else r.pid = static_cast<int32_t>(pid);
  }
  if (mask & kReplyWanted) {
    send_reply(r, pidfd);
  } else if (fds[kWireStatus] >= 0) {
    // No pidfd wanted: the reactor did not wait. The pid (or the clone's errno) goes on the
    // cell's status pipe, which the reactor reads anyway, before the EOF of the cell's end.
    ChildStatus s;
    if (r.err != 0) {
      s.kind = ChildStatus::kSetupFailed;
      s.stage = kStageClone;
      s.err = r.err;
    } else {
      s.kind = ChildStatus::kSpawned;
      s.wait_status = r.pid;
    }
    ssize_t n = ::write(fds[kWireStatus], &s, sizeof s);
    (void)n;  // a reactor that closed the read end does not want it
  }
  if (pidfd >= 0) ::close(pidfd);
  for (int i = 0; i < n_received; ++i) ::close(received[i]);
}

[[noreturn]] void serve(int sock, int init_fd, pid_t reactor) {
  ::prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (::getppid() != reactor) _exit(0);
  ::prctl(PR_SET_NAME, "cellos-spawner");
  // A terminal's ^C or a service manager's SIGTERM to the group is the reactor's to handle; the
  // spawner leaves with it. Cells start from an empty mask all the same (the init clears it).
  sigset_t quiet;
  sigemptyset(&quiet);
  // SIGPIPE too: a status pipe whose reader is gone is an EPIPE here, not the spawner's end.
  for (int s : {SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGPIPE}) sigaddset(&quiet, s);
  ::sigprocmask(SIG_BLOCK, &quiet, nullptr);
  // Nothing of the reactor's but the socket and the init: lift both above the fixed numbers,
  // place them, close the rest, and put /dev/null at 0-2.
  int s = ::fcntl(sock, F_DUPFD_CLOEXEC, 16);
  int i = ::fcntl(init_fd, F_DUPFD_CLOEXEC, 16);
  if (s < 0 || i < 0 || ::dup3(s, kSock, O_CLOEXEC) < 0 || ::dup3(i, kInit, O_CLOEXEC) < 0) _exit(1);
  ::close_range(0, 2, 0);
  ::close_range(kInit + 1, ~0U, 0);
  int null = ::open("/dev/null", O_RDWR);  // 0, the lowest free number
  if (null != 0 || ::dup2(0, 1) != 1 || ::dup2(0, 2) != 2) _exit(1);
  // Ready: from here on it holds none of the reactor's descriptors. The reactor waits for this
  // byte, so no copy of, say, its flock'ed event log outlives a reactor that exits at once (a
  // `run` that rejects its spec): the next writer would find the lock taken.
  const char ready = 1;
  if (::send(kSock, &ready, 1, MSG_NOSIGNAL) != 1) _exit(1);

  static char buf[kMaxWirePlan + sizeof(FdMask)];
  bool template_tried = false;
  for (;;) {
    iovec iov{buf, sizeof buf};
    alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * kWireFdCount)];
    msghdr m{};
    m.msg_iov = &iov;
    m.msg_iovlen = 1;
    m.msg_control = control;
    m.msg_controllen = sizeof control;
    ssize_t n = ::recvmsg(kSock, &m, MSG_CMSG_CLOEXEC);
    if (n == 0) _exit(0);  // the reactor closed its end
    if (n < 0) {
      if (errno == EINTR) continue;
      _exit(1);
    }
    int received[kWireFdCount];
    int n_received = 0;
    for (cmsghdr* c = CMSG_FIRSTHDR(&m); c; c = CMSG_NXTHDR(&m, c)) {
      if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
      size_t k = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
      for (size_t j = 0; j < k; ++j) {
        int fd;
        std::memcpy(&fd, CMSG_DATA(c) + j * sizeof(int), sizeof fd);
        if (n_received < kWireFdCount) received[n_received++] = fd;
        else ::close(fd);
      }
    }
    FdMask mask = 0;
    const bool whole = !(m.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) &&
                       static_cast<size_t>(n) >= sizeof mask;
    if (whole) std::memcpy(&mask, buf, sizeof mask);
    // A cut request cannot be decoded; its sender gets an EINVAL reply (if it waits for one).
    serve_one(buf + sizeof mask, whole ? static_cast<size_t>(n) - sizeof mask : 0, received,
              n_received, whole ? mask : kReplyWanted);
    // The sysfs template, made once the first cell is on its way: a `run` (one cell) never
    // pays for it (a network namespace and a sysfs mount, ~1 ms), a daemon pays once, between
    // its first and second cells. At its fixed number; its network namespace stays open here
    // for the spawner's life (cells close their copy). Without one, each cell mounts its own.
    if (!template_tried) {
      template_tried = true;
      int template_netns = -1;
      if (int t = make_sys_template(&template_netns); t == kSysTemplateFd) {
        g_sys_template = true;
      } else if (t >= 0) {
        g_sys_template = ::dup3(t, kSysTemplateFd, O_CLOEXEC) == kSysTemplateFd;
        ::close(t);
      }
      if (!g_sys_template && template_netns >= 0) ::close(template_netns);
    }
  }
}

}  // namespace

Spawner* Spawner::get() {
  if (g_spawner || g_tried) return g_spawner;
  g_tried = true;
  const auto& init = cell_init_binary();
  if (!init.ok()) return nullptr;
  int sv[2];
  if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) != 0) return nullptr;
  const pid_t reactor = ::getpid();
  // A raw fork-like clone rather than fork(): no atfork handlers in a process that may have
  // threads (tests); the child makes syscalls only.
  clone_args args{};
  args.exit_signal = SIGCHLD;
  long pid = ::syscall(SYS_clone3, &args, sizeof args);
  if (pid == 0) serve(sv[1], init->get(), reactor);
  ::close(sv[1]);
  if (pid < 0) {
    ::close(sv[0]);
    return nullptr;
  }
  // Once per process: the spawner says it has closed its copies of our descriptors.
  char ready = 0;
  ssize_t got;
  while ((got = ::recv(sv[0], &ready, 1, 0)) < 0 && errno == EINTR) {
  }
  if (got != 1) {
    ::close(sv[0]);
    ::waitpid(static_cast<pid_t>(pid), nullptr, 0);
    return nullptr;
  }
  g_spawner = new Spawner(base::Fd(sv[0]), static_cast<pid_t>(pid));
  return g_spawner;
}

void Spawner::lost() {
  // Reaped if it has left already; a zombie until the reactor exits otherwise (one process).
  ::waitpid(pid_, nullptr, WNOHANG);
  g_spawner = nullptr;
  delete this;
}

base::Result<Spawned> Spawner::spawn(const WirePlan& plan, bool want_pidfd, const char* cell,
                                     bool* not_sent, bool prepare) {
  *not_sent = false;
  const ssize_t sent = send_plan(sock_.get(), plan, (want_pidfd ? kReplyWanted : 0) | (prepare ? kPrepare : 0));
  if (sent < 0) {
    // Nothing was cloned: the caller may clone the cell itself.
    int err = errno;
    lost();
    *not_sent = true;
    return base::sys_error("send to the spawner", cell, err);
  }
  // Without a pidfd to carry back, the reactor goes on: the pid comes on the status pipe.
  if (!want_pidfd) return Spawned{0, {}};
  Reply r;
  iovec riov{&r, sizeof r};
  msghdr rm{};
  rm.msg_iov = &riov;
  rm.msg_iovlen = 1;
  alignas(cmsghdr) char rcontrol[CMSG_SPACE(sizeof(int))];
  rm.msg_control = rcontrol;
  rm.msg_controllen = sizeof rcontrol;
  ssize_t n;
  while ((n = ::recvmsg(sock_.get(), &rm, MSG_CMSG_CLOEXEC)) < 0 && errno == EINTR) {
  }
  base::Fd pidfd;
  for (cmsghdr* c = CMSG_FIRSTHDR(&rm); n > 0 && c; c = CMSG_NXTHDR(&rm, c))
    if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS && c->cmsg_len >= CMSG_LEN(sizeof(int))) {
      int fd;
      std::memcpy(&fd, CMSG_DATA(c), sizeof fd);
      pidfd = base::Fd(fd);
    }
  if (n != static_cast<ssize_t>(sizeof r)) {
    // The request went out and no answer came: whether the cell was cloned is unknown, so this
    // cell fails rather than risk a second copy; later cells are cloned by the launcher itself.
    int err = n < 0 ? errno : EPIPE;
    lost();
    return base::sys_error("the spawner did not answer for", cell, err);
  }
  if (r.err != 0) return base::sys_error("clone3", std::string("cell ") + cell, r.err);
  return Spawned{static_cast<pid_t>(r.pid), std::move(pidfd)};
}

}  // namespace cellos::cells
