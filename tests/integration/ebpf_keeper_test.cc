// What a `run` with egress no longer pays per cell, and the promises that still hold: the hook
// keeper (ebpf/hook_keeper.h) and the flow-map walks skipped while the map is known empty
// (FlowProbes::walk_flows). Real kernel, pins in a bpffs of the test's own.
#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <array>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include "ebpf/cgroup_id.h"
#include "ebpf/flow_probes.h"
#include "ebpf/hook_keeper.h"
#include "tests/support/ebpf_support.h"
#include "tests/support/test_support.h"

using namespace cellos;
using namespace cellos::test;

namespace {

// A bpffs of the test's own (unmounted, and so emptied, at the end): the pins never touch the
// host's /sys/fs/bpf.
struct OwnBpffs {
  TempDir dir;
  OwnBpffs() { REQUIRE(::mount("bpffs", dir.path().c_str(), "bpf", 0, "mode=0700") == 0); }
  ~OwnBpffs() { ::umount2(dir.path().c_str(), MNT_DETACH); }
  std::string root() const { return dir.path() + "/pins"; }
};

constexpr bpf_attach_type kTypes[] = {BPF_CGROUP_INET_INGRESS, BPF_CGROUP_INET_EGRESS,
                                      BPF_CGROUP_INET4_CONNECT, BPF_CGROUP_INET6_CONNECT};

// Programs attached directly to a cgroup for one hook.
__u32 attached(int cgroup_fd, bpf_attach_type t) {
  __u32 ids[8] = {}, n = 8, flags = 0;
  REQUIRE(bpf_prog_query(cgroup_fd, t, 0, &flags, ids, &n) == 0);
  return n;
}

ebpf::CellAttachment attach_cell(ebpf::FlowProbes& p, const TestCgroup& cg,
                                 const std::string& keeper) {
  auto id = ebpf::cgroup_id_of(cg.fd());
  REQUIRE(id.ok());
  ebpf::CellAttachOptions o;
  o.cgroup_fd = cg.fd();
  o.cgroup_id = *id;
  o.keeper_cgroup = keeper;
  auto a = p.attach(o);
  INFO((a.ok() ? std::string() : a.error().message()));
  REQUIRE(a.ok());
  return std::move(a).value();
}

std::string slurp(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

ebpf::FlowProbeOptions pinned_options(const OwnBpffs& fs) {
  ebpf::FlowProbeOptions o;
  o.max_flows = 1024;
  o.max_cells = 64;
  o.pin_dir = fs.root();
  return o;
}

}  // namespace

TEST_CASE("the hook keeper: one link per hook on an empty cgroup, pinned with the probes, made "
          "by the first attach and kept, not repeated, by later reactors", "[ebpf]") {
  if (auto why = ebpf_unavailable(); !why.empty()) CELLOS_SKIP(why);
  OwnBpffs fs;
  TestCgroup keeper;  // stands for cellos/.bpf-keep (an existing directory is taken as it is)
  const ebpf::FlowProbeOptions o = pinned_options(fs);
  std::string pins;
  {
    auto first = ebpf::FlowProbes::load(o);
    INFO((first.ok() ? std::string() : first.error().message()));
    REQUIRE(first.ok());
    REQUIRE((*first)->pinned());
    pins = (*first)->pin_path();
    CHECK_FALSE(ebpf::hooks_kept(pins));
    TestCgroup cell, cell2;
    auto a = attach_cell(**first, cell, keeper.path());
    CHECK(ebpf::hooks_kept(pins));
    for (auto t : kTypes) {
      CHECK(attached(keeper.fd(), t) == 1);
      CHECK(attached(cell.fd(), t) == 1);
    }
    // The next cell of the same reactor makes no second keeper.
    auto b = attach_cell(**first, cell2, keeper.path());
    for (auto t : kTypes) CHECK(attached(keeper.fd(), t) == 1);
  }  // the reactor is gone, its cells' links with it
  // The keeper outlives it (its links are pinned), and runs for nothing: its cgroup is empty.
  CHECK(ebpf::hooks_kept(pins));
  for (auto t : kTypes) CHECK(attached(keeper.fd(), t) == 1);
  CHECK(slurp(keeper.path() + "/cgroup.procs").empty());
  {
    // A later reactor reuses the pins and finds the keeper: still one link per hook.
    auto again = ebpf::FlowProbes::load(o);
    REQUIRE(again.ok());
    CHECK((*again)->reused());
    TestCgroup cell;
    auto a = attach_cell(**again, cell, keeper.path());
    for (auto t : kTypes) {
      CHECK(attached(keeper.fd(), t) == 1);
      CHECK(attached(cell.fd(), t) == 1);
    }
  }
  {
    // Without pins there is nowhere to keep links beyond the reactor: no keeper.
    ebpf::FlowProbeOptions unpinned = o;
    unpinned.pin_dir.clear();
    auto priv = ebpf::FlowProbes::load(unpinned);
    REQUIRE(priv.ok());
    TestCgroup other_keeper, cell;
    auto a = attach_cell(**priv, cell, other_keeper.path());
    for (auto t : kTypes) CHECK(attached(other_keeper.fd(), t) == 0);
  }
}

TEST_CASE("the hook keeper is made afresh by the next reactor once its cgroup was removed",
          "[ebpf]") {
  if (auto why = ebpf_unavailable(); !why.empty()) CELLOS_SKIP(why);
  OwnBpffs fs;
  const ebpf::FlowProbeOptions o = pinned_options(fs);
  // A keeper directory keep_hooks makes itself (removed at the end whatever happens).
  struct Dir {
    std::string path = std::string(kCgroup2Root) + "/cellos-ebpf-test-keep-" +
                       std::to_string(::getpid());
    ~Dir() { ::rmdir(path.c_str()); }
  } keeper;
  std::string pins;
  {
    auto first = ebpf::FlowProbes::load(o);
    REQUIRE(first.ok());
    pins = (*first)->pin_path();
    TestCgroup cell;
    auto a = attach_cell(**first, cell, keeper.path);
    CHECK(ebpf::hooks_kept(pins));
  }
  REQUIRE(::rmdir(keeper.path.c_str()) == 0);  // its links are detached with it
  // The kernel releases a removed cgroup's programs asynchronously (after an RCU grace period,
  // from a work item): poll for it, bounded, rather than assume a time.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (ebpf::hooks_kept(pins) && std::chrono::steady_clock::now() < deadline)
    ::usleep(10 * 1000);
  REQUIRE_FALSE(ebpf::hooks_kept(pins));
  auto again = ebpf::FlowProbes::load(o);
  REQUIRE(again.ok());
  REQUIRE((*again)->reused());
  TestCgroup cell;
  auto a = attach_cell(**again, cell, keeper.path);
  CHECK(ebpf::hooks_kept(pins));
  base::Fd dir(::open(keeper.path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  REQUIRE(dir.valid());
  for (auto t : kTypes) CHECK(attached(dir.get(), t) == 1);
}

TEST_CASE("flows a crashed user of the pins left are removed by the next user, whose drains "
          "still see the flows its cells make", "[ebpf]") {
  if (auto why = ebpf_unavailable(); !why.empty()) CELLOS_SKIP(why);
  OwnBpffs fs;
  const ebpf::FlowProbeOptions o = pinned_options(fs);
  TestNetns ns;
  TestCgroup cg;
  base::Fd sink;
  int port = 0;
  ns.inside([&] {
    sink = base::Fd(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
    REQUIRE(sink.valid());
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(::bind(sink.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
    socklen_t len = sizeof a;
    REQUIRE(::getsockname(sink.get(), reinterpret_cast<sockaddr*>(&a), &len) == 0);
    port = ntohs(a.sin_port);
  });
  auto id = ebpf::cgroup_id_of(cg.fd());
  REQUIRE(id.ok());
  auto send_one = [&] {
    sockaddr_in to{};
    to.sin_family = AF_INET;
    to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    to.sin_port = htons(static_cast<uint16_t>(port));
    const int u = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    return u >= 0 && ::sendto(u, "x", 1, 0, reinterpret_cast<sockaddr*>(&to), sizeof to) == 1;
  };

  // The first user (a reactor in a child process) loads and pins the probes, attaches the
  // cell, which sends one datagram, and dies without any teardown.
  pid_t child = spawn_in_cell(cg, ns, [&] {
    auto p = ebpf::FlowProbes::load(o);
    if (!p.ok() || !(*p)->pinned()) return 1;
    ebpf::CellAttachOptions ao;
    ao.cgroup_fd = cg.fd();
    ao.cgroup_id = *id;
    auto a = (*p)->attach(ao);
    if (!a.ok() || !send_one()) return 2;
    ::_exit(0);  // a crash: no destructor runs
  });
  REQUIRE(wait_child(child) == 0);
  std::string digest_dir;
  for (auto& e : std::filesystem::directory_iterator(fs.root())) digest_dir = e.path();
  REQUIRE_FALSE(digest_dir.empty());
  {
    base::Fd flows(bpf_obj_get((digest_dir + "/flows").c_str()));
    REQUIRE(flows.valid());
    std::array<std::byte, 64> key{};
    REQUIRE(bpf_map_get_next_key(flows.get(), nullptr, key.data()) == 0);  // the leftover
  }

  // The next user empties the map before anything else.
  auto again = ebpf::FlowProbes::load(o);
  REQUIRE(again.ok());
  ebpf::FlowProbes& probes = **again;
  REQUIRE(probes.reused());
  auto e = probes.entries_of(*id);
  REQUIRE(e.ok());
  CHECK(e->flows == 0);
  CHECK_FALSE(e->config);

  // And its own cell's flow is drained (the map is no longer empty once a program made one).
  ebpf::CellAttachOptions ao;
  ao.cgroup_fd = cg.fd();
  ao.cgroup_id = *id;
  auto cell = probes.attach(ao);
  REQUIRE(cell.ok());
  REQUIRE(probes.drain(*id, {}, nullptr).value() == 0);
  child = spawn_in_cell(cg, ns, [&] { return send_one() ? 0 : 1; });
  REQUIRE(wait_child(child) == 0);
  size_t seen = 0;
  auto n = probes.drain(*id, {}, [&](const ebpf::Flow& f) {
    seen += f.key.l4proto == IPPROTO_UDP && f.key.remote_port == port && f.counters.tx_packets == 1;
  });
  REQUIRE(n.ok());
  CHECK(*n == 1);
  CHECK(seen == 1);
  cell->reset();
  auto after = probes.entries_of(*id);
  REQUIRE(after.ok());
  CHECK(after->flows == 0);
}
