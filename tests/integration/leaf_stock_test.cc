// The daemon's stock of v1 memory leaves (cells/leaf_stock.h), on real cells of a hybrid host:
// a leaf handed to a later cell is named for that cell and carries no limit, counter, process
// or charge of the cell before; the stock is bounded, emptied at the daemon's stop, and a
// killed daemon's stock is removed by the next daemon's recovery.
#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <map>
#include <memory>
#include <sstream>

#include "cells/config.h"
#include "cells/leaf_stock.h"
#include "reactor/host.h"
#include "reactor/supervisor.h"
#include "tests/support/daemon_support.h"
#include "tests/support/run_host.h"
#include "tests/support/test_support.h"

using namespace cellos;
using namespace cellos::test;
using nlohmann::json;

namespace {

bool hybrid_host() { return path_exists("/sys/fs/cgroup/memory/memory.limit_in_bytes"); }

std::string memory_parent(const Fleet& f) { return "/sys/fs/cgroup/memory/cellos/" + f.host_id(); }

std::vector<std::string> stocked(const Fleet& f) {
  std::vector<std::string> out;
  if (DIR* d = ::opendir(memory_parent(f).c_str())) {
    while (dirent* e = ::readdir(d))
      if (std::string(e->d_name).starts_with(".stock-")) out.push_back(e->d_name);
    ::closedir(d);
  }
  std::sort(out.begin(), out.end());
  return out;
}

json event_of(const Fleet& f, const std::string& suffix, const std::string& id) {
  for (const auto& e : events_of(f, suffix))
    if (e.value("subject", "") == id) return e["data"];
  return nullptr;
}

bool destroyed(const Fleet& f, const std::string& id) {
  return !event_of(f, "lifecycle.v1.destroyed", id).is_null();
}

ino_t inode_of(const std::string& path) {
  struct stat st{};
  REQUIRE(::stat(path.c_str(), &st) == 0);
  return st.st_ino;
}

std::vector<std::string> procs_of(const std::string& dir) {
  std::istringstream in(read_text(dir + "/cgroup.procs"));
  std::vector<std::string> pids;
  for (std::string p; in >> p;) pids.push_back(p);
  std::sort(pids.begin(), pids.end());
  return pids;
}

uint64_t number_in(const std::string& path) { return std::stoull(read_text(path)); }

// A file of `mb` MiB whose pages are not in the page cache: the cell that reads it first is
// charged for them.
std::string cold_file(const Fleet& f, int mb) {
  const std::string path = f.dir() + "/bin/cold-data";
  write_text(path, std::string(static_cast<size_t>(mb) << 20, 'x'));
  ::chmod(path.c_str(), 0644);
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  REQUIRE(fd >= 0);
  ::fdatasync(fd);
  REQUIRE(::posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED) == 0);
  ::close(fd);
  return path;
}

}  // namespace

TEST_CASE("a stocked memory leaf given to the next cell is named for it and carries no limit, "
          "counter, process or charge of the cell before",
          "[daemon][stock]") {
  if (!hybrid_host())
    CELLOS_SKIP("no v1 memory hierarchy: this host keeps no stock (cgroup2 cannot rename)");
  Fleet fleet("", "", "cgroup_leaf_stock = 1");
  DaemonProcess daemon(fleet);
  const std::string data = cold_file(fleet, 32);

  // The cell before: 32 MiB of page cache charged to it, then the OOM killer at its 64 MiB.
  const std::string a = unique_id("stock-a");
  json sa = make_spec(a, {"/bin/sh", "-c", "cat " + data + " > /dev/null; " + fleet.probe() +
                                               " alloc 256"});
  sa["spec"]["run"]["limits"] = {{"memoryMaxBytes", 64 << 20}};
  spool(fleet, sa);
  REQUIRE(eventually([&] { return destroyed(fleet, a); }));
  json da = event_of(fleet, "command.v1.completed", a);
  REQUIRE(da.is_object());
  CHECK(da["reason"] == "oom");
  CHECK(da["resources"]["oomKills"].get<uint64_t>() >= 1);
  CHECK(da["resources"]["memoryPeakBytes"].get<uint64_t>() >= 48ull << 20);
  const auto stock = stocked(fleet);
  REQUIRE(stock.size() == 1);
  const std::string stock_dir = memory_parent(fleet) + "/" + stock[0];
  const ino_t leaf_inode = inode_of(stock_dir);
  // Its charge is still there: what the next cell's setup has to reclaim.
  INFO("stocked leaf's usage " << number_in(stock_dir + "/memory.usage_in_bytes"));

  // The next cell, waiting in `sleep 3471` while the host looks at its leaf.
  const std::string b = unique_id("stock-b");
  json sb = make_spec(b, {"/bin/sh", "-c",
                          "s=3471; sleep $s; d=/sys/fs/cgroup/memory; "
                          "echo limit=$(cat $d/memory.limit_in_bytes) "
                          "failcnt=$(cat $d/memory.failcnt); " + fleet.probe() + " alloc 8"});
  sb["spec"]["run"]["limits"] = {{"memoryMaxBytes", 48 << 20}};
  spool(fleet, sb);
  REQUIRE(eventually([&] { return !processes_with("sleep 3471").empty(); }));
  const std::string leaf = memory_parent(fleet) + "/" + b;
  REQUIRE(path_exists(leaf));
  CHECK(inode_of(leaf) == leaf_inode);  // the same cgroup, renamed for the new cell
  CHECK(stocked(fleet).empty());
  // Only the new cell's processes: the same set as its fresh cgroup2 leaf holds.
  const auto procs = procs_of(leaf);
  CHECK_FALSE(procs.empty());
  CHECK(procs == procs_of("/sys/fs/cgroup/unified/cellos/" + fleet.host_id() + "/" + b));
  // The 32 MiB the cell before left in the page cache are no longer charged here.
  CHECK(number_in(leaf + "/memory.usage_in_bytes") < 8ull << 20);
  for (int pid : processes_with("sleep 3471")) ::kill(pid, SIGTERM);

  REQUIRE(eventually([&] { return destroyed(fleet, b); }));
  json db = event_of(fleet, "command.v1.completed", b);
  REQUIRE(db.is_object());
  CHECK(db["reason"] == "exited");
  CHECK(db["exitCode"] == 0);
  CHECK(db["resources"]["oomKills"] == 0);
  // Its own peak: the 8 MiB it allocated, not the 64 MiB of the cell before.
  CHECK(db["resources"]["memoryPeakBytes"].get<uint64_t>() >= 8ull << 20);
  CHECK(db["resources"]["memoryPeakBytes"].get<uint64_t>() < 24ull << 20);
  CHECK(read_text(fleet.state_dir() + "/logs/" + b + "/stdout") ==
        "limit=" + std::to_string(48 << 20) + " failcnt=0\nallocated 8 MiB\n");
  daemon.signal(SIGTERM);
  CHECK(daemon.wait() == 0);
}

TEST_CASE("the stock holds at most cgroup_leaf_stock leaves and the daemon's stop empties it",
          "[daemon][stock]") {
  if (!hybrid_host())
    CELLOS_SKIP("no v1 memory hierarchy: this host keeps no stock (cgroup2 cannot rename)");
  Fleet fleet("", "", "cgroup_leaf_stock = 2");
  DaemonProcess daemon(fleet);
  // Four cells alive at once, each waiting for the go file, so four leaves end together.
  const std::string go = fleet.dir() + "/bin/go";
  std::vector<std::string> ids;
  for (int i = 0; i < 4; ++i) {
    ids.push_back(unique_id("bound"));
    spool(fleet, make_spec(ids.back(), {"/bin/sh", "-c", "while [ ! -e " + go +
                                                             " ]; do sleep 0.05; done"}));
  }
  REQUIRE(eventually([&] {
    return std::all_of(ids.begin(), ids.end(),
                       [&](const auto& id) { return path_exists(memory_parent(fleet) + "/" + id); });
  }));
  write_text(go, "");
  REQUIRE(eventually([&] {
    return std::all_of(ids.begin(), ids.end(), [&](const auto& id) { return destroyed(fleet, id); });
  }));
  CHECK(stocked(fleet).size() == 2);
  for (const auto& id : ids) CHECK_FALSE(path_exists(memory_parent(fleet) + "/" + id));

  daemon.signal(SIGTERM);
  CHECK(daemon.wait() == 0);
  CHECK(stocked(fleet).empty());
  CHECK_FALSE(path_exists(memory_parent(fleet)));
}

TEST_CASE("a killed daemon's stock is removed by the next daemon's recovery, reporting no cell",
          "[daemon][stock]") {
  if (!hybrid_host())
    CELLOS_SKIP("no v1 memory hierarchy: this host keeps no stock (cgroup2 cannot rename)");
  Fleet fleet("", "", "cgroup_leaf_stock = 4");
  std::vector<std::string> left;
  {
    DaemonProcess daemon(fleet);
    const std::string id = unique_id("crash");
    spool(fleet, make_spec(id, {"/bin/true"}));
    REQUIRE(eventually([&] { return destroyed(fleet, id); }));
    left = stocked(fleet);
    REQUIRE(left.size() == 1);
    daemon.signal(SIGKILL);
    daemon.wait();
  }
  CHECK(stocked(fleet) == left);  // nothing removed it: the daemon died
  {
    DaemonProcess next(fleet);
    // It says it serves once its recovery is done (the dead daemon's socket file is still
    // there, so the socket's existence says nothing).
    REQUIRE(eventually([&] { return next.err().find("serving") != std::string::npos; }));
    INFO(next.err());
    for (const auto& n : left) CHECK_FALSE(path_exists(memory_parent(fleet) + "/" + n));
    for (const auto& e : events_of(fleet, "lifecycle.v1.destroyed"))
      CHECK(e["data"].value("reason", "") != "lost");
    next.signal(SIGTERM);
    CHECK(next.wait() == 0);
  }
  CHECK_FALSE(path_exists(memory_parent(fleet)));
}

TEST_CASE("a nested cell's delegated memory leaf is never stocked, a native cell's is",
          "[stock][nested]") {
  if (!hybrid_host())
    CELLOS_SKIP("no v1 memory hierarchy: this host keeps no stock (cgroup2 cannot rename)");
  if (::geteuid() != 0) CELLOS_SKIP("needs root to map a user namespace and delegate cgroups");
  // Host uids for the nested block, apart from nested_test's and the rootless tests' ranges.
  const uint32_t first = 300000000u + static_cast<uint32_t>(::getpid() % 1000) * (1u << 21);
  Fleet fleet("[policy]\nallowed_backends = [\"native\", \"nested\"]\n[policy.nested]\n"
              "max_depth = 1\nmax_cells = 1\nuid_block_size = 65536\nuid_range = \"" +
              std::to_string(first) + "-" + std::to_string(first + 65536 - 1) + "\"\n");
  cells::Config config = cells::load_config(fleet.config_path());
  auto host = reactor::Host::create(run_host_options(fleet, config));
  REQUIRE(host.ok());
  cells::LeafStock stock((*host)->cgroups(), 4);
  REQUIRE(stock.usable());
  (*host)->set_leaf_stock(&stock);
  std::map<std::string, int> status;
  auto sup = std::make_unique<reactor::Supervisor>(
      **host, reactor::SupervisorOptions{[&](const cells::Cell& c) {
        status[c.id()] = c.outcome().exit_status();
      }});
  auto run = [&](const std::string& id, const char* backend) {
    cells::CellOptions co;
    co.spec.id = id;
    co.spec.run.argv = {"/bin/true"};
    co.spec.run.backend = backend;
    co.spec.ttl_seconds = 60;
    co.env = {"PATH=/usr/bin:/bin"};
    co.run_id = id;
    sup->add(std::move(co));
    REQUIRE(sup->run_until_idle().ok());
    CHECK(status[id] == 0);
  };
  run(unique_id("nested"), "nested");
  CHECK(stock.size() == 0);
  run(unique_id("native"), "native");
  CHECK(stock.size() == 1);
  sup.reset();
  stock.clear();
  CHECK(stocked(fleet).empty());
  (*host)->cgroups().remove_empty_parents();
}

// A pooled cell's memory leaf was made for a prepared process and held it from before the spec
// was known; at 2,000 cells a burst whose pooled leaves went to the stock spent a fifth of its
// CPU in the next cells' memory.force_empty (shrink_slab, bench/README.md "daemon"): such a leaf
// is removed, as before the stock, and only cold cells' leaves are stocked.
TEST_CASE("a pooled cell's memory leaf is removed at its end, a cold cell's is stocked",
          "[daemon][stock][pool]") {
  if (!hybrid_host())
    CELLOS_SKIP("no v1 memory hierarchy: this host keeps no stock (cgroup2 cannot rename)");
  Fleet fleet("[pool]\nenabled = true\nsize = 1\nmax_size = 1\n", "", "cgroup_leaf_stock = 4");
  DaemonProcess daemon(fleet);
  auto pool_ready = [&] {
    return eventually([&] {
      auto r = run_process({CELLOS_REACTOR_BIN, "status", "--config", fleet.config_path(), "--json"});
      return r.status == 0 && json::parse(r.out)["pool"].value("ready", 0) >= 1;
    }, std::chrono::seconds(30));
  };
  auto admission = [&](const std::string& id) {
    const json started = event_of(fleet, "lifecycle.v1.started", id);
    return started.is_null() ? std::string() : started.value("admission", "");
  };
  REQUIRE(pool_ready());
  const std::string pooled = unique_id("pooled");
  spool(fleet, make_spec(pooled, {"/bin/true"}));
  REQUIRE(eventually([&] { return destroyed(fleet, pooled); }));
  REQUIRE(admission(pooled) == "pool");
  CHECK(stocked(fleet).empty());
  CHECK_FALSE(path_exists(memory_parent(fleet) + "/" + pooled));

  // The pool serves no cpuMax where the cpu controller is v1 (as here: a hybrid host): this
  // one is cloned cold, and its leaf is stocked.
  REQUIRE(pool_ready());
  const std::string cold = unique_id("cold");
  json spec = make_spec(cold, {"/bin/true"});
  spec["spec"]["run"]["limits"] = {{"cpuMax", {{"quotaMicros", 50000}}}};
  spool(fleet, spec);
  REQUIRE(eventually([&] { return destroyed(fleet, cold); }));
  INFO(daemon.err());
  REQUIRE(admission(cold) == "cold");
  CHECK(stocked(fleet).size() == 1);

  daemon.signal(SIGTERM);
  CHECK(daemon.wait() == 0);
  CHECK(stocked(fleet).empty());
}
