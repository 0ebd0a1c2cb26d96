#include "cells/launcher.h"

#include <fcntl.h>
#include <linux/sched.h>
#include <sched.h>
#include <signal.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "cells/cell_init.h"
#include "cells/child_setup.h"
#include "cells/rootless.h"

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

std::vector<const char*> c_strings(const std::vector<std::string>& v) {
  std::vector<const char*> out;
  out.reserve(v.size() + 1);
  for (const auto& s : v) out.push_back(s.c_str());
  out.push_back(nullptr);
  return out;
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

}  // namespace

base::Result<Launched> launch(const LaunchOptions& o) {
  const auto& init = cell_init_binary();
  if (!init.ok()) return init.error();
  auto out = base::make_pipe();
  if (!out) return std::move(out).error();
  auto err = base::make_pipe();
  if (!err) return std::move(err).error();
  auto status = base::make_pipe();
  if (!status) return std::move(status).error();
  // Every cell's stdin: opened once, shared (reads of /dev/null carry no state).
  static const base::Result<base::Fd> devnull = base::open_at(AT_FDCWD, "/dev/null", O_RDONLY);
  if (!devnull.ok()) return devnull.error();

  // Everything the child reads is built here, before clone: the child only makes syscalls.
  std::vector<std::string> init_args{kCellInitName, std::to_string(o.uid), std::to_string(o.gid),
                                     std::to_string(cap_last_cap()), "--",
                                     o.program.empty() ? o.argv.at(0) : o.program};
  init_args.insert(init_args.end(), o.argv.begin(), o.argv.end());
  const auto init_argv = c_strings(init_args);
  const auto envp = c_strings(o.env);
  ChildPlan plan;
  plan.init_argv = init_argv.data();
  plan.envp = envp.data();
  plan.workdir = o.workdir.c_str();
  plan.hostname = o.hostname.c_str();
  plan.uid = o.uid;
  plan.gid = o.gid;
  plan.stdin_fd = devnull->get();
  plan.stdout_fd = out->write.get();
  plan.stderr_fd = err->write.get();
  plan.status_fd = status->write.get();
  plan.init_fd = init->get();
  if (o.knob_paths.size() != o.knob_values.size())
    return base::value_error("launch", "cgroup limit paths and values differ in number");
  plan.knob_paths = o.knob_paths.data();
  plan.knob_values = o.knob_values.data();
  plan.n_knobs = static_cast<int>(o.knob_paths.size());
  plan.v1_procs_paths = o.v1_procs_paths.data();
  plan.n_v1_procs_paths = static_cast<int>(o.v1_procs_paths.size());

  plan.netns_fd = o.netns_fd;
  const auto host_paths = c_strings(o.host_paths);
  plan.host_paths = host_paths.data();
  plan.n_host_paths = static_cast<int>(o.host_paths.size());
  const auto masked_paths = c_strings(o.masked_paths);
  plan.masked_paths = masked_paths.data();
  plan.n_masked_paths = static_cast<int>(o.masked_paths.size());
  plan.broker_dir = o.broker_dir.empty() ? nullptr : o.broker_dir.c_str();
  if (o.input_host_paths.size() != o.input_paths.size() || o.input_paths.size() > kMaxPlanInputs)
    return base::value_error("launch", "inputs: host and cell paths differ in number, or too many");
  const auto input_host_paths = c_strings(o.input_host_paths);
  const auto input_paths = c_strings(o.input_paths);
  plan.input_host_paths = input_host_paths.data();
  plan.input_paths = input_paths.data();
  plan.n_inputs = static_cast<int>(o.input_paths.size());
  if ((o.workspace_mount_fd < 0) != (o.tmp_mount_fd < 0))
    return base::value_error("launch", "held workspace and /tmp come together");
  plan.workspace_mount_fd = o.workspace_mount_fd;
  plan.tmp_mount_fd = o.tmp_mount_fd;
  plan.resolv_conf = o.resolv_conf.empty() ? nullptr : o.resolv_conf.c_str();
  plan.rootless = running_rootless();

  int pidfd = -1;
  clone_args args{};
  args.flags = CLONE_INTO_CGROUP | CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWIPC | CLONE_NEWUTS;
  if (o.want_pidfd) args.flags |= CLONE_PIDFD;
  // A prepared namespace is joined by the child (setns), which needs no flag here.
  if (o.netns_fd < 0) args.flags |= CLONE_NEWNET;
  if (kShareMemory) {
    args.flags |= CLONE_VM | CLONE_VFORK;
    args.stack = reinterpret_cast<uint64_t>(g_child_stack);
    args.stack_size = sizeof g_child_stack;
  }
  args.pidfd = reinterpret_cast<uint64_t>(&pidfd);
  args.exit_signal = SIGCHLD;
  args.cgroup = static_cast<uint64_t>(o.cgroup_v2_dirfd);
  long pid = clone3_call(&args, setup_entry, &plan);
  if (pid < 0) return base::sys_error("clone3", "cell " + o.hostname, static_cast<int>(-pid));

  Launched l;
  l.pid = static_cast<pid_t>(pid);
  if (o.want_pidfd) l.pidfd = base::Fd(pidfd);
  l.stdout_read = std::move(out->read);
  l.stderr_read = std::move(err->read);
  l.status_read = std::move(status->read);
  // The write ends now live only in the cell, so EOF on them means the cell let go.
  return l;
}

}  // namespace cellos::cells
