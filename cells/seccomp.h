// The default seccomp filter every cell's command runs under.
//
// The policy is compiled with libseccomp at build time (seccomp_gen runs
// build_default_seccomp_program and writes the classic-BPF program out as a C++ array), and the
// reactor embeds it: compiling it at run time cost 1-4 ms of every `run` on our CI machines.
// The child loads it with seccomp(2) straight from that memory, between clone and exec.
#pragma once

#include <linux/filter.h>

#include <vector>

#include "base/result.h"

namespace cellos::cells {

class SeccompProgram {
 public:
  explicit SeccompProgram(std::vector<sock_filter> insns) : insns_(std::move(insns)) { fix(); }
  // Valid as long as this object lives; what prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER) takes.
  const sock_fprog* prog() const { return &prog_; }
  size_t size() const { return insns_.size(); }

  SeccompProgram(SeccompProgram&& o) noexcept : insns_(std::move(o.insns_)) {
    fix();
    o.fix();  // the moved-from program must not point into our buffer
  }
  SeccompProgram& operator=(SeccompProgram&&) = delete;
  SeccompProgram(const SeccompProgram&) = delete;

 private:
  void fix() {
    prog_.len = static_cast<unsigned short>(insns_.size());
    prog_.filter = insns_.data();
  }
  std::vector<sock_filter> insns_;
  sock_fprog prog_{};
};

// In the spirit of Docker's default profile: everything a build needs is allowed; what lets a
// process reach past its cell (kernel modules, kexec, reboot, mount and the new mount API,
// namespaces, ptrace and cross-process memory access, bpf, perf_event_open, the kernel keyring,
// io_uring, userfaultfd, clock and time setting, swap, quotas, handle-based opens, tty input
// injection) fails with EPERM. Sockets only of the families a build needs (unix, inet, inet6,
// netlink route): others fail with EAFNOSUPPORT, other netlink protocols with EPROTONOSUPPORT,
// socketpair of anything but AF_UNIX with EAFNOSUPPORT. clone3 fails with ENOSYS, so libc falls back to clone, whose
// flags the filter can inspect. Syscalls of other architectures (x32, i386) kill the process.
const base::Result<SeccompProgram>& default_seccomp_program();

// The same policy compiled now with libseccomp (in cellos_seccomp_build, which only the build
// step and tests link). Tests check it matches the embedded program instruction for instruction.
base::Result<SeccompProgram> build_default_seccomp_program();

// A nested cell's command (spec.run.backend "nested", docs/nested.md): the default policy with
// what a reactor needs lifted: mount and the new mount API, pivot_root, unshare, setns, the
// namespace flags of clone, clone3 (CLONE_INTO_CGROUP), sethostname, io_uring, and netlink's
// NETLINK_NETFILTER beside NETLINK_ROUTE. Still refused: modules, kexec, reboot, bpf,
// perf_event_open, ptrace and cross-process memory, keyrings, clocks, swap, quotas, handle-based
// opens, userfaultfd, fanotify, tty injection. Embedded as kNestedFilter for the init.
base::Result<SeccompProgram> build_nested_seccomp_program();
const base::Result<SeccompProgram>& nested_seccomp_program();

}  // namespace cellos::cells
