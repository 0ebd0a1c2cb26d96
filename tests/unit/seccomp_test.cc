// The default seccomp filter, proved in real children: each probe forks, loads the filter the
// way a cell's child does (no_new_privs, then PR_SET_SECCOMP) and reports what the kernel
// answered. Refusals are checked against the same probe run without the filter, so a probe
// that fails for another reason (not root, missing kernel feature) skips instead of passing.
#include <catch2/catch.hpp>

#include <fcntl.h>
#include <linux/filter.h>
#include <linux/sched.h>  // struct clone_args
#include <linux/seccomp.h>
#include <sched.h>
#include <signal.h>
#include <linux/netlink.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/mount.h>
#include <sys/personality.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <functional>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "cells/seccomp.h"

namespace {

using cellos::cells::default_seccomp_program;

// What a probe saw: the syscall's return value and errno.
struct Outcome {
  long ret = 0;
  int err = 0;
};

Outcome result_of(long ret) { return {ret, ret < 0 ? errno : 0}; }

enum class Filter { off, on };

// What the parent learns from one probe child.
struct Probe {
  bool reported = false;  // the child got as far as writing its Outcome
  Outcome out;
  int status = 0;         // from waitpid
};

constexpr int kNoNewPrivsFailed = 90;
constexpr int kSeccompFailed = 91;

std::string errno_name(int err) {
  const char* name = strerrorname_np(err);
  return name != nullptr ? name : std::to_string(err);
}

std::string describe(const Probe& p) {
  std::string s = p.reported ? "ret=" + std::to_string(p.out.ret) + " errno=" +
                                   (p.out.err != 0 ? errno_name(p.out.err) : "0")
                             : "no report";
  if (WIFEXITED(p.status)) s += ", exited " + std::to_string(WEXITSTATUS(p.status));
  if (WIFSIGNALED(p.status)) s += ", killed by " + std::string(sigabbrev_np(WTERMSIG(p.status)));
  return s;
}

// Runs `fn` in a forked child, under the default filter when `filter` is on, and reports.
Probe run_probe(const std::function<Outcome()>& fn, Filter filter) {
  // Built in the parent, before fork, as the launcher does: the child only points prctl at it.
  const auto& program = default_seccomp_program();
  if (!program.ok()) FAIL("default_seccomp_program: " << program.error().message());
  const sock_fprog* prog = program.value().prog();

  int fds[2];
  REQUIRE(::pipe2(fds, O_CLOEXEC) == 0);
  pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    // Catch2's fatal-signal handlers would print a whole test report from the child; a probe
    // that dies by a signal must just die, for the parent to read it from waitpid.
    for (int sig : {SIGSEGV, SIGILL, SIGFPE, SIGABRT, SIGBUS, SIGSYS, SIGTERM, SIGINT})
      ::signal(sig, SIG_DFL);
    ::close(fds[0]);
    if (filter == Filter::on) {
      if (::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) ::_exit(kNoNewPrivsFailed);
      if (::prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, prog) != 0) ::_exit(kSeccompFailed);
    }
    Outcome out = fn();
    ssize_t n = ::write(fds[1], &out, sizeof out);
    ::_exit(n == static_cast<ssize_t>(sizeof out) ? 0 : 1);
  }
  ::close(fds[1]);
  Probe p;
  ssize_t n;
  do n = ::read(fds[0], &p.out, sizeof p.out);
  while (n < 0 && errno == EINTR);
  ::close(fds[0]);
  p.reported = n == static_cast<ssize_t>(sizeof p.out);
  pid_t w;
  do w = ::waitpid(pid, &p.status, 0);
  while (w < 0 && errno == EINTR);
  REQUIRE(w == pid);
  if (WIFEXITED(p.status) && WEXITSTATUS(p.status) == kNoNewPrivsFailed)
    FAIL("child could not set no_new_privs");
  if (WIFEXITED(p.status) && WEXITSTATUS(p.status) == kSeccompFailed)
    FAIL("child could not load the filter with prctl(PR_SET_SECCOMP)");
  return p;
}

// The probe fails with `err` under the filter, and it is the filter's doing: without it the
// same probe must not fail that way (else the test proves nothing here and skips).
void check_refused(const std::function<Outcome()>& fn, int err) {
  Probe bare = run_probe(fn, Filter::off);
  if (bare.reported && bare.out.ret == -1 && bare.out.err == err) {
    WARN("SKIPPED: the probe already fails with " << errno_name(err)
                                                  << " without the filter (not root?)");
    return;
  }
  Probe filtered = run_probe(fn, Filter::on);
  INFO("without the filter: " << describe(bare));
  INFO("under the filter: " << describe(filtered));
  REQUIRE(filtered.reported);
  CHECK(filtered.out.ret == -1);
  CHECK(errno_name(filtered.out.err) == errno_name(err));
}

// The probe runs to completion under the filter and returns what it returned.
Outcome run_allowed(const std::function<Outcome()>& fn) {
  Probe p = run_probe(fn, Filter::on);
  INFO("under the filter: " << describe(p));
  REQUIRE(p.reported);
  REQUIRE(WIFEXITED(p.status));
  return p.out;
}

// Starts a child with a raw clone(flags) and reaps it; the child exits 7 at once. Used both for
// refused namespace flags and for the plain clone that must keep working.
Outcome raw_clone(unsigned long flags) {
  // No new stack: without CLONE_VM the child runs on its own copy of ours, as with fork.
  long r = ::syscall(SYS_clone, flags, 0L, nullptr, nullptr, 0L);
  if (r == 0) ::_exit(7);
  Outcome out = result_of(r);
  if (r > 0) {
    int status = 0;
    if (::waitpid(static_cast<pid_t>(r), &status, 0) != r) return {-2, errno};
    out.ret = WIFEXITED(status) ? WEXITSTATUS(status) : -3;
  }
  return out;
}

// Runs the syscall-killing probes: did the child die by SIGSYS?
bool killed_by_sigsys(const Probe& p) {
  return WIFSIGNALED(p.status) && WTERMSIG(p.status) == SIGSYS;
}

}  // namespace

TEST_CASE("the default filter is built once and fits the kernel's program limit", "[seccomp]") {
  const auto& a = default_seccomp_program();
  const auto& b = default_seccomp_program();
  if (!a.ok()) FAIL(a.error().message());
  CHECK(&a == &b);
  CHECK(a.value().size() > 0);
  CHECK(a.value().size() <= BPF_MAXINSNS);
  CHECK(a.value().prog()->len == a.value().size());
}

TEST_CASE("the embedded filter is exactly what libseccomp builds from the policy now",
          "[seccomp]") {
  const auto& embedded = default_seccomp_program();
  auto fresh = cellos::cells::build_default_seccomp_program();
  REQUIRE(embedded.ok());
  REQUIRE(fresh.ok());
  REQUIRE(embedded->size() == fresh->size());
  for (size_t i = 0; i < fresh->size(); ++i) {
    const sock_filter& a = embedded->prog()->filter[i];
    const sock_filter& b = fresh->prog()->filter[i];
    INFO("instruction " << i);
    CHECK(a.code == b.code);
    CHECK(a.jt == b.jt);
    CHECK(a.jf == b.jf);
    CHECK(a.k == b.k);
  }
}

TEST_CASE("the default filter refuses socket families other than unix, inet, inet6 and netlink",
          "[seccomp]") {
  SECTION("AF_VSOCK") {
    check_refused([] { return result_of(::socket(AF_VSOCK, SOCK_STREAM, 0)); }, EAFNOSUPPORT);
  }
  SECTION("AF_PACKET") {
    check_refused([] { return result_of(::socket(AF_PACKET, SOCK_RAW, 0)); }, EAFNOSUPPORT);
  }
  SECTION("AF_VSOCK with bit 32 set, which the kernel's int truncates away") {
    check_refused(
        [] { return result_of(::syscall(SYS_socket, (1L << 32) | AF_VSOCK, SOCK_STREAM, 0)); },
        EAFNOSUPPORT);
  }
  SECTION("socketpair of AF_INET") {
    // Without the filter the kernel answers EOPNOTSUPP.
    int sv[2];
    check_refused([&sv] { return result_of(::socketpair(AF_INET, SOCK_STREAM, 0, sv)); },
                  EAFNOSUPPORT);
  }
}

// Its own case: a kernel without AF_ALG already answers EAFNOSUPPORT, and the skip must not
// hide the other families' results.
TEST_CASE("the default filter refuses AF_ALG, the kernel crypto API", "[seccomp]") {
  check_refused([] { return result_of(::socket(AF_ALG, SOCK_SEQPACKET, 0)); }, EAFNOSUPPORT);
}

TEST_CASE("the default filter refuses netlink protocols other than NETLINK_ROUTE",
          "[seccomp]") {
  check_refused([] { return result_of(::socket(AF_NETLINK, SOCK_DGRAM, NETLINK_KOBJECT_UEVENT)); },
                EPROTONOSUPPORT);
}

TEST_CASE("the default filter lets unix, inet, netlink-route sockets and unix pairs through",
          "[seccomp]") {
  for (auto [family, type, proto] : {std::tuple{AF_UNIX, SOCK_STREAM, 0}, {AF_INET, SOCK_DGRAM, 0},
                                     {AF_NETLINK, SOCK_RAW, NETLINK_ROUTE}}) {
    Outcome o = run_allowed([=] { return result_of(::socket(family, type, proto)); });
    CHECK(o.ret >= 0);
  }
  int sv[2];
  CHECK(run_allowed([&sv] { return result_of(::socketpair(AF_UNIX, SOCK_STREAM, 0, sv)); }).ret == 0);
}

TEST_CASE("the default filter refuses unshare with EPERM", "[seccomp]") {
  check_refused([] { return result_of(::unshare(CLONE_NEWNS)); }, EPERM);
}

TEST_CASE("the default filter refuses mount with EPERM", "[seccomp]") {
  // A path that does not exist: should the filter fail to refuse, the kernel answers ENOENT
  // and the host's mount table is never touched.
  check_refused(
      [] {
        return result_of(
            ::mount("none", "/nonexistent-cellos-seccomp-test", "tmpfs", 0, nullptr));
      },
      EPERM);
}

TEST_CASE("the default filter refuses the new mount API with EPERM", "[seccomp]") {
  check_refused([] { return result_of(::syscall(SYS_fsopen, "tmpfs", 0)); }, EPERM);
}

TEST_CASE("the default filter refuses bpf with EPERM", "[seccomp]") {
  // A null attr: without the filter the kernel answers EFAULT.
  check_refused([] { return result_of(::syscall(SYS_bpf, 5 /* BPF_PROG_LOAD */, nullptr, 0)); },
                EPERM);
}

TEST_CASE("the default filter refuses keyctl with EPERM", "[seccomp]") {
  // KEYCTL_GET_KEYRING_ID(KEY_SPEC_SESSION_KEYRING, create=0): harmless, normally succeeds.
  check_refused([] { return result_of(::syscall(SYS_keyctl, 0, -3, 0)); }, EPERM);
}

TEST_CASE("the default filter refuses ptrace with EPERM", "[seccomp]") {
  check_refused([] { return result_of(::ptrace(PTRACE_TRACEME, 0, nullptr, nullptr)); }, EPERM);
}

TEST_CASE("the default filter refuses io_uring_setup with EPERM", "[seccomp]") {
  // A null params pointer: without the filter the kernel answers EFAULT.
  check_refused([] { return result_of(::syscall(SYS_io_uring_setup, 1, nullptr)); }, EPERM);
}

TEST_CASE("the default filter answers clone3 with ENOSYS so glibc falls back to clone",
          "[seccomp]") {
  check_refused(
      [] {
        clone_args args{};
        args.exit_signal = SIGCHLD;
        long r = ::syscall(SYS_clone3, &args, sizeof args);
        if (r == 0) ::_exit(0);  // only reached when the filter let clone3 through
        Outcome out = result_of(r);
        if (r > 0) ::waitpid(static_cast<pid_t>(r), nullptr, 0);
        return out;
      },
      ENOSYS);
}

TEST_CASE("the default filter refuses clone with any namespace flag with EPERM", "[seccomp]") {
  // CLONE_NEWTIME is not here: for clone(2) its bit lies in the exit-signal byte, so only
  // clone3 (refused whole) or unshare (refused) can ask for a time namespace.
  const unsigned long flag = GENERATE(as<unsigned long>{}, CLONE_NEWNS, CLONE_NEWUTS,
                                      CLONE_NEWIPC, CLONE_NEWUSER, CLONE_NEWPID,
                                      CLONE_NEWNET, CLONE_NEWCGROUP);
  INFO("flag 0x" << std::hex << flag);
  check_refused([flag] { return raw_clone(SIGCHLD | flag); }, EPERM);
}

// Raw syscall: glibc's personality() truncates its argument to 32 bits, the filter sees 64.
long raw_personality(uint64_t persona) { return ::syscall(SYS_personality, persona); }

// Personas the filter must refuse: each bit alone, all bits but one, and the hardening-off
// flags by name; everything but 0, PER_LINUX32, UNAME26, both, and the 0xffffffff query.
std::vector<uint64_t> refused_personas() {
  std::vector<uint64_t> v = {ADDR_NO_RANDOMIZE, READ_IMPLIES_EXEC, ADDR_COMPAT_LAYOUT,
                             MMAP_PAGE_ZERO,    PER_BSD,           PER_LINUX32 | 0x1,
                             0xfffffffe,        0x1ffffffffULL,    ~0ULL};
  for (int i = 0; i < 64; ++i) {
    uint64_t bit = 1ULL << i;
    if (bit != PER_LINUX32 && bit != UNAME26) v.push_back(bit);
    if (i < 32) v.push_back(0xffffffffULL & ~bit);
  }
  return v;
}

TEST_CASE("the default filter refuses personality changes other than linux32 and uname26",
          "[seccomp]") {
  SECTION("ADDR_NO_RANDOMIZE is refused with EPERM") {
    check_refused([] { return result_of(raw_personality(ADDR_NO_RANDOMIZE)); }, EPERM);
  }
  SECTION("every other persona outside the allowed five is refused with EPERM") {
    static const std::vector<uint64_t> personas = refused_personas();
    // Reports how many personas were not refused, and the index of the first one.
    Outcome out = run_allowed([] {
      Outcome o{0, -1};
      for (size_t i = 0; i < personas.size(); ++i) {
        if (raw_personality(personas[i]) == -1 && errno == EPERM) continue;
        if (o.ret++ == 0) o.err = static_cast<int>(i);
      }
      return o;
    });
    INFO("first persona let through: 0x" << std::hex
                                         << (out.err >= 0 ? personas[out.err] : 0));
    CHECK(out.ret == 0);
  }
  SECTION("the query and the allowed personalities pass") {
    Outcome out = run_allowed([] {
      for (uint64_t p : {0xffffffffULL, 0x8ULL, 0x20000ULL, 0x20008ULL, 0x0ULL})
        if (raw_personality(p) < 0) return Outcome{static_cast<long>(p), errno};
      return Outcome{0, 0};
    });
    INFO("refused persona 0x" << std::hex << out.ret);
    CHECK(out.err == 0);
  }
}

TEST_CASE("the default filter refuses TIOCSTI even with high bits set in the request",
          "[seccomp]") {
  // /dev/null is no tty: without the filter the kernel answers ENOTTY.
  SECTION("TIOCSTI") {
    check_refused(
        [] {
          int fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
          char c = 'x';
          return result_of(::ioctl(fd, TIOCSTI, &c));
        },
        EPERM);
  }
  SECTION("TIOCSTI with bit 32 set, which the kernel truncates away") {
    check_refused(
        [] {
          int fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
          char c = 'x';
          return result_of(::syscall(SYS_ioctl, fd, (1UL << 32) | TIOCSTI, &c));
        },
        EPERM);
  }
  SECTION("TIOCLINUX") {
    check_refused(
        [] {
          int fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
          char sub = 6;
          return result_of(::ioctl(fd, TIOCLINUX, &sub));
        },
        EPERM);
  }
  SECTION("other ioctls pass") {
    Outcome out = run_allowed([] {
      int p[2];
      if (::pipe(p) != 0) return result_of(-1);
      int avail = -1;
      if (::write(p[1], "abc", 3) != 3) return result_of(-1);
      if (::ioctl(p[0], FIONREAD, &avail) != 0) return result_of(-1);
      return result_of(avail);
    });
    CHECK(out.err == 0);
    CHECK(out.ret == 3);
  }
}

TEST_CASE("the default filter lets getpid and /proc reads through and reports mode 2",
          "[seccomp]") {
  Outcome out = run_allowed([] {
    if (::getpid() <= 0) return Outcome{-10, 0};
    int fd = ::open("/proc/self/status", O_RDONLY | O_CLOEXEC);
    if (fd < 0) return result_of(-1);
    char buf[8192];
    size_t len = 0;
    for (ssize_t n; (n = ::read(fd, buf + len, sizeof buf - 1 - len)) > 0;) len += n;
    buf[len] = '\0';
    ::close(fd);
    // Seccomp: 2 is SECCOMP_MODE_FILTER; NoNewPrivs: 1 is what made loading it legal.
    if (std::strstr(buf, "\nSeccomp:\t2\n") == nullptr) return Outcome{-11, 0};
    if (std::strstr(buf, "\nNoNewPrivs:\t1\n") == nullptr) return Outcome{-12, 0};
    return Outcome{0, 0};
  });
  INFO("-10: getpid failed, -11: no \"Seccomp:\\t2\", -12: no \"NoNewPrivs:\\t1\"");
  CHECK(out.ret == 0);
  CHECK(out.err == 0);
}

TEST_CASE("the default filter lets fork and waitpid work", "[seccomp]") {
  // glibc's fork is clone(2) without namespace flags.
  Outcome out = run_allowed([] {
    pid_t pid = ::fork();
    if (pid == 0) ::_exit(7);
    if (pid < 0) return result_of(-1);
    int status = 0;
    if (::waitpid(pid, &status, 0) != pid) return result_of(-1);
    return Outcome{WIFEXITED(status) ? WEXITSTATUS(status) : -3, 0};
  });
  CHECK(out.err == 0);
  CHECK(out.ret == 7);
}

TEST_CASE("the default filter lets a plain clone(SIGCHLD) work", "[seccomp]") {
  Outcome out = run_allowed([] { return raw_clone(SIGCHLD); });
  CHECK(out.err == 0);
  CHECK(out.ret == 7);
}

TEST_CASE("the default filter lets threads start through glibc's clone3 fallback",
          "[seccomp]") {
  Outcome out = run_allowed([] {
    int ran = 0;
    std::thread t([&ran] { ran = 1; });
    t.join();
    return Outcome{ran, 0};
  });
  CHECK(out.ret == 1);
}

TEST_CASE("the default filter kills the process on an x32 syscall", "[seccomp]") {
  // __X32_SYSCALL_BIT | __NR_getpid: same audit arch as x86_64, but another ABI. Without the
  // filter a kernel without x32 support answers ENOSYS; with it the process must die.
  auto probe = [] { return result_of(::syscall(0x40000000L | SYS_getpid)); };
  Probe bare = run_probe(probe, Filter::off);
  Probe filtered = run_probe(probe, Filter::on);
  INFO("without the filter: " << describe(bare));
  INFO("under the filter: " << describe(filtered));
  CHECK_FALSE(killed_by_sigsys(bare));
  CHECK(killed_by_sigsys(filtered));
}

#if defined(__x86_64__)
TEST_CASE("the default filter kills the process on an i386 syscall", "[seccomp]") {
  auto probe = [] {
    long r;
    // int 0x80 enters the i386 ABI (AUDIT_ARCH_I386); 20 is the i386 getpid.
    asm volatile("int $0x80" : "=a"(r) : "a"(20L) : "memory", "r8", "r9", "r10", "r11");
    return r < 0 ? Outcome{-1, static_cast<int>(-r)} : Outcome{r, 0};
  };
  Probe bare = run_probe(probe, Filter::off);
  if (!bare.reported || bare.out.ret <= 0) {
    WARN("SKIPPED: int 0x80 is not available on this kernel or VM (without the filter: "
         << describe(bare) << ")");
    return;
  }
  Probe filtered = run_probe(probe, Filter::on);
  INFO("under the filter: " << describe(filtered));
  CHECK(killed_by_sigsys(filtered));
}
#endif
