// UidLease and the root view's path list, on a lease file of the test's own (the real one is
// host-wide: tests/integration/isolation_test.cc uses it through real cells).
#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <optional>
#include <string>
#include <vector>

#include "cells/root_view.h"
#include "cells/uid_pool.h"

using cellos::cells::UidLease;
using cellos::cells::UidRange;

namespace {

// A lease file unique to this test case, removed with its directory at the end. Unique per case
// because UidLease keeps each lease file open for the life of the process.
struct LeaseDir {
  static inline int n = 0;
  std::string dir =
      "/var/tmp/cellos-uidtest-" + std::to_string(::getpid()) + "-" + std::to_string(++n);
  std::string file = dir + "/sub/uids.lock";  // sub/ does not exist: acquire creates it
  ~LeaseDir() {
    ::unlink(file.c_str());
    ::rmdir((dir + "/sub").c_str());
    ::rmdir(dir.c_str());
  }
};

}  // namespace

TEST_CASE("concurrent leases get different uids of the range, each with the gid of its number",
          "[uid]") {
  LeaseDir d;
  auto a = UidLease::acquire(UidRange{300000, 300001}, d.file);
  auto b = UidLease::acquire(UidRange{300000, 300001}, d.file);
  REQUIRE(a.ok());
  REQUIRE(b.ok());
  CHECK(a->uid() != b->uid());
  for (const auto* l : {&*a, &*b}) {
    CHECK(l->uid() >= 300000);
    CHECK(l->uid() <= 300001);
    CHECK(l->gid() == l->uid());
  }
  auto c = UidLease::acquire(UidRange{300000, 300001}, d.file);
  REQUIRE_FALSE(c.ok());
  CHECK(c.error().err == EAGAIN);
  CHECK_THAT(c.error().message(), Catch::Contains("no free uid in policy.uid_range 300000-300001"));
}

TEST_CASE("a released uid is leased again", "[uid]") {
  LeaseDir d;
  std::optional<UidLease> first;
  {
    auto l = UidLease::acquire(UidRange{300005, 300005}, d.file);
    REQUIRE(l.ok());
    first.emplace(std::move(*l));
  }
  UidLease moved = std::move(*first);  // the lease moves with its holder
  first.reset();
  CHECK_FALSE(UidLease::acquire(UidRange{300005, 300005}, d.file).ok());
  { UidLease gone = std::move(moved); }
  auto again = UidLease::acquire(UidRange{300005, 300005}, d.file);
  REQUIRE(again.ok());
  CHECK(again->uid() == 300005u);
}

TEST_CASE("a uid another process holds is skipped until that process is gone", "[uid]") {
  LeaseDir d;
  { REQUIRE(UidLease::acquire(UidRange{300010, 300010}, d.file).ok()); }  // creates the file
  int ready[2], done[2];
  REQUIRE(::pipe(ready) == 0);
  REQUIRE(::pipe(done) == 0);
  pid_t child = ::fork();
  REQUIRE(child >= 0);
  if (child == 0) {
    ::close(ready[0]);
    ::close(done[1]);
    // Its own open file description, as another reactor process has.
    int fd = ::open(d.file.c_str(), O_RDWR);
    struct flock fl{};
    fl.l_type = F_WRLCK;
    fl.l_whence = SEEK_SET;
    fl.l_start = 300010;
    fl.l_len = 1;
    char c = ::fcntl(fd, F_OFD_SETLK, &fl) == 0 ? 'y' : 'n';
    (void)!::write(ready[1], &c, 1);
    (void)!::read(done[0], &c, 1);
    ::_exit(0);
  }
  ::close(ready[1]);
  ::close(done[0]);
  char c = 0;
  const bool locked = ::read(ready[0], &c, 1) == 1 && c == 'y';
  const bool refused = !UidLease::acquire(UidRange{300010, 300010}, d.file).ok();
  ::close(done[1]);  // the child's read returns, and it exits
  ::waitpid(child, nullptr, 0);
  ::close(ready[0]);
  CHECK(locked);
  CHECK(refused);
  CHECK(UidLease::acquire(UidRange{300010, 300010}, d.file).ok());
}

TEST_CASE("the root view holds host_paths and argv0 prefixes, sorted, none inside another",
          "[uid][view]") {
  cellos::cells::PolicyConfig p;
  p.host_paths = {"/usr", "/etc", "/usr/lib", "/usr-x", "/opt"};
  p.argv0_allow_prefixes = {"/usr/bin", "/var/tmp/ci/bin", "/tmp/x", "/"};
  CHECK(cellos::cells::root_view_paths(p) ==
        std::vector<std::string>{"/etc", "/opt", "/usr", "/usr-x", "/var/tmp/ci/bin"});
}

TEST_CASE("the reactor's own files are masked only where the view holds them", "[uid][view]") {
  cellos::cells::Config c;
  c.host.state_dir = "/var/lib/cellos-reactor";
  c.secrets.dir = "/etc/cellos/secrets";
  c.events.signing_key = "/opt/cellos/host.key";
  c.events.jsonl = "/srv/events.jsonl";
  CHECK(cellos::cells::masked_paths(c) ==
        std::vector<std::string>{"/etc/cellos/secrets", "/opt/cellos/host.key"});
}
