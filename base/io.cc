#include "base/io.h"

#include <fcntl.h>
#include <unistd.h>

#include "base/fd.h"

namespace cellos::base {

void IoPort::close(int fd) {
  if (fd >= 0) ::close(fd);
}

void IoPort::read_small_file(std::string path, size_t limit, FileText done) {
  done(read_file_at(AT_FDCWD, path, limit));
}

}  // namespace cellos::base
