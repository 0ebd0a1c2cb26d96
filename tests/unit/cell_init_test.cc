// The embedded cell init: sealed, executable, and refusing to run outside a cell.
#include "cells/cell_init.h"

#include <fcntl.h>
#include <sys/stat.h>

#include <catch2/catch.hpp>
#include <string>

#include "tests/support/test_support.h"

using cellos::cells::cell_init_binary;

TEST_CASE("the cell init is a sealed memfd no one can change", "[init]") {
  const auto& init = cell_init_binary();
  REQUIRE(init.ok());
  int seals = ::fcntl(init->get(), F_GET_SEALS);
  CHECK((seals & F_SEAL_WRITE) != 0);
  CHECK((seals & F_SEAL_GROW) != 0);
  CHECK((seals & F_SEAL_SHRINK) != 0);
  CHECK((seals & F_SEAL_SEAL) != 0);
  struct stat st{};
  REQUIRE(::fstat(init->get(), &st) == 0);
  CHECK(st.st_size > 0);
  CHECK(st.st_size < 64 * 1024);  // freestanding: a few pages, not a libc program
  CHECK(&cell_init_binary() == &init);  // made once per process
}

TEST_CASE("the cell init refuses to run by hand, without its status pipe", "[init]") {
  const auto& init = cell_init_binary();
  REQUIRE(init.ok());
  // Through /proc/<pid>/fd of this process, so the child execs exactly the embedded image.
  auto r = cellos::test::run_process({"/proc/" + std::to_string(::getpid()) + "/fd/" +
                                      std::to_string(init->get())});
  CHECK(r.status == 125);
  CHECK(r.err == "cellos-init: started by cellos-reactor inside a cell, not by hand\n");
}
