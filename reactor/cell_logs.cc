#include "reactor/cell_logs.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>

namespace cellos::reactor {

base::Result<void> prepare_cell_logs(const std::string& logdir, bool watched) {
  if (!watched && ::access(logdir.c_str(), F_OK) != 0) {
    if (errno == ENOENT) return base::ok();
    return base::sys_error("access", "\"" + logdir + "\"");
  }
  bool fresh = ::mkdir(logdir.c_str(), 0750) == 0;
  if (!fresh && errno != EEXIST) return base::sys_error("mkdir", "\"" + logdir + "\"");
  for (const char* stream : {"/stdout", "/stderr"}) {
    const std::string path = logdir + stream;
    if (::mknodat(AT_FDCWD, path.c_str(), S_IFREG | 0640, 0) == 0) continue;
    if (errno != EEXIST || ::truncate(path.c_str(), 0) != 0)
      return base::sys_error(errno == EEXIST ? "truncate" : "mknod", "\"" + path + "\"");
  }
  return base::ok();
}

}  // namespace cellos::reactor
