#include "cells/cell_lock.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

namespace cellos::cells {

base::Result<CellLock> CellLock::acquire(const std::string& state_dir, const std::string& id) {
  const std::string dir = state_dir + "/cells";
  const std::string path = dir + "/" + id + ".lock";
  for (;;) {
    auto fd = base::open_at(AT_FDCWD, path, O_RDWR | O_CREAT | O_NOFOLLOW, 0600);
    if (!fd && fd.error().err == ENOENT) {
      // The first cell of a state dir makes the directory; later ones skip the mkdir.
      CELLOS_TRY(base::make_dirs(dir));
      fd = base::open_at(AT_FDCWD, path, O_RDWR | O_CREAT | O_NOFOLLOW, 0600);
    }
    if (!fd) return std::move(fd).error();
    if (::flock(fd->get(), LOCK_EX | LOCK_NB) != 0) {
      if (errno == EWOULDBLOCK)
        return base::Error{EWOULDBLOCK, "flock", "\"" + path + "\"",
                           "cell id " + id + " is already running", {}};
      return base::sys_error("flock", "\"" + path + "\"");
    }
    // The previous holder unlinks the file when it is done; if that happened between our open
    // and our flock we hold a lock on a dead inode, so check we locked the file at the path.
    struct stat held{}, now{};
    if (::fstat(fd->get(), &held) == 0 && ::stat(path.c_str(), &now) == 0 &&
        held.st_ino == now.st_ino && held.st_dev == now.st_dev)
      return CellLock(std::move(*fd), path);
  }
}

CellLock::~CellLock() {
  // Unlink while still holding the lock, so no one can lock this inode after we let go.
  if (fd_) ::unlink(path_.c_str());
}

}  // namespace cellos::cells
