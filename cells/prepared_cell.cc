#include "cells/prepared_cell.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <thread>

#include "cells/child_status.h"
#include "cells/spawn_plan.h"
#include "cells/spawner.h"

namespace cellos::cells {
namespace {

// In the prepared process (a fork of the spawner): 0-2 /dev/null, 4 the init binary (the
// spawner's kInit), 5 its socket. The spawner's own socket (3) is closed.
constexpr int kSpawnerSock = 3;
constexpr int kInit = 4;
constexpr int kBind = 5;

// The bind message: which WireFd slots its SCM_RIGHTS carries (bit i: slot i), then the plan.
using FdMask = uint32_t;
// What the prepared process says on its socket before the bind: one byte.
constexpr char kReady = 'R';
constexpr char kPrepareFailed = 'F';

bool write_zero(const char* path) {
  int fd = ::open(path, O_WRONLY | O_CLOEXEC);
  if (fd < 0) return false;
  bool ok = ::write(fd, "0", 1) == 1;
  ::close(fd);
  return ok;
}

// A plan the prepared process cannot take (undecodable, or for another leaf than the one it
// prepared): said on the cell's status pipe, if one came with it, as a setup failure at `stage`,
// and the process ends without running anything.
[[noreturn]] void refuse_bind(int status_fd, int32_t stage) {
  if (status_fd >= 0) {
    ChildStatus s;
    s.kind = ChildStatus::kSetupFailed;
    s.stage = stage;
    s.err = EINVAL;
    ssize_t w = ::write(status_fd, &s, sizeof s);
    (void)w;
  }
  _exit(125);
}

}  // namespace

void prepared_cell_main(const ChildPlan& prep) {
  // Dies with the reactor (its parent: CLONE_PARENT), as a cell's setup does.
  ::prctl(PR_SET_PDEATHSIG, SIGKILL);
  ::prctl(PR_SET_NAME, "cellos-prepared");
  if (prep.status_fd != kBind && ::dup3(prep.status_fd, kBind, O_CLOEXEC) < 0) _exit(125);
  ::close(kSpawnerSock);
  ::close_range(kBind + 1, ~0U, 0);
  // The v1 joins a cold cell makes on its critical path (child_setup.cc's
  // write_cgroup_limits), made now.
  for (int i = 0; i < prep.n_v1_procs_paths; ++i)
    if (!write_zero(prep.v1_procs_paths[i])) {
      (void)::send(kBind, &kPrepareFailed, 1, MSG_NOSIGNAL);
      _exit(125);
    }
  // The view's root, built before any spec (prepare_cell_view): the bind only adds the spec's.
  const uint32_t parked = prepare_cell_view(prep);
  if (::send(kBind, &kReady, 1, MSG_NOSIGNAL) != 1) _exit(0);

  // The spec's plan. Static: this process is a copy of the spawner, one thread, allocation-free.
  static char buf[kMaxWirePlan + sizeof(FdMask)];
  static const char* pointers[kMaxWirePointers];
  ssize_t n;
  msghdr m{};
  iovec iov{buf, sizeof buf};
  alignas(cmsghdr) static char control[CMSG_SPACE(sizeof(int) * kWireFdCount)];
  for (;;) {
    m = msghdr{};
    m.msg_iov = &iov;
    m.msg_iovlen = 1;
    m.msg_control = control;
    m.msg_controllen = sizeof control;
    n = ::recvmsg(kBind, &m, MSG_CMSG_CLOEXEC);
    if (n >= 0 || errno != EINTR) break;
  }
  if (n <= 0) _exit(0);  // the pool let it go: never bound
  int received[kWireFdCount];
  int n_received = 0;
  for (cmsghdr* c = CMSG_FIRSTHDR(&m); c; c = CMSG_NXTHDR(&m, c)) {
    if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
    size_t k = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    for (size_t j = 0; j < k && n_received < kWireFdCount; ++j)
      std::memcpy(&received[n_received++], CMSG_DATA(c) + j * sizeof(int), sizeof(int));
  }
  FdMask mask = 0;
  if ((m.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) || static_cast<size_t>(n) < sizeof mask) _exit(125);
  std::memcpy(&mask, buf, sizeof mask);
  int fds[kWireFdCount];
  int next = 0;
  for (int i = 0; i < kWireFdCount; ++i)
    fds[i] = (mask & (1u << i)) && next < n_received ? received[next++] : -1;
  DecodedPlan d;
  if (!decode_plan(buf + sizeof mask, static_cast<size_t>(n) - sizeof mask, fds, 0, kInit,
                   pointers, kMaxWirePointers, d)) {
    refuse_bind(fds[kWireStatus], kStageClone);
  }
  d.plan.v1_joined = true;
  d.plan.view_prepared = true;
  d.plan.view_parked = parked;
  // The parked v1 clones are bound in v1_procs_paths order: the spec's leaf must be the one
  // this process prepared (the pool adopts that leaf, so any difference is a bug, refused).
  bool same_leaf = d.plan.n_v1_procs_paths == prep.n_v1_procs_paths;
  for (int i = 0; same_leaf && i < prep.n_v1_procs_paths; ++i)
    same_leaf = std::strcmp(d.plan.v1_procs_paths[i], prep.v1_procs_paths[i]) == 0;
  if (!same_leaf) {
    refuse_bind(fds[kWireStatus], kStageSys);
  }
  // From here on, a cold cell's setup from its root view on (place_fds closes the socket with
  // the rest, but for the parked leaf clones).
  cell_setup_main(d.plan);
}

base::Result<std::unique_ptr<PreparedCell>> PreparedCell::start(
    const CgroupTree& tree, const std::string& name, bool want_pidfd,
    const std::vector<std::string>& host_paths) {
  Spawner* spawner = Spawner::get();
  if (!spawner) return base::value_error("warm pool", "no spawner process to prepare cells");
  std::unique_ptr<PreparedCell> p(new PreparedCell());
  p->name_ = name;
  auto leaf = tree.create_leaf(name, CgroupLimits{});
  if (!leaf) return std::move(leaf).error();
  p->leaf_.emplace(std::move(*leaf));
  int sv[2];
  if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, sv) != 0)
    return base::sys_error("socketpair", "prepared cell " + name);
  p->sock_ = base::Fd(sv[0]);
  base::Fd theirs(sv[1]);
  // The prepared process's end blocks (its recvmsg waits for the spec).
  int fl = ::fcntl(theirs.get(), F_GETFL);
  if (fl < 0 || ::fcntl(theirs.get(), F_SETFL, fl & ~O_NONBLOCK) != 0)
    return base::sys_error("fcntl", "prepared cell " + name);

  LaunchOptions o;
  o.argv = {"prepared"};
  o.workdir = "/";
  o.hostname = name;
  o.cgroup_v2_dirfd = p->leaf_->v2_dirfd();
  o.want_pidfd = want_pidfd;
  o.host_paths = host_paths;
  for (const auto& path : p->leaf_->v1_procs_paths()) o.v1_procs_paths.push_back(path.c_str());
  WirePlan wire;
  std::string why;
  // The socket rides in the status slot: the spawner writes the pid there (kSpawned).
  if (!encode_plan(o, {"prepared"}, -1, -1, theirs.get(), wire, &why))
    return base::value_error("warm pool", why);
  bool not_sent = false;
  auto spawned = spawner->spawn(wire, want_pidfd, name.c_str(), &not_sent, /*prepare=*/true);
  if (!spawned) return std::move(spawned).error();
  if (spawned->pid > 0) p->pid_ = spawned->pid;
  p->pidfd_ = std::move(spawned->pidfd);
  p->leaf_->close_v2_dir();
  return p;
}

PreparedCell::State PreparedCell::poll() {
  if (gone_ || bound_) return State::kGone;
  for (;;) {
    char buf[sizeof(ChildStatus)];
    ssize_t n = ::recv(sock_.get(), buf, sizeof buf, MSG_DONTWAIT);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
    if (n <= 0) {  // EOF: the process is gone (or never was)
      gone_ = true;
      break;
    }
    if (n == 1) {
      if (buf[0] == kReady) ready_ = true;
      else gone_ = true;
    } else if (static_cast<size_t>(n) == sizeof(ChildStatus)) {
      ChildStatus s;
      std::memcpy(&s, buf, sizeof s);
      if (s.kind == ChildStatus::kSpawned && s.wait_status > 0) pid_ = s.wait_status;
      else gone_ = true;  // the clone failed
    }
  }
  if (gone_) return State::kGone;
  return ready_ && pid_ > 0 ? State::kReady : State::kStarting;
}

base::Result<Launched> PreparedCell::bind(const LaunchOptions& o) {
  if (poll() != State::kReady) return base::value_error("warm pool", "prepared cell " + name_ + " is not ready");
  // Its root view was built at the preparation, without the host paths a spec opens from the
  // host's root (the pool sends such specs cold: WarmPool::refusal).
  if (!o.input_host_paths.empty() || !o.resolv_conf.empty() || !o.broker_dir.empty())
    return base::value_error("warm pool", "prepared cell " + name_ +
                                              " cannot take spec.inputs, a resolv.conf or a broker");
  // The spec's limits, written here before its plan is sent: the prepared process no longer
  // sees the host's /sys/fs/cgroup paths (its root is the view), and the limits are in place
  // before anything of the spec runs, as a cold cell's are.
  for (size_t i = 0; i < o.knob_paths.size(); ++i)
    if (auto r = base::write_file_at(AT_FDCWD, o.knob_paths[i], o.knob_values[i]); !r)
      return std::move(r).error().context(std::string("write the cgroup limits (") +
                                          o.knob_values[i] + ")");
  LaunchOptions plan = o;
  plan.knob_paths.clear();
  plan.knob_values.clear();
  auto pipes = CellPipes::make();
  if (!pipes) return std::move(pipes).error();
  WirePlan wire;
  std::string why;
  if (!encode_plan(plan, cell_init_args(plan), pipes->out.write.get(), pipes->err.write.get(),
                   pipes->status.write.get(), wire, &why))
    return base::value_error("launch", why);
  if (wire.bytes.size() > kMaxWirePlan || wire.pointers > kMaxWirePointers)
    return base::value_error("warm pool", "the cell's plan is too large for a prepared cell");
  wire.fds[kWireCgroup] = -1;  // it is in its leaf already
  const ssize_t sent = send_plan(sock_.get(), wire, 0);
  if (sent < 0) return base::sys_error("bind the spec to prepared cell", name_);
  bound_ = true;
  sock_.reset();
  // The prepared process holds its copies of the write ends now (SCM_RIGHTS).
  return pipes->keep(pid_, std::move(pidfd_), o.io);
}

void PreparedCell::reap() {
  if (pid_ <= 0 && !gone_ && sock_) {
    // The spawner's kSpawned record may still be on its way: wait a little for it.
    for (int i = 0; i < 200 && pid_ <= 0 && !gone_; ++i) {
      pollfd p{sock_.get(), POLLIN, 0};
      ::poll(&p, 1, 10);
      (void)poll();
    }
  }
  sock_.reset();  // a prepared process waiting for its spec reads EOF and exits
  if (leaf_) (void)leaf_->kill();
  if (pid_ > 0) {
    siginfo_t info{};
    while (::waitid(P_PID, static_cast<id_t>(pid_), &info, WEXITED) != 0 && errno == EINTR) {
    }
    pid_ = 0;
  }
  if (!leaf_) return;
  // The leaf refuses rmdir (EBUSY) while its last process is still leaving.
  for (int i = 0; i < 200 && !leaf_->removed(); ++i) {
    if (leaf_->remove().ok()) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
}

PreparedCell::~PreparedCell() {
  if (!bound_) reap();
  // Bound: the leaf was adopted by the cell (adopt_leaf emptied this one) and the process is
  // the cell's, reaped by it.
}

}  // namespace cellos::cells
