// Cell locks spread over 64 files (cells/cell_lock.h), so no inode's lock list holds a lock
// per live cell. Looked at from outside, through a description of the test's own (OFD locks
// of another description conflict, so F_OFD_GETLK reports them).
#include <fcntl.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <string>
#include <vector>

#include "cells/cell_lock.h"
#include "tests/support/test_support.h"

using namespace cellos::test;

namespace {

// How many of the state dir's lock files hold at least one lock.
int locked_files(const std::string& dir) {
  int n = 0;
  for (int i = 0; i < 64; ++i) {
    static constexpr char kHex[] = "0123456789abcdef";
    const std::string path = dir + "/cells.lock." + kHex[i / 16] + kHex[i % 16];
    int fd = ::open(path.c_str(), O_RDWR | O_CLOEXEC);
    if (fd < 0) continue;
    struct flock fl{};
    fl.l_type = F_WRLCK;
    fl.l_whence = SEEK_SET;
    fl.l_start = 0;
    fl.l_len = 0;  // the whole file
    if (::fcntl(fd, F_OFD_GETLK, &fl) == 0 && fl.l_type != F_UNLCK) ++n;
    ::close(fd);
  }
  return n;
}

}  // namespace

TEST_CASE("cell locks are spread over 64 files and released with the lock", "[lock]") {
  TempDir dir;
  const std::string state = dir.path() + "/state";
  std::vector<cellos::cells::CellLock> held;
  {
    auto one = cellos::cells::CellLock::acquire(state, "lock-one");
    REQUIRE(one.ok());
    CHECK(locked_files(state) == 1);
    auto again = cellos::cells::CellLock::acquire(state, "lock-one");
    REQUIRE_FALSE(again.ok());
    CHECK(again.error().detail.find("is already running") != std::string::npos);
  }
  CHECK(locked_files(state) == 0);
  for (int i = 0; i < 256; ++i) {
    auto l = cellos::cells::CellLock::acquire(state, "lock-" + std::to_string(i));
    REQUIRE(l.ok());
    held.push_back(std::move(*l));
  }
  // 256 ids over 64 files by a hash: nearly every file gets some (all 64 but for ~1 expected).
  CHECK(locked_files(state) >= 48);
  held.clear();
  CHECK(locked_files(state) == 0);
}
