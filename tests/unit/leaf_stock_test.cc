// The stock of v1 memory leaves (cells/leaf_stock.h) against a fake cgroupfs in a temp dir:
// what a stocked leaf's next cell is planned to write, its OOM count as a difference, the
// bound, and no stock on pure cgroup2. The real kernel's side is leaf_stock_test in
// tests/integration.
#include "cells/leaf_stock.h"

#include <catch2/catch.hpp>
#include <filesystem>
#include <string>
#include <vector>

#include "cells/cgroup.h"
#include "cells/child_setup_internal.h"
#include "tests/support/test_support.h"

namespace cellos::cells {
namespace {

namespace fs = std::filesystem;
using test::path_exists;
using test::write_text;

struct Fake {
  test::TempDir tmp;
  std::string root = tmp.path();
  std::string dir(const std::string& rel) const { return root + "/" + rel; }

  CgroupTree hybrid() {
    for (const char* d : {"unified", "memory", "pids"}) fs::create_directories(dir(d));
    write_text(dir("unified/cgroup.controllers"), "");
    write_text(dir("mounts"), "cgroup2 " + dir("unified") + " cgroup2 rw 0 0\n"
                              "cgroup " + dir("memory") + " cgroup rw,memory 0 0\n"
                              "cgroup " + dir("pids") + " cgroup rw,pids 0 0\n");
    return tree();
  }
  CgroupTree pure_v2() {
    fs::create_directories(dir("unified"));
    write_text(dir("unified/cgroup.controllers"), "cpu memory pids\n");
    write_text(dir("mounts"), "cgroup2 " + dir("unified") + " cgroup2 rw 0 0\n");
    return tree();
  }
  CgroupTree tree() {
    auto roots = detect_cgroup_roots(dir("mounts"));
    REQUIRE(roots.ok());
    auto t = CgroupTree::prepare(*roots, "cellos/h");
    REQUIRE(t.ok());
    return std::move(*t);
  }
  // A real cgroupfs makes these in every new cgroup; a leaf's end reads them.
  void counters(const std::string& cell, int oom_kills) {
    write_text(dir("memory/cellos/h/" + cell + "/memory.oom_control"),
               "oom_kill_disable 0\nunder_oom 0\noom_kill " + std::to_string(oom_kills) + "\n");
  }
};

std::vector<std::string> written(const CgroupLeaf& leaf, const std::string& dir) {
  std::vector<std::string> out;
  for (const auto& w : leaf.writes())
    if (w.path.rfind(dir + "/", 0) == 0) out.push_back(w.path.substr(dir.size() + 1) + "=" + w.value);
  return out;
}

}  // namespace

TEST_CASE("a stocked memory leaf is renamed for its next cell, which empties it, writes its "
          "limit and resets its counters before joining, and counts only its own OOM kills",
          "[cgroup][stock]") {
  Fake f;
  CgroupTree tree = f.hybrid();
  LeafStock stock(tree, 4);
  REQUIRE(stock.usable());
  {
    auto a = tree.create_leaf("a", CgroupLimits{64 << 20, 10, {}}, &stock);
    REQUIRE(a.ok());
    CHECK_FALSE(a->memory_from_stock());  // the stock was empty: made with mkdir
    f.counters("a", 3);
    CHECK(a->usage().oom_kills == 3);
    REQUIRE(a->remove(&stock).ok());
  }
  CHECK(stock.size() == 1);
  CHECK_FALSE(path_exists(f.dir("memory/cellos/h/a")));
  CHECK_FALSE(path_exists(f.dir("unified/cellos/h/a")));
  CHECK_FALSE(path_exists(f.dir("pids/cellos/h/a")));

  auto b = tree.create_leaf("b", CgroupLimits{48 << 20, 10, {}}, &stock);
  REQUIRE(b.ok());
  CHECK(stock.size() == 0);
  CHECK(b->memory_from_stock());
  const std::string mem = f.dir("memory/cellos/h/b");
  CHECK(b->memory_dir() == mem);
  CHECK(path_exists(mem + "/memory.oom_control"));  // the same directory, renamed
  CHECK(written(*b, mem) == std::vector<std::string>{
                                "memory.force_empty=0", "memory.limit_in_bytes=" +
                                std::to_string(48 << 20), "memory.max_usage_in_bytes=0",
                                "memory.failcnt=0"});
  CHECK(b->usage().oom_kills == 0);
  f.counters("b", 5);
  CHECK(b->usage().oom_kills == 2);
}

TEST_CASE("the stock keeps at most its bound, gives nothing when empty, and clear() removes "
          "every stocked leaf",
          "[cgroup][stock]") {
  Fake f;
  CgroupTree tree = f.hybrid();
  LeafStock stock(tree, 1);
  {
    // Two cells alive at once end one after the other.
    auto a = tree.create_leaf("a", CgroupLimits{1 << 20, 1, {}}, &stock);
    auto b = tree.create_leaf("b", CgroupLimits{1 << 20, 1, {}}, &stock);
    REQUIRE(a.ok());
    REQUIRE(b.ok());
    for (const char* id : {"a", "b"}) f.counters(id, 0);
    (void)a->usage();
    (void)b->usage();
    // The fake's memory leaf holds a file, so rmdir fails where the kernel's would not: the
    // first leaf goes to the stock, the second finds it full and is left to remove.
    CHECK(a->remove(&stock).ok());
    CHECK_FALSE(b->remove(&stock).ok());
  }
  CHECK(stock.size() == 1);
  CHECK_FALSE(path_exists(f.dir("memory/cellos/h/a")));
  CHECK(path_exists(f.dir("memory/cellos/h/b")));  // not stocked: full
  fs::remove_all(f.dir("memory/cellos/h/b"));
  // A leaf whose end was never read (no OOM count to start the next cell from) is not stocked.
  LeafStock other(tree, 4);
  {
    auto c = tree.create_leaf("c", CgroupLimits{1 << 20, 1, {}}, &other);
    REQUIRE(c.ok());
    (void)c->remove(&other);
  }
  CHECK(other.size() == 0);
  CHECK_FALSE(other.take("d").has_value());
  stock.clear();
  CHECK(stock.size() == 0);
}

TEST_CASE("a pure cgroup2 host keeps no stock: its memory controller is in the leaf cgroup2 "
          "cannot rename",
          "[cgroup][stock]") {
  Fake f;
  CgroupTree tree = f.pure_v2();
  LeafStock stock(tree, 64);
  CHECK_FALSE(stock.usable());
  CHECK_FALSE(LeafStock(f.hybrid(), 0).usable());
}

// The setup's side (cells/child_knobs.cc), against plain files standing in for the leaf's: the
// force_empty write is made only when the leaf holds more than kStockReclaimFloorBytes, and
// every other knob is written as planned.
TEST_CASE("a stocked leaf's force_empty is written only when it holds more than the floor",
          "[cgroup][stock]") {
  test::TempDir tmp;
  const std::string leaf = tmp.path() + "/leaf";
  fs::create_directories(leaf);
  const std::string knob = leaf + "/memory.force_empty";
  auto write_with_usage = [&](uint64_t usage) {
    write_text(leaf + "/memory.usage_in_bytes", std::to_string(usage) + "\n");
    write_text(knob, "");
    REQUIRE(child::write_cgroup_knob(knob.c_str(), "0"));
    return test::read_text(knob);
  };
  CHECK(write_with_usage(0) == "");
  CHECK(write_with_usage(4096) == "");
  CHECK(write_with_usage(kStockReclaimFloorBytes) == "");
  // Past the floor: 32 MiB of page cache the cell before read, say.
  CHECK(write_with_usage(kStockReclaimFloorBytes + 4096) == "0");
  CHECK(write_with_usage(32ull << 20) == "0");
  // No usage to read: written, as before the floor.
  fs::remove(leaf + "/memory.usage_in_bytes");
  write_text(knob, "");
  REQUIRE(child::write_cgroup_knob(knob.c_str(), "0"));
  CHECK(test::read_text(knob) == "0");
  // Other knobs are written whatever the usage.
  write_text(leaf + "/memory.usage_in_bytes", "0\n");
  write_text(leaf + "/memory.limit_in_bytes", "");
  REQUIRE(child::write_cgroup_knob((leaf + "/memory.limit_in_bytes").c_str(), "1048576"));
  CHECK(test::read_text(leaf + "/memory.limit_in_bytes") == "1048576");
}

}  // namespace cellos::cells
