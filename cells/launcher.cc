#include "cells/launcher.h"

#include <fcntl.h>
#include <linux/sched.h>
#include <sched.h>
#include <signal.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "cells/child_setup.h"

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

}  // namespace

base::Result<Launched> launch(const LaunchOptions& o) {
  if (o.seccomp == nullptr) return base::value_error("launch", "no seccomp program");
  if (o.v1_procs.size() > 8) return base::value_error("launch", "too many v1 hierarchies");
  auto out = base::make_pipe();
  if (!out) return std::move(out).error();
  auto err = base::make_pipe();
  if (!err) return std::move(err).error();
  auto status = base::make_pipe();
  if (!status) return std::move(status).error();
  // Scripts reopen their output through /dev/stdout (/proc/self/fd/1), which checks the pipe
  // inode's owner and mode: give the cell's uid the pipes it writes to.
  for (int fd : {out->write.get(), err->write.get()})
    if (::fchown(fd, o.uid, o.gid) != 0) return base::sys_error("fchown", "cell output pipe");
  auto devnull = base::open_at(AT_FDCWD, "/dev/null", O_RDONLY);
  if (!devnull) return std::move(devnull).error();

  // Everything the child reads is built here, before clone: the child only makes syscalls.
  const auto argv = c_strings(o.argv);
  const auto envp = c_strings(o.env);
  ChildPlan plan;
  plan.argv = argv.data();
  plan.envp = envp.data();
  plan.workdir = o.workdir.c_str();
  plan.hostname = o.hostname.c_str();
  plan.uid = o.uid;
  plan.gid = o.gid;
  plan.cap_last_cap = cap_last_cap();
  plan.seccomp = o.seccomp->prog();
  plan.stdin_fd = devnull->get();
  plan.stdout_fd = out->write.get();
  plan.stderr_fd = err->write.get();
  plan.status_fd = status->write.get();
  plan.v1_procs = o.v1_procs.data();
  plan.n_v1_procs = static_cast<int>(o.v1_procs.size());

  int pidfd = -1;
  clone_args args{};
  args.flags = CLONE_PIDFD | CLONE_INTO_CGROUP | CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWIPC |
               CLONE_NEWUTS | CLONE_NEWNET;
  args.pidfd = reinterpret_cast<uint64_t>(&pidfd);
  args.exit_signal = SIGCHLD;
  args.cgroup = static_cast<uint64_t>(o.cgroup_v2_dirfd);
  long pid = ::syscall(SYS_clone3, &args, sizeof args);
  if (pid < 0) return base::sys_error("clone3", "cell " + o.hostname);
  if (pid == 0) cell_init_main(plan);  // never returns

  Launched l;
  l.pid = static_cast<pid_t>(pid);
  l.pidfd = base::Fd(pidfd);
  l.stdout_read = std::move(out->read);
  l.stderr_read = std::move(err->read);
  l.status_read = std::move(status->read);
  // The write ends now live only in the cell, so EOF on them means the cell let go.
  return l;
}

}  // namespace cellos::cells
