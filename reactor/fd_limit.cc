#include "reactor/fd_limit.h"

#include <fcntl.h>
#include <sys/resource.h>

#include <algorithm>
#include <cstdlib>

#include "base/fd.h"

namespace cellos::reactor {

// Each running cell holds about eight descriptors (pidfd, three pipes, two log files, its lock
// and cgroup dir): thousands of cells need far more than the usual 1024 or 20000. Root may
// raise the hard limit up to fs.nr_open.
void raise_fd_limit() {
  rlim_t want = 1 << 20;
  if (auto nr = base::read_file_at(AT_FDCWD, "/proc/sys/fs/nr_open"); nr.ok())
    want = std::min<rlim_t>(want, std::strtoull(nr->c_str(), nullptr, 10));
  rlimit cur{};
  if (::getrlimit(RLIMIT_NOFILE, &cur) != 0 || cur.rlim_cur >= want) return;
  rlimit next{want, std::max(want, cur.rlim_max)};
  if (::setrlimit(RLIMIT_NOFILE, &next) != 0) {
    next = {cur.rlim_max, cur.rlim_max};  // not root enough: the soft limit up to the hard one
    (void)::setrlimit(RLIMIT_NOFILE, &next);
  }
}

}  // namespace cellos::reactor
