#include "cells/launcher.h"

#include <fcntl.h>
#include <linux/sched.h>
#include <sched.h>
#include <signal.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "cells/cell_init.h"
#include "cells/child_setup.h"
#include "cells/spawn_plan.h"
#include "cells/spawner.h"

namespace cellos::cells {
namespace {

int cap_last_cap() {
  // Read once: the value is fixed for the kernel's lifetime.
  static const int value = [] {
    auto text = base::read_file_at(AT_FDCWD, "/proc/sys/kernel/cap_last_cap");
    return text.ok() ? std::atoi(text->c_str()) : 63;
  }();
  return value;
}

int setup_entry(void* plan) { cell_setup_main(*static_cast<const ChildPlan*>(plan)); }

// The child's stack. One is enough: with CLONE_VFORK the reactor's only thread waits until the
// child has exec'd, so no two children ever run on it at once.
alignas(64) char g_child_stack[128 * 1024];

#if defined(__x86_64__)
// clone3 with a new stack needs the child to start in a function of its own: the child must not
// return through the caller's frames, which belong to the (waiting) parent. glibc 2.36 offers no
// clone3 wrapper, so this is the few instructions posix_spawn's own clone3 path uses.
long clone3_call(clone_args* args, int (*fn)(void*), void* arg) {
  long ret;
  register void* fn_reg asm("r12") = reinterpret_cast<void*>(fn);
  register void* arg_reg asm("r13") = arg;
  asm volatile(
      "syscall\n\t"
      "test %%rax, %%rax\n\t"
      "jnz 1f\n\t"
      "xor %%ebp, %%ebp\n\t"  // end of the frame chain for debuggers
      "mov %%r13, %%rdi\n\t"
      "call *%%r12\n\t"
      "mov %%eax, %%edi\n\t"
      "mov %[exit], %%eax\n\t"
      "syscall\n\t"
      "ud2\n\t"
      "1:\n\t"
      : "=a"(ret)
      : "a"(SYS_clone3), "D"(args), "S"(sizeof *args), "r"(fn_reg), "r"(arg_reg),
        [exit] "i"(SYS_exit)
      : "rcx", "r11", "memory");
  return ret;
}
constexpr bool kShareMemory = true;
#else
// Elsewhere: a fork-like clone3 (the child gets a copy of the reactor's memory).
long clone3_call(clone_args* args, int (*fn)(void*), void* arg) {
  long pid = ::syscall(SYS_clone3, args, sizeof *args);
  if (pid == 0) _exit(fn(arg));
  return pid < 0 ? -errno : pid;
}
constexpr bool kShareMemory = false;
#endif

// Fork-like (the child gets a copy of the caller's memory, so the plan it reads stays valid
// while the caller goes on): a nested cell, whose child waits for its maps.
long clone3_fork(clone_args* args, ChildPlan* plan) {
  long pid = ::syscall(SYS_clone3, args, sizeof *args);
  if (pid == 0) cell_setup_main(*plan);
  return pid < 0 ? -errno : pid;
}

// The cell cloned by the caller itself (no spawner): the child copies the caller's descriptor
// table and closes what it did not ask for, which grows with the caller's open descriptors.
base::Result<Spawned> clone_here(const WirePlan& wire, int devnull, int init_fd,
                                 const std::string& hostname) {
  std::vector<const char*> pointers(wire.pointers);
  DecodedPlan d;
  if (!decode_plan(wire.bytes.data(), wire.bytes.size(), wire.fds, devnull, init_fd,
                   pointers.data(), pointers.size(), d))
    return base::value_error("launch", "the cell's plan does not decode");
  int pidfd = -1;
  clone_args args{};
  args.flags = CLONE_INTO_CGROUP | CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWIPC | CLONE_NEWUTS;
  // A nested cell: every namespace above is owned by its new user namespace.
  if (d.plan.nested) args.flags |= CLONE_NEWUSER;
  if (d.want_pidfd) args.flags |= CLONE_PIDFD;
  // A prepared namespace is joined by the child (setns), which needs no flag here.
  if (d.plan.netns_fd < 0) args.flags |= CLONE_NEWNET;
  // A nested child waits for its maps: the caller must go on, so no CLONE_VFORK.
  if (kShareMemory && !d.plan.nested) {
    args.flags |= CLONE_VM | CLONE_VFORK;
    args.stack = reinterpret_cast<uint64_t>(g_child_stack);
    args.stack_size = sizeof g_child_stack;
  }
  args.pidfd = reinterpret_cast<uint64_t>(&pidfd);
  args.exit_signal = SIGCHLD;
  args.cgroup = static_cast<uint64_t>(d.cgroup_fd);
  long pid = d.plan.nested ? clone3_fork(&args, &d.plan) : clone3_call(&args, setup_entry, &d.plan);
  if (pid < 0) return base::sys_error("clone3", "cell " + hostname, static_cast<int>(-pid));
  Spawned s;
  s.pid = static_cast<pid_t>(pid);
  if (d.want_pidfd) s.pidfd = base::Fd(pidfd);
  return s;
}

}  // namespace

std::vector<std::string> cell_init_args(const LaunchOptions& o) {
  std::vector<std::string> init_args{kCellInitName, std::to_string(o.uid), std::to_string(o.gid),
                                     std::to_string(cap_last_cap()), o.nested ? "--nested" : "--",
                                     o.program.empty() ? o.argv.at(0) : o.program};
  init_args.insert(init_args.end(), o.argv.begin(), o.argv.end());
  return init_args;
}

base::Result<CellPipes> CellPipes::make() {
  CellPipes p;
  for (base::Pipe* pipe : {&p.out, &p.err, &p.status}) {
    auto made = base::make_pipe();
    if (!made) return std::move(made).error();
    *pipe = std::move(*made);
  }
  return p;
}

Launched CellPipes::keep(pid_t pid, base::Fd pidfd, base::IoPort* io) {
  if (io) {
    // Before the reactor waits for anything, so the readers still see EOF when the cell ends.
    io->close(out.write.release());
    io->close(err.write.release());
    io->close(status.write.release());
  }
  Launched l;
  l.pid = pid;
  l.pidfd = std::move(pidfd);
  l.stdout_read = std::move(out.read);
  l.stderr_read = std::move(err.read);
  l.status_read = std::move(status.read);
  // The write ends now live only in the cell, so EOF on them means the cell let go.
  return l;
}

base::Result<Launched> launch(const LaunchOptions& o) {
  const auto& init = cell_init_binary();
  if (!init.ok()) return init.error();
  auto pipes = CellPipes::make();
  if (!pipes) return std::move(pipes).error();
  // Every cell's stdin: opened once, shared (reads of /dev/null carry no state).
  static const base::Result<base::Fd> devnull = base::open_at(AT_FDCWD, "/dev/null", O_RDONLY);
  if (!devnull.ok()) return devnull.error();

  // Everything the child reads is built here, before clone: the child only makes syscalls.
  const std::vector<std::string> init_args = cell_init_args(o);
  WirePlan wire;
  std::string why;
  if (!encode_plan(o, init_args, pipes->out.write.get(), pipes->err.write.get(),
                   pipes->status.write.get(), wire, &why))
    return base::value_error("launch", why);

  pid_t pid = -1;  // 0 once sent to the spawner without a pidfd: the pid comes later
  base::Fd pidfd;
  // The spawner (spawner.h) clones the cell from a small descriptor table; a plan too large
  // for its buffers, or a host where it could not start, takes the launcher's own clone.
  Spawner* spawner = !o.nested && wire.bytes.size() <= kMaxWirePlan && wire.pointers <= kMaxWirePointers
                         ? Spawner::get()
                         : nullptr;
  if (spawner) {
    bool not_sent = false;
    auto spawned = spawner->spawn(wire, o.want_pidfd, o.hostname.c_str(), &not_sent);
    if (spawned) {
      pid = spawned->pid;
      pidfd = std::move(spawned->pidfd);
    } else if (!not_sent) {
      return std::move(spawned).error();
    }
  }
  if (pid < 0) {
    auto local = clone_here(wire, devnull->get(), init->get(), o.hostname);
    if (!local) return std::move(local).error();
    pid = local->pid;
    pidfd = std::move(local->pidfd);
  }

  // The spawner (or the clone) holds its own copies of the write ends now.
  return pipes->keep(pid, std::move(pidfd), o.io);
}

}  // namespace cellos::cells
