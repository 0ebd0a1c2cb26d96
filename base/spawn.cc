#include "base/spawn.h"

#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

namespace cellos::base {

Result<SpawnedHelper> spawn_helper(const std::string& path, const posix_spawn_file_actions_t& fa,
                                   char* const* argv, char* const* envp, const std::string& what) {
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  sigset_t none, defaults;
  sigemptyset(&none);
  sigemptyset(&defaults);
  for (int s : {SIGINT, SIGTERM, SIGPIPE}) sigaddset(&defaults, s);
  posix_spawnattr_setsigmask(&attr, &none);
  posix_spawnattr_setsigdefault(&attr, &defaults);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
  pid_t pid = -1;
  const int rc = posix_spawn(&pid, path.c_str(), &fa, &attr, argv, envp);
  posix_spawnattr_destroy(&attr);
  if (rc != 0) return sys_error("posix_spawn", what + " \"" + path + "\"", rc);
  const int pfd = static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
  if (pfd < 0) {
    const Error e = sys_error("pidfd_open", what + " pid " + std::to_string(pid));
    ::kill(pid, SIGKILL);
    ::waitpid(pid, nullptr, 0);
    return e;
  }
  return SpawnedHelper{pid, Fd(pfd)};
}

}  // namespace cellos::base
