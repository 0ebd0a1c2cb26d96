// The default filter's policy, compiled with libseccomp. Runs at build time (seccomp_gen) and
// in tests; the reactor itself embeds the result (seccomp.cc) and never links libseccomp.
#include "cells/seccomp.h"

#include <errno.h>
#include <sched.h>  // CLONE_NEW*
#include <seccomp.h>
#include <sys/ioctl.h>  // TIOCSTI, TIOCLINUX
#include <linux/netlink.h>  // NETLINK_ROUTE
#include <sys/mman.h>
#include <sys/socket.h>  // AF_*
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <iterator>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "base/fd.h"

namespace cellos::cells {
namespace {

using base::Error;
using base::Result;

// Syscalls a cell's command never gets, whatever their arguments: each lets a process reach
// past its cell (the host kernel, other processes, the host's clock, mounts or namespaces).
// Docker's default profile refuses the same set to a container without CAP_SYS_ADMIN.
constexpr const char* kRefused[] = {
    // Kernel code and the machine itself.
    "init_module", "finit_module", "delete_module", "kexec_load", "kexec_file_load", "reboot",
    "swapon", "swapoff", "acct", "syslog", "quotactl", "quotactl_fd", "lookup_dcookie",
    "iopl", "ioperm", "uselib", "vhangup", "sethostname", "setdomainname",
    // Mounts and the new mount API: the cell's filesystem view is fixed before exec.
    "mount", "umount2", "pivot_root", "chroot", "fsopen", "fsconfig", "fsmount", "fspick",
    "move_mount", "open_tree", "mount_setattr",
    // Namespaces: a new user namespace hands out capabilities the cell was denied.
    "unshare", "setns",
    // Other processes' memory and file descriptors.
    "ptrace", "process_vm_readv", "process_vm_writev", "kcmp", "pidfd_getfd",
    // Kernel attack surface a build does not need.
    "bpf", "perf_event_open", "userfaultfd", "fanotify_init",
    "io_uring_setup", "io_uring_enter", "io_uring_register",
    // The kernel keyring is not namespaced: keys would be shared with the host.
    "keyctl", "add_key", "request_key",
    // The host's clock.
    "settimeofday", "clock_settime", "clock_adjtime", "adjtimex",
    // Handle-based opens walk around the mount namespace (the "shocker" escape).
    "open_by_handle_at", "name_to_handle_at",
};

// What a nested cell's command may do that other cells' may not (build_nested_seccomp_program):
// it runs a reactor, which mounts, switches its cells' roots (move + chroot: cells/root_switch.h),
// makes namespaces, names hosts, clones into cgroups (clone3) and runs its io_uring. chroot is
// safe to allow here only because the nested cell's own root was made by pivot_root, with
// nothing of the host's root file system left in its namespace to chroot out to. The rest of kRefused (modules, kexec, bpf, perf, ptrace,
// keyrings, clocks, handle opens, ...) stays refused at every depth.
constexpr const char* kNestedAllowed[] = {
    "mount", "umount2", "pivot_root", "chroot", "fsopen", "fsconfig", "fsmount", "fspick", "move_mount",
    "open_tree", "mount_setattr", "unshare", "setns", "sethostname", "io_uring_setup",
    "io_uring_enter", "io_uring_register",
};

bool nested_allowed(const char* name) {
  for (const char* n : kNestedAllowed)
    if (std::string_view(n) == name) return true;
  return false;
}

// clone(2) takes its flags in arg0, so each namespace bit can be refused on its own. clone3(2)
// takes them behind a pointer seccomp cannot read, so clone3 is refused as a whole (below).
// CLONE_NEWTIME (0x80) is not here: in clone(2) that bit lies in the exit-signal byte
// (CSIGNAL), so only clone3 and unshare, both refused, can ask for a time namespace; a rule on
// it would match exit-signal values, not time namespaces.
constexpr uint64_t kNamespaceFlags[] = {
    CLONE_NEWNS,  CLONE_NEWUTS, CLONE_NEWIPC,    CLONE_NEWUSER,
    CLONE_NEWPID, CLONE_NEWNET, CLONE_NEWCGROUP,
};

// personality(2) values a build may set: PER_LINUX (0), the query (0xffffffff) and what old
// 32-bit tools ask for: PER_LINUX32 (0x8), UNAME26 (0x20000) and both. Anything else
// (READ_IMPLIES_EXEC, ADDR_NO_RANDOMIZE, ...) weakens the address-space hardening. So a value
// passes when no bit outside kPersonalityFlags is set, or when it is exactly the query.
constexpr uint64_t kPersonalityFlags = 0x20008;  // PER_LINUX32 | UNAME26
constexpr uint64_t kPersonalityQuery = 0xffffffff;

// ioctl requests that push input into another process's terminal.
constexpr uint64_t kRefusedIoctls[] = {TIOCSTI, TIOCLINUX};

// Socket families a build needs: local sockets, IPv4, IPv6, and netlink for NETLINK_ROUTE only
// (getifaddrs and getaddrinfo's AI_ADDRCONFIG read the cell's own interfaces through it). Every
// other family is refused, because its address space or its kernel code reaches past the cell:
// AF_VSOCK ports are VM-wide, not per network namespace; AF_PACKET sees raw frames;
// AF_NETLINK's other protocols carry host-wide state (NETLINK_KOBJECT_UEVENT broadcasts the
// host's device events, NETLINK_AUDIT the audit log); AF_ALG is the kernel's crypto API, a
// long source of kernel bugs that a build, whose crypto lives in user space, never needs;
// AF_KEY, AF_BLUETOOTH, AF_CAN, AF_RDS, AF_TIPC, AF_XDP, ... are hardware, VPN or cluster
// plumbing. socketpair only ever makes AF_UNIX pairs.
//
// The answer is EAFNOSUPPORT (EPROTONOSUPPORT for a netlink protocol), what a kernel built
// without the family says: programs that probe for a family (IPv6 checks, vsock-aware tools)
// take their fallback path instead of failing hard as they might on EPERM.
constexpr uint64_t kSocketFamilies[] = {AF_UNIX, AF_INET, AF_INET6, AF_NETLINK};
constexpr uint64_t kSocketpairFamilies[] = {AF_UNIX};
constexpr uint64_t kNetlinkProtocols[] = {NETLINK_ROUTE};

// The kernel reads ioctl's request and clone's flags as 32-bit values; the filter sees all 64
// bits. Comparing only the low half keeps `ioctl(fd, (1UL << 32) | TIOCSTI)` from slipping by.
constexpr uint64_t kLow32 = 0xffffffffULL;

// Owns a libseccomp context.
class Ctx {
 public:
  explicit Ctx(scmp_filter_ctx c) : c_(c) {}
  ~Ctx() {
    if (c_ != nullptr) seccomp_release(c_);
  }
  Ctx(const Ctx&) = delete;
  Ctx& operator=(const Ctx&) = delete;
  scmp_filter_ctx get() const { return c_; }

 private:
  scmp_filter_ctx c_;
};

// libseccomp returns -errno.
Error seccomp_error(const char* call, std::string object, int rc) {
  return base::sys_error(call, std::move(object), -rc);
}

// Adds one rule for `name`. A name this libseccomp or this architecture does not know cannot
// be called here either, so it is skipped rather than failing the whole filter.
Result<void> add_rule(scmp_filter_ctx ctx, uint32_t action, const char* name,
                      unsigned arg_cnt = 0, const scmp_arg_cmp* args = nullptr) {
  int nr = seccomp_syscall_resolve_name(name);
  if (nr == __NR_SCMP_ERROR) return base::ok();
  int rc = seccomp_rule_add_array(ctx, action, nr, arg_cnt, args);
  if (rc < 0) return seccomp_error("seccomp_rule_add", name, rc);
  return base::ok();
}

// libseccomp compares an argument at most once per rule (a second comparison is EINVAL), and
// separate rules are ORed. So "arg0 is none of the allowed values" is written as a union of
// single-comparison rules, none of which matches an allowed value:
//   1. arg0 > 0xffffffff;
//   2. for the 30 "other" bits (outside kPersonalityFlags) taken in a cycle b0, b1, ..., b29:
//      b_i set and b_(i+1) clear. A value with some but not all other bits set always has such
//      a neighbouring pair, since a set that is closed under "next in the cycle" is all of them;
//   3. all other bits set: refused unless it is the query, i.e. b0 set and bit 3 or bit 17 clear.
// Allowed values match none: 0, 0x8, 0x20000, 0x20008 have no other bit set; the query has no
// bit clear. 33 rules, evaluated only on the personality branch of the filter.
Result<void> add_personality_rules(scmp_filter_ctx ctx) {
  auto refuse_if = [ctx](scmp_arg_cmp cmp) {
    return add_rule(ctx, SCMP_ACT_ERRNO(EPERM), "personality", 1, &cmp);
  };
  CELLOS_TRY(refuse_if(SCMP_A0(SCMP_CMP_GT, kPersonalityQuery)));

  std::vector<uint64_t> others;
  for (int i = 0; i < 32; ++i)
    if ((kPersonalityFlags & (1ULL << i)) == 0) others.push_back(1ULL << i);
  for (size_t i = 0; i < others.size(); ++i) {
    uint64_t set = others[i];
    uint64_t clear = others[(i + 1) % others.size()];
    CELLOS_TRY(refuse_if(SCMP_A0(SCMP_CMP_MASKED_EQ, set | clear, set)));
  }
  for (int i = 0; i < 32; ++i) {
    uint64_t flag = 1ULL << i;
    if ((kPersonalityFlags & flag) == 0) continue;
    CELLOS_TRY(refuse_if(SCMP_A0(SCMP_CMP_MASKED_EQ, others[0] | flag, others[0])));
  }
  return base::ok();
}

// Refuses `name` (socket or socketpair) unless its family, arg0, is one of `allowed` (sorted).
// A union of single-comparison rules, as for personality: arg0 above the largest allowed value
// (which also catches any value with bits above the low 32 set, the only ones the kernel's int
// truncation could turn into an allowed family), or equal to a value below it that is not
// allowed. Comparing all 64 bits only ever refuses more than the kernel would read.
Result<void> add_family_rules(scmp_filter_ctx ctx, const char* name,
                              std::span<const uint64_t> allowed) {
  const uint32_t refuse = SCMP_ACT_ERRNO(EAFNOSUPPORT);
  const uint64_t top = *std::max_element(allowed.begin(), allowed.end());
  scmp_arg_cmp above = SCMP_A0(SCMP_CMP_GT, top);
  CELLOS_TRY(add_rule(ctx, refuse, name, 1, &above));
  for (uint64_t f = 0; f < top; ++f) {
    if (std::find(allowed.begin(), allowed.end(), f) != allowed.end()) continue;
    scmp_arg_cmp eq = SCMP_A0(SCMP_CMP_EQ, f);
    CELLOS_TRY(add_rule(ctx, refuse, name, 1, &eq));
  }
  return base::ok();
}

Result<void> add_socket_rules(scmp_filter_ctx ctx, bool nested) {
  CELLOS_TRY(add_family_rules(ctx, "socket", kSocketFamilies));
  CELLOS_TRY(add_family_rules(ctx, "socketpair", kSocketpairFamilies));
  if (nested) {
    // A nested reactor also speaks NETLINK_NETFILTER (its cells' nft rulesets and nflog):
    // every other protocol is refused, a union of single-comparison rules as above.
    for (uint64_t proto = 1; proto < 32; ++proto) {
      if (proto == NETLINK_NETFILTER) continue;
      scmp_arg_cmp eq[] = {SCMP_A0(SCMP_CMP_EQ, AF_NETLINK), SCMP_A2(SCMP_CMP_EQ, proto)};
      CELLOS_TRY(add_rule(ctx, SCMP_ACT_ERRNO(EPROTONOSUPPORT), "socket", 2, eq));
    }
    scmp_arg_cmp above[] = {SCMP_A0(SCMP_CMP_EQ, AF_NETLINK), SCMP_A2(SCMP_CMP_GE, 32)};
    return add_rule(ctx, SCMP_ACT_ERRNO(EPROTONOSUPPORT), "socket", 2, above);
  }
  // Netlink: only the allowed protocol (arg2): family == AF_NETLINK and protocol != it, one
  // comparison per argument in one rule.
  static_assert(std::size(kNetlinkProtocols) == 1, "one allowed protocol: one NE rule");
  scmp_arg_cmp netlink[] = {SCMP_A0(SCMP_CMP_EQ, AF_NETLINK),
                            SCMP_A2(SCMP_CMP_NE, kNetlinkProtocols[0])};
  return add_rule(ctx, SCMP_ACT_ERRNO(EPROTONOSUPPORT), "socket", 2, netlink);
}

Result<void> add_rules(scmp_filter_ctx ctx, bool nested) {
  const uint32_t eperm = SCMP_ACT_ERRNO(EPERM);
  for (const char* name : kRefused)
    if (!nested || !nested_allowed(name)) CELLOS_TRY(add_rule(ctx, eperm, name));
  if (nested) {
    // Namespaces and clone3 (CLONE_INTO_CGROUP) are the nested reactor's tools; the rest is the
    // default's.
    CELLOS_TRY(add_personality_rules(ctx));
    CELLOS_TRY(add_socket_rules(ctx, true));
    for (uint64_t req : kRefusedIoctls) {
      scmp_arg_cmp cmp = SCMP_A1(SCMP_CMP_MASKED_EQ, kLow32, req);
      CELLOS_TRY(add_rule(ctx, eperm, "ioctl", 1, &cmp));
    }
    return base::ok();
  }

  // One rule per bit: libseccomp ANDs the conditions of a rule, so "any of these bits set" is
  // an OR of rules, each testing (flags & bit) == bit.
  for (uint64_t bit : kNamespaceFlags) {
    scmp_arg_cmp cmp = SCMP_A0(SCMP_CMP_MASKED_EQ, bit, bit);
    CELLOS_TRY(add_rule(ctx, eperm, "clone", 1, &cmp));
  }
  // ENOSYS, not EPERM: glibc (2.34+) then falls back to clone, whose flags the rules above
  // inspect. EPERM would make pthread_create and posix_spawn fail outright. Docker does the
  // same.
  CELLOS_TRY(add_rule(ctx, SCMP_ACT_ERRNO(ENOSYS), "clone3"));

  CELLOS_TRY(add_personality_rules(ctx));

  CELLOS_TRY(add_socket_rules(ctx, false));

  for (uint64_t req : kRefusedIoctls) {
    scmp_arg_cmp cmp = SCMP_A1(SCMP_CMP_MASKED_EQ, kLow32, req);
    CELLOS_TRY(add_rule(ctx, eperm, "ioctl", 1, &cmp));
  }
  return base::ok();
}

// libseccomp 2.5 has no export to memory: export into a memfd and read it back.
Result<std::vector<sock_filter>> export_bpf(scmp_filter_ctx ctx) {
  base::Fd fd(::memfd_create("cellos-seccomp", MFD_CLOEXEC));
  if (!fd) return base::sys_error("memfd_create", "\"cellos-seccomp\"");
  int rc = seccomp_export_bpf(ctx, fd.get());
  if (rc < 0) return seccomp_error("seccomp_export_bpf", "memfd", rc);

  off_t size = ::lseek(fd.get(), 0, SEEK_END);
  if (size < 0) return base::sys_error("lseek", "memfd");
  if (size == 0 || size % sizeof(sock_filter) != 0)
    return base::value_error("seccomp_export_bpf",
                             "exported " + std::to_string(size) +
                                 " bytes, not a whole number of BPF instructions");
  // A classic-BPF program longer than BPF_MAXINSNS is refused by the kernel at load time;
  // catch it here, where the message can say why.
  if (size / sizeof(sock_filter) > BPF_MAXINSNS)
    return base::value_error("seccomp_export_bpf",
                             std::to_string(size / sizeof(sock_filter)) +
                                 " instructions, more than BPF_MAXINSNS");

  std::vector<sock_filter> insns(size / sizeof(sock_filter));
  char* out = reinterpret_cast<char*>(insns.data());
  size_t done = 0;
  while (done < static_cast<size_t>(size)) {
    ssize_t n = ::pread(fd.get(), out + done, size - done, static_cast<off_t>(done));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return base::sys_error("pread", "memfd");
    if (n == 0) return base::value_error("pread(memfd)", "filter shorter than exported");
    done += static_cast<size_t>(n);
  }
  return insns;
}

}  // namespace

namespace {
base::Result<SeccompProgram> build_program(bool nested) {
  Ctx ctx(seccomp_init(SCMP_ACT_ALLOW));
  if (ctx.get() == nullptr) return base::value_error("seccomp_init", "returned no context");

  // seccomp_init puts only the native architecture in the filter; every other one (i386 via
  // int 0x80, x32 via the x32 syscall bit) then takes the bad-arch action. Killing the whole
  // process, not one thread, leaves nothing half-alive behind.
  int rc = seccomp_attr_set(ctx.get(), SCMP_FLTATR_ACT_BADARCH, SCMP_ACT_KILL_PROCESS);
  if (rc < 0) return seccomp_error("seccomp_attr_set", "SCMP_FLTATR_ACT_BADARCH", rc);
  // NNP only tells seccomp_load to set no_new_privs, and we never call seccomp_load: the child
  // sets no_new_privs itself, then hands the exported program to prctl(PR_SET_SECCOMP).
  rc = seccomp_attr_set(ctx.get(), SCMP_FLTATR_CTL_NNP, 0);
  if (rc < 0) return seccomp_error("seccomp_attr_set", "SCMP_FLTATR_CTL_NNP", rc);
  // Every syscall a build makes runs this filter. Level 2 sorts the syscall checks into a
  // binary tree, so an allowed syscall costs a handful of comparisons instead of one per rule.
  rc = seccomp_attr_set(ctx.get(), SCMP_FLTATR_CTL_OPTIMIZE, 2);
  if (rc < 0) return seccomp_error("seccomp_attr_set", "SCMP_FLTATR_CTL_OPTIMIZE", rc);

  CELLOS_TRY(add_rules(ctx.get(), nested));
  auto insns = export_bpf(ctx.get());
  if (!insns) return std::move(insns).error();
  return SeccompProgram(std::move(insns).value());
}
}  // namespace

base::Result<SeccompProgram> build_default_seccomp_program() { return build_program(false); }

base::Result<SeccompProgram> build_nested_seccomp_program() { return build_program(true); }

}  // namespace cellos::cells
