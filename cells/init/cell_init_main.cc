// cellos-init: pid 1 of every cell. A freestanding program (no libc, no C++ runtime), because it
// is exec'd once per cell: a static glibc program spent milliseconds per exec here in start-up
// work (CPU feature probing, relocations, stdio) that an init has no use for, and thousands of
// cells each keep one init resident. The reactor embeds this binary and execs it from a sealed
// memfd (see cells/cell_init.h for the protocol).
//
//   cellos-init UID GID CAP_LAST_CAP -- PROGRAM ARGV...   (environment: the command's, exactly)
//   fd 0-2: the command's stdio; fd 3: the status pipe (ChildStatus records)
#include <asm/unistd.h>
#include <linux/capability.h>
#include <linux/fcntl.h>
#include <linux/filter.h>
#include <linux/prctl.h>
#include <linux/sched.h>
#include <linux/seccomp.h>
#include <linux/securebits.h>
#include <linux/signal.h>
#include <linux/wait.h>

#include <cstddef>
#include <cstdint>

#include "cells/child_status.h"

#if !defined(__x86_64__)
#error "cellos-init is written for x86-64 (raw syscalls and the entry point)"
#endif

namespace {

using cellos::cells::ChildStatus;
namespace stage = cellos::cells;

#include "default_seccomp.inc"

constexpr int kStatusFd = 3;
constexpr long kEnoent = 2;

long sys(long n, long a = 0, long b = 0, long c = 0, long d = 0, long e = 0) {
  register long r10 asm("r10") = d;
  register long r8 asm("r8") = e;
  long ret;
  asm volatile("syscall"
               : "=a"(ret)
               : "a"(n), "D"(a), "S"(b), "d"(c), "r"(r10), "r"(r8)
               : "rcx", "r11", "memory");
  return ret;
}

[[noreturn]] void exit_now(int code) {
  for (;;) sys(__NR_exit_group, code);
}

void report(int32_t kind, int32_t stage_id = 0, long err = 0, int32_t wait_status = 0) {
  ChildStatus s;
  s.kind = kind;
  s.stage = stage_id;
  s.err = static_cast<int32_t>(err);
  s.wait_status = wait_status;
  sys(__NR_write, kStatusFd, reinterpret_cast<long>(&s), sizeof s);
}

bool parse_number(const char* s, unsigned long max, unsigned long* out) {
  if (s == nullptr || *s == '\0') return false;
  unsigned long v = 0;
  for (; *s != '\0'; ++s) {
    if (*s < '0' || *s > '9') return false;
    v = v * 10 + static_cast<unsigned long>(*s - '0');
    if (v > max) return false;
  }
  *out = v;
  return true;
}

bool equal(const char* a, const char* b) {
  while (*a != '\0' && *a == *b) ++a, ++b;
  return *a == *b;
}

// Shared by init and the command it spawns with CLONE_VM|CLONE_VFORK: init sleeps until the
// command has exec'd or exited, then reads what the command left here.
struct Command {
  unsigned long uid = 0, gid = 0, cap_last_cap = 0;
  const char* program = nullptr;  // the file exec'd: argv[0], or a bare argv[0] resolved
  char** argv = nullptr;
  char** envp = nullptr;
  int32_t stage = stage::kStageSpawn;
  long err = 0;  // a negative errno once something failed
  // "--nested" instead of "--": the command of a nested cell (docs/nested.md) stays root of
  // the cell's user namespace with its capabilities there (it runs a reactor), under the nested
  // seccomp filter; no_new_privs as for every command.
  bool nested = false;
};

// Everything between the spawn and the command's execve, in the order the kernel needs it.
long become_command(Command& c) {
  sigset_t none = 0;
  sys(__NR_rt_sigprocmask, SIG_SETMASK, reinterpret_cast<long>(&none), 0, sizeof none);
  // The reactor ignores SIGPIPE, and an ignored disposition survives exec: a build expects the
  // default (a writer to a closed pipe dies).
  struct {
    long handler, flags, restorer;
    sigset_t mask;
  } dfl{0, 0, 0, 0};  // SIG_DFL
  sys(__NR_rt_sigaction, SIGPIPE, reinterpret_cast<long>(&dfl), 0, sizeof(sigset_t));
  sys(__NR_umask, 022);

  long r;
  if (!c.nested) {
    c.stage = stage::kStageCapabilities;
    // Keep-caps off and locked, no ambient raise, and root gets no capabilities back on exec.
    if ((r = sys(__NR_prctl, PR_SET_SECUREBITS,
                 SECBIT_KEEP_CAPS_LOCKED | SECBIT_NO_SETUID_FIXUP_LOCKED | SECBIT_NOROOT |
                     SECBIT_NOROOT_LOCKED | SECBIT_NO_CAP_AMBIENT_RAISE |
                     SECBIT_NO_CAP_AMBIENT_RAISE_LOCKED)) < 0)
      return r;
    for (unsigned long cap = 0; cap <= c.cap_last_cap; ++cap)
      if ((r = sys(__NR_prctl, PR_CAPBSET_DROP, static_cast<long>(cap))) < 0 && r != -22) return r;
    if ((r = sys(__NR_prctl, PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL)) < 0) return r;

    c.stage = stage::kStageCredentials;
    if ((r = sys(__NR_setgroups, 0, 0)) < 0) return r;
    if ((r = sys(__NR_setresgid, c.gid, c.gid, c.gid)) < 0) return r;
    // With keep-caps off, leaving uid 0 clears the permitted and effective sets.
    if ((r = sys(__NR_setresuid, c.uid, c.uid, c.uid)) < 0) return r;

    c.stage = stage::kStageCapabilities;
    __user_cap_header_struct hdr{_LINUX_CAPABILITY_VERSION_3, 0};
    __user_cap_data_struct data[2]{};  // inheritable too: setuid does not clear it
    if ((r = sys(__NR_capset, reinterpret_cast<long>(&hdr), reinterpret_cast<long>(data))) < 0)
      return r;
  }

  c.stage = stage::kStageNoNewPrivs;
  if ((r = sys(__NR_prctl, PR_SET_NO_NEW_PRIVS, 1)) < 0) return r;

  c.stage = stage::kStageSeccomp;
  {
    sock_fprog prog{static_cast<unsigned short>(sizeof kDefaultFilter / sizeof kDefaultFilter[0]),
                    const_cast<sock_filter*>(kDefaultFilter)};
    if (c.nested)
      prog = {static_cast<unsigned short>(sizeof kNestedFilter / sizeof kNestedFilter[0]),
              const_cast<sock_filter*>(kNestedFilter)};
    if ((r = sys(__NR_seccomp, SECCOMP_SET_MODE_FILTER, 0, reinterpret_cast<long>(&prog))) < 0)
      return r;
  }

  c.stage = stage::kStageExec;
  return sys(__NR_execve, reinterpret_cast<long>(c.program), reinterpret_cast<long>(c.argv),
             reinterpret_cast<long>(c.envp));
}

extern "C" [[noreturn]] void command_entry(Command* c) {
  c->err = become_command(*c);
  exit_now(127);
}

// clone(CLONE_VM|CLONE_VFORK) onto a stack of its own: the child starts in command_entry and
// never returns through init's frames.
long spawn(Command* c, char* stack_top) {
  long ret;
  register long r10 asm("r10") = 0;  // child_tid
  register long r8 asm("r8") = 0;    // tls
  register Command* arg asm("r12") = c;
  asm volatile(
      "syscall\n\t"
      "test %%rax, %%rax\n\t"
      "jnz 1f\n\t"
      "xor %%ebp, %%ebp\n\t"
      "mov %%r12, %%rdi\n\t"
      "call command_entry\n\t"
      "ud2\n\t"
      "1:\n\t"
      : "=a"(ret)
      : "a"(__NR_clone), "D"(CLONE_VM | CLONE_VFORK | SIGCHLD), "S"(stack_top), "d"(0),
        "r"(r10), "r"(r8), "r"(arg)
      : "rcx", "r11", "memory");
  return ret;
}

alignas(16) char g_command_stack[32 * 1024];

int init_main(int argc, char** argv, char** envp) {
  Command c;
  if (argc < 7 || !parse_number(argv[1], 0xfffffffeUL, &c.uid) ||
      !parse_number(argv[2], 0xfffffffeUL, &c.gid) || !parse_number(argv[3], 63, &c.cap_last_cap) ||
      !(equal(argv[4], "--") || equal(argv[4], "--nested")) || sys(__NR_fcntl, kStatusFd, F_GETFD) < 0) {
    static const char kUsage[] = "cellos-init: started by cellos-reactor inside a cell, not by hand\n";
    sys(__NR_write, 2, reinterpret_cast<long>(kUsage), sizeof kUsage - 1);
    return 125;
  }
  sys(__NR_fcntl, kStatusFd, F_SETFD, FD_CLOEXEC);  // the command must not inherit it
  c.nested = equal(argv[4], "--nested");
  c.program = argv[5];
  c.argv = argv + 6;
  c.envp = envp;

  long cmd = spawn(&c, g_command_stack + sizeof g_command_stack);
  if (cmd < 0) {
    report(ChildStatus::kSetupFailed, stage::kStageSpawn, -cmd);
    return 125;
  }
  if (c.err < 0) {
    sys(__NR_wait4, cmd, 0, 0, 0);
    const bool exec = c.stage == stage::kStageExec;
    report(exec ? ChildStatus::kExecFailed : ChildStatus::kSetupFailed, c.stage, -c.err);
    return exec ? (c.err == -kEnoent ? 127 : 126) : 125;
  }
  report(ChildStatus::kStarted);
  // The pipes now belong to the command: their EOF must mean the command's side closed them.
  sys(__NR_close, 0);
  sys(__NR_close, 1);
  sys(__NR_close, 2);
  // Reap everything (orphans are reparented here) until the command itself exits. Leaving then
  // takes the pid namespace down: whatever the command left running dies with it.
  for (;;) {
    int status = 0;
    long r = sys(__NR_wait4, -1, reinterpret_cast<long>(&status), __WALL, 0);
    if (r == -4) continue;  // EINTR
    if (r == cmd) {
      report(ChildStatus::kExited, 0, 0, status);
      return 0;
    }
    if (r < 0) {
      report(ChildStatus::kSetupFailed, stage::kStageSpawn, -r);
      return 125;
    }
  }
}

}  // namespace

// The compiler may emit calls to these for struct copies and zeroing.
extern "C" void* memset(void* d, int c, size_t n) {
  auto* p = static_cast<unsigned char*>(d);
  while (n-- > 0) *p++ = static_cast<unsigned char>(c);
  return d;
}
extern "C" void* memcpy(void* d, const void* s, size_t n) {
  auto* o = static_cast<unsigned char*>(d);
  auto* i = static_cast<const unsigned char*>(s);
  while (n-- > 0) *o++ = *i++;
  return d;
}

extern "C" [[noreturn]] void init_start(long* sp) {
  int argc = static_cast<int>(sp[0]);
  char** argv = reinterpret_cast<char**>(sp + 1);
  exit_now(init_main(argc, argv, argv + argc + 1));
}

// The kernel enters with the stack holding argc, argv..., NULL, envp..., NULL.
asm(".text\n"
    ".global _start\n"
    "_start:\n"
    "  xor %rbp, %rbp\n"
    "  mov %rsp, %rdi\n"
    "  and $-16, %rsp\n"
    "  call init_start\n"
    "  ud2\n");
