#include "cells/cell_init.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

namespace cellos::cells {
namespace {

// Generated at build time by embed_gen from the cellos-init binary: defines kCellInitImage.
#include "cell_init_image.inc"

// Not in Debian 12's kernel headers: ask explicitly for an executable memfd, so hosts that set
// vm.memfd_noexec=1 (6.3+) still let the reactor exec its own init.
constexpr unsigned kMfdExec = 0x0010U;

base::Result<base::Fd> make_init_memfd() {
  int fd = ::memfd_create(kCellInitName, MFD_CLOEXEC | MFD_ALLOW_SEALING | kMfdExec);
  if (fd < 0 && errno == EINVAL) fd = ::memfd_create(kCellInitName, MFD_CLOEXEC | MFD_ALLOW_SEALING);
  if (fd < 0) return base::sys_error("memfd_create", kCellInitName);
  base::Fd f(fd);
  size_t done = 0;
  while (done < sizeof kCellInitImage) {
    ssize_t n = ::write(fd, kCellInitImage + done, sizeof kCellInitImage - done);
    if (n <= 0) return base::sys_error("write", "memfd cellos-init");
    done += static_cast<size_t>(n);
  }
  // Sealed: nothing in this process or a cell can change the program every cell's pid 1 runs.
  if (::fcntl(fd, F_ADD_SEALS, F_SEAL_WRITE | F_SEAL_GROW | F_SEAL_SHRINK | F_SEAL_SEAL) != 0)
    return base::sys_error("fcntl(F_ADD_SEALS)", "memfd cellos-init");
  return f;
}

}  // namespace

const base::Result<base::Fd>& cell_init_binary() {
  static const base::Result<base::Fd> fd = make_init_memfd();
  return fd;
}

}  // namespace cellos::cells
