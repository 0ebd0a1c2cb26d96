// The ring's file work that nobody waits on (close) and its small-file read (three
// linked SQEs on a direct descriptor): what the daemon moved off its own syscalls.
#include <fcntl.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstdio>
#include <fstream>
#include <optional>
#include <string>
#include <vector>

#include "base/fd.h"
#include "base/io.h"
#include "reactor/ring.h"

namespace cellos::reactor {
namespace {

struct Recorder final : base::Completion {
  std::optional<int> res;
  void complete(int r) override { res = r; }
};

std::unique_ptr<Ring> make_ring() {
  auto r = Ring::create(RingOptions{});
  INFO((r.ok() ? std::string() : r.error().message()));
  REQUIRE(r.ok());
  return std::move(r).value();
}

struct TempDir {
  std::string path;
  TempDir() {
    char t[] = "/var/tmp/cellos-test-ringfiles-XXXXXX";
    REQUIRE(::mkdtemp(t) != nullptr);
    path = t;
  }
  ~TempDir() { (void)!std::system(("rm -rf '" + path + "'").c_str()); }
};

TEST_CASE("ring: close(fd) of a pipe's write end gives its reader EOF once submitted", "[ring]") {
  auto ring = make_ring();
  auto p = base::make_pipe();
  REQUIRE(p.ok());
  std::byte buf[8];
  Recorder rd;
  ring->read(p->read.get(), buf, rd);
  ring->close(p->write.release());
  while (!rd.res) REQUIRE(ring->run_once().ok());
  CHECK(*rd.res == 0);
}

TEST_CASE("ring: a close(fd) still queued when the ring is torn down is carried out, not dropped",
          "[ring]") {
  auto p = base::make_pipe();
  REQUIRE(p.ok());
  {
    auto ring = make_ring();
    ring->close(p->write.release());  // queued only: no run_once submits it
    ring->close();
  }
  // The write end is gone: a read sees EOF (0) at once instead of waiting for ever.
  REQUIRE(::fcntl(p->read.get(), F_SETFL, O_NONBLOCK) == 0);
  char c;
  CHECK(::read(p->read.get(), &c, 1) == 0);
}

TEST_CASE("ring: read_small_file gives a file's text, and a missing file's error names it",
          "[ring]") {
  TempDir d;
  const std::string f = d.path + "/knob";
  std::ofstream(f) << "usage_usec 1234\nuser_usec 1000\n";
  auto ring = make_ring();
  std::optional<base::Result<std::string>> got, missing, cut;
  ring->read_small_file(f, 4096, [&](base::Result<std::string> r) { got = std::move(r); });
  ring->read_small_file(d.path + "/absent", 4096,
                        [&](base::Result<std::string> r) { missing = std::move(r); });
  ring->read_small_file(f, 5, [&](base::Result<std::string> r) { cut = std::move(r); });
  // Never from inside the call: the reads complete in a completion round.
  CHECK_FALSE(got.has_value());
  while (!got || !missing || !cut) REQUIRE(ring->run_once().ok());
  REQUIRE(got->ok());
  CHECK(**got == "usage_usec 1234\nuser_usec 1000\n");
  REQUIRE_FALSE(missing->ok());
  CHECK(missing->error().err == ENOENT);
  CHECK(missing->error().message().find("absent") != std::string::npos);
  REQUIRE(cut->ok());
  CHECK(**cut == "usage");
}

TEST_CASE("ring: more small-file reads at once than the ring has file slots all complete, and "
          "the slots come back",
          "[ring]") {
  TempDir d;
  const std::string f = d.path + "/knob";
  std::ofstream(f) << "42\n";
  auto ring = make_ring();
  // More than the 256 slots: the rest are read with plain syscalls, at once.
  for (int round = 0; round < 2; ++round) {
    int ok = 0, calls = 0;
    for (int i = 0; i < 600; ++i)
      ring->read_small_file(f, 4096, [&](base::Result<std::string> r) {
        ++calls;
        if (r.ok() && *r == "42\n") ++ok;
      });
    while (calls < 600) REQUIRE(ring->run_once().ok());
    CHECK(ok == 600);
  }
}

}  // namespace
}  // namespace cellos::reactor
