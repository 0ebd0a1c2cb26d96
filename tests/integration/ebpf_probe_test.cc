// The eBPF flow probes on the real kernel: a cgroup2 directory per "cell", a child process in
// it inside a network namespace the test creates, traffic only to that namespace's loopback.
// Counters are checked against what the test sent, counted independently by an AF_PACKET
// capture on lo and by header arithmetic.
#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <array>
#include <cstring>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "ebpf/cgroup_id.h"
#include "ebpf/flow_probes.h"
#include "tests/support/ebpf_support.h"
#include "tests/support/test_support.h"

using namespace cellos;
using namespace cellos::test;
using ebpf::Flow;
using ebpf::FlowRecord;
using ebpf::RecordKind;

namespace {

constexpr size_t kIp4Udp = 20 + 8;  // IPv4 + UDP headers: a datagram's IP length is this + payload
constexpr size_t kIp6Udp = 40 + 8;

sockaddr_in lo4(int port) {
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(static_cast<uint16_t>(port));
  return a;
}

int port_of(int fd) {
  sockaddr_storage a{};
  socklen_t len = sizeof a;
  REQUIRE(::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) == 0);
  return a.ss_family == AF_INET ? ntohs(reinterpret_cast<sockaddr_in*>(&a)->sin_port)
                                 : ntohs(reinterpret_cast<sockaddr_in6*>(&a)->sin6_port);
}

// A socket bound to loopback (port picked by the kernel), listening if TCP. Made inside the
// namespace by the test process, so it is not in any cell's cgroup.
base::Fd server(const TestNetns& ns, int family, int type) {
  base::Fd fd;
  ns.inside([&] {
    fd = base::Fd(::socket(family, type | SOCK_CLOEXEC, 0));
    REQUIRE(fd.valid());
    if (family == AF_INET) {
      sockaddr_in a = lo4(0);
      REQUIRE(::bind(fd.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
    } else {
      sockaddr_in6 a{};
      a.sin6_family = AF_INET6;
      a.sin6_addr = in6addr_loopback;
      REQUIRE(::bind(fd.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
    }
    if (type == SOCK_STREAM) REQUIRE(::listen(fd.get(), 16) == 0);
  });
  timeval tv{5, 0};  // a child that never sends must fail the test, not hang it
  ::setsockopt(fd.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  return fd;
}

void set_timeout(int fd) {
  timeval tv{5, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
}

bool read_exact(int fd, size_t n) {
  char buf[4096];
  while (n > 0) {
    ssize_t r = ::read(fd, buf, std::min(n, sizeof buf));
    if (r <= 0) return false;
    n -= static_cast<size_t>(r);
  }
  return true;
}

// Returns 0 on success, else the errno of connect().
int connect4(int fd, int port) {
  sockaddr_in a = lo4(port);
  return ::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0 ? 0 : errno;
}

int sendto4(int fd, size_t len, int port) {
  std::string data(len, 'x');
  sockaddr_in a = lo4(port);
  return ::sendto(fd, data.data(), len, 0, reinterpret_cast<sockaddr*>(&a), sizeof a) ==
                 static_cast<ssize_t>(len)
             ? 0
             : errno;
}

std::vector<Flow> drain(ebpf::FlowProbes& p, uint64_t cgid, bool remove_ended = false) {
  std::vector<Flow> out;
  auto n = p.drain(cgid, {.remove_ended = remove_ended}, [&](const Flow& f) { out.push_back(f); });
  REQUIRE(n.ok());
  return out;
}

std::vector<FlowRecord> records(ebpf::FlowProbes& p) {
  std::vector<FlowRecord> out;
  REQUIRE(p.consume([&](const FlowRecord& r) { out.push_back(r); }).ok());
  return out;
}

const Flow* find(const std::vector<Flow>& flows, uint8_t proto, int remote_port) {
  for (const Flow& f : flows)
    if (f.key.l4proto == proto && f.key.remote_port == remote_port) return &f;
  return nullptr;
}

size_t count(const std::vector<FlowRecord>& rs, RecordKind kind, const ebpf::FlowKey& key) {
  size_t n = 0;
  for (const FlowRecord& r : rs) n += r.kind == kind && r.flow.key == key;
  return n;
}

struct Tally {
  uint64_t packets = 0, bytes = 0;
};
// The capture's view of one direction of a flow: packets from `sport` to `dport`.
Tally tally(const std::vector<Captured>& pk, uint8_t proto, int sport, int dport) {
  Tally t;
  for (const Captured& c : pk)
    if (c.l4proto == proto && c.sport == sport && c.dport == dport) {
      t.packets++;
      t.bytes += c.length;
    }
  return t;
}

// Skips when the machine cannot run BPF tests; a load failure where it can is a failure.
#define LOAD_PROBES_OR_SKIP(var)                                            \
  if (auto why = ebpf_unavailable(); !why.empty()) CELLOS_SKIP(why);         \
  auto var##_r = ebpf::FlowProbes::load({});                                 \
  INFO((var##_r.ok() ? std::string() : var##_r.error().message()));          \
  REQUIRE(var##_r.ok());                                                     \
  ebpf::FlowProbes& var = **var##_r

ebpf::CellAttachment attach(ebpf::FlowProbes& p, const TestCgroup& cg,
                            ebpf::CellAttachOptions o = {}) {
  auto id = ebpf::cgroup_id_of(cg.fd());
  REQUIRE(id.ok());
  o.cgroup_fd = cg.fd();
  o.cgroup_id = *id;
  auto a = p.attach(o);
  INFO((a.ok() ? std::string() : a.error().message()));
  REQUIRE(a.ok());
  return std::move(a).value();
}

ebpf::AllowRule loopback_rule(uint8_t proto, int port, int prefix = 32) {
  ebpf::AllowRule r;
  r.family = AF_INET;
  const uint32_t a = htonl(INADDR_LOOPBACK);
  std::memcpy(r.addr.data(), &a, 4);
  r.prefix_len = prefix;
  r.port = static_cast<uint16_t>(port);
  r.l4proto = proto;
  return r;
}

}  // namespace

TEST_CASE("cgroup_id_of is the id BPF programs see, and equals the directory's inode", "[ebpf]") {
  if (auto why = ebpf_unavailable(); !why.empty()) CELLOS_SKIP(why);
  TestCgroup cg;
  auto id = ebpf::cgroup_id_of(cg.fd());
  auto ino = ebpf::cgroup_inode_of(cg.fd());
  REQUIRE(id.ok());
  REQUIRE(ino.ok());
  CHECK(*id == *ino);
  CHECK(*id > 1);
  // What BPF sees (the flow keys' cgroup id) is checked against cgroup_id_of in the counting
  // test below.
}

TEST_CASE("flow probes count exact TCP and UDP packets and bytes in each direction", "[ebpf]") {
  LOAD_PROBES_OR_SKIP(probes);
  TestNetns ns;
  TestCgroup cg;
  PacketCapture cap(ns);
  auto cell = attach(probes, cg);
  const uint64_t cgid = cell.cgroup_id();

  base::Fd listener = server(ns, AF_INET, SOCK_STREAM);
  base::Fd udp = server(ns, AF_INET, SOCK_DGRAM);
  base::Fd udp6 = server(ns, AF_INET6, SOCK_DGRAM);
  const int tport = port_of(listener.get()), uport = port_of(udp.get()),
            u6port = port_of(udp6.get());

  pid_t child = spawn_in_cell(cg, ns, [&] {
    int s = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    set_timeout(s);
    if (connect4(s, tport) != 0) return 10;
    std::string hello(100, 'h');
    if (::write(s, hello.data(), hello.size()) != 100) return 11;
    if (!read_exact(s, 200)) return 12;
    ::shutdown(s, SHUT_WR);  // our FIN first: the server's FIN then finds a full socket
    char c;
    if (::read(s, &c, 1) != 0) return 13;
    ::close(s);

    int u = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    set_timeout(u);
    for (size_t len : {10, 200, 1000})
      if (sendto4(u, len, uport) != 0) return 20;
    char buf[2048];
    for (int i = 0; i < 2; i++)
      if (::recv(u, buf, sizeof buf, 0) < 0) return 21;
    ::close(u);

    int u6 = ::socket(AF_INET6, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    sockaddr_in6 d{};
    d.sin6_family = AF_INET6;
    d.sin6_addr = in6addr_loopback;
    d.sin6_port = htons(static_cast<uint16_t>(u6port));
    for (size_t len : {7, 70})
      if (::sendto(u6, hello.data(), len, 0, reinterpret_cast<sockaddr*>(&d), sizeof d) < 0)
        return 30;
    ::close(u6);
    return 0;
  });

  // The server side, outside the cell.
  base::Fd conn(::accept4(listener.get(), nullptr, nullptr, SOCK_CLOEXEC));
  REQUIRE(conn.valid());
  set_timeout(conn.get());
  REQUIRE(read_exact(conn.get(), 100));
  std::string reply(200, 'r');
  REQUIRE(::write(conn.get(), reply.data(), reply.size()) == 200);
  char c;
  REQUIRE(::read(conn.get(), &c, 1) == 0);
  conn.reset();
  char buf[2048];
  sockaddr_in from{};
  socklen_t flen = sizeof from;
  for (int i = 0; i < 3; i++)
    REQUIRE(::recvfrom(udp.get(), buf, sizeof buf, 0, reinterpret_cast<sockaddr*>(&from), &flen) > 0);
  for (size_t len : {50, 60})
    REQUIRE(::sendto(udp.get(), buf, len, 0, reinterpret_cast<sockaddr*>(&from), flen) ==
            static_cast<ssize_t>(len));
  for (int i = 0; i < 2; i++) REQUIRE(::recv(udp6.get(), buf, sizeof buf, 0) > 0);
  REQUIRE(wait_child(child) == 0);

  // Births, ends and connects do not wake the reader (it reads them at its drain tick): the
  // ring buffer's fd stays quiet. Denials do wake it (the enforcement test below).
  pollfd pfd{probes.ringbuf_fd(), POLLIN, 0};
  CHECK(::poll(&pfd, 1, 100) == 0);
  const auto recs = records(probes);
  const auto packets = cap.take();
  const auto flows = drain(probes, cgid);
  REQUIRE(flows.size() == 3);
  for (const Flow& f : flows) CHECK(f.key.cgroup_id == cgid);  // BPF's id == cgroup_id_of

  {  // TCP
    const Flow* t = find(flows, IPPROTO_TCP, tport);
    REQUIRE(t != nullptr);
    INFO(ebpf::describe(t->key));
    const int cport = t->key.local_port;
    const Tally tx = tally(packets, IPPROTO_TCP, cport, tport);
    const Tally rx = tally(packets, IPPROTO_TCP, tport, cport);
    CHECK(tx.packets >= 4);  // SYN, the data, FIN, the last ACK
    CHECK(t->counters.tx_packets == tx.packets);
    CHECK(t->counters.tx_bytes == tx.bytes);
    CHECK(t->counters.rx_packets == rx.packets);
    CHECK(t->counters.rx_bytes == rx.bytes);
    // Header arithmetic as a second check: every packet carries 20 + at least 20 bytes.
    CHECK(t->counters.tx_bytes - 100 >= 40 * t->counters.tx_packets);
    CHECK(t->counters.rx_bytes - 200 >= 40 * t->counters.rx_packets);
    CHECK(t->counters.ended());
    CHECK(t->counters.birth_sent());
    CHECK_FALSE(t->counters.origin_ingress());
    CHECK((t->counters.tcp_flags & 0x13) == 0x13);  // FIN, SYN, ACK
    CHECK((t->counters.tcp_flags & 0x04) == 0);     // and no RST
    // One birth (the SYN alone) and one end for the connection.
    CHECK(count(recs, RecordKind::birth, t->key) == 1);
    CHECK(count(recs, RecordKind::end, t->key) == 1);
    for (const FlowRecord& r : recs)
      if (r.kind == RecordKind::birth && r.flow.key == t->key) {
        CHECK(r.flow.counters.tx_packets == 1);
        CHECK(r.flow.counters.rx_packets == 0);
      }
    // The connect() record names the destination and the caller.
    size_t connects = 0;
    for (const FlowRecord& r : recs)
      if (r.kind == RecordKind::connect) {
        connects++;
        CHECK(r.flow.key.remote_port == tport);
        CHECK(r.pid == static_cast<uint32_t>(child));
      }
    CHECK(connects == 1);
  }
  {  // UDP
    const Flow* u = find(flows, IPPROTO_UDP, uport);
    REQUIRE(u != nullptr);
    INFO(ebpf::describe(u->key));
    CHECK(u->counters.tx_packets == 3);
    CHECK(u->counters.tx_bytes == 3 * kIp4Udp + 10 + 200 + 1000);
    CHECK(u->counters.rx_packets == 2);
    CHECK(u->counters.rx_bytes == 2 * kIp4Udp + 50 + 60);
    const Tally tx = tally(packets, IPPROTO_UDP, u->key.local_port, uport);
    CHECK(tx.packets == 3);
    CHECK(tx.bytes == u->counters.tx_bytes);
    CHECK(count(recs, RecordKind::birth, u->key) == 1);
    CHECK(count(recs, RecordKind::end, u->key) == 0);

    const Flow* u6 = find(flows, IPPROTO_UDP, u6port);
    REQUIRE(u6 != nullptr);
    CHECK(u6->key.family == AF_INET6);
    CHECK(u6->counters.tx_packets == 2);
    CHECK(u6->counters.tx_bytes == 2 * kIp6Udp + 7 + 70);
    CHECK(u6->counters.rx_packets == 0);
    CHECK(count(recs, RecordKind::birth, u6->key) == 1);
  }
  // Births: one per flow, and nothing per packet.
  size_t births = 0, ends = 0;
  for (const FlowRecord& r : recs) {
    births += r.kind == RecordKind::birth;
    ends += r.kind == RecordKind::end;
  }
  CHECK(births == 3);
  CHECK(ends == 1);

  // The final read removes the ended TCP flow; the UDP flows stay until teardown.
  CHECK(drain(probes, cgid, true).size() == 3);
  auto e = probes.entries_of(cgid);
  REQUIRE(e.ok());
  CHECK(e->flows == 2);
  auto st = probes.stats();
  REQUIRE(st.ok());
  CHECK(st->records_lost == 0);
  CHECK(st->flows_created == 3);
  CHECK(st->flows_removed == 1);
  CHECK(st->flows_evicted == 0);
}

TEST_CASE("flow probes never attribute one cgroup's traffic to another", "[ebpf]") {
  LOAD_PROBES_OR_SKIP(probes);
  TestNetns ns;
  TestCgroup a, b;
  auto cell_a = attach(probes, a);
  auto cell_b = attach(probes, b);
  base::Fd udp = server(ns, AF_INET, SOCK_DGRAM);
  const int uport = port_of(udp.get());

  auto sender = [&](int n, size_t len) {
    return [=] {
      int u = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
      for (int i = 0; i < n; i++)
        if (sendto4(u, len, uport) != 0) return 1;
      return 0;
    };
  };
  pid_t ca = spawn_in_cell(a, ns, sender(3, 100));
  pid_t cb = spawn_in_cell(b, ns, sender(5, 300));
  REQUIRE(wait_child(ca) == 0);
  REQUIRE(wait_child(cb) == 0);

  const auto fa = drain(probes, cell_a.cgroup_id());
  const auto fb = drain(probes, cell_b.cgroup_id());
  REQUIRE(fa.size() == 1);
  REQUIRE(fb.size() == 1);
  CHECK(fa[0].key.cgroup_id == cell_a.cgroup_id());
  CHECK(fb[0].key.cgroup_id == cell_b.cgroup_id());
  CHECK(fa[0].counters.tx_packets == 3);
  CHECK(fa[0].counters.tx_bytes == 3 * (kIp4Udp + 100));
  CHECK(fb[0].counters.tx_packets == 5);
  CHECK(fb[0].counters.tx_bytes == 5 * (kIp4Udp + 300));
  CHECK(fa[0].key.local_port != fb[0].key.local_port);
  for (const FlowRecord& r : records(probes)) {
    REQUIRE(r.kind == RecordKind::birth);
    CHECK((r.flow.key.cgroup_id == cell_a.cgroup_id() ||
           r.flow.key.cgroup_id == cell_b.cgroup_id()));
    CHECK(r.flow.counters.tx_packets == 1);
  }
  // The receiving socket is outside both cells: no flow anywhere names its side.
  size_t all = 0;
  REQUIRE(probes.drain_all({}, [&](const Flow&) { all++; }).ok());
  CHECK(all == 2);
}

namespace {

// What the enforcement child did, one errno per attempt (0 = it worked).
struct Attempts {
  int connect_allowed = -1, connect_denied1 = -1, connect_denied2 = -1;
  int send_allowed = -1, send_denied1 = -1, send_denied2 = -1;
};

Attempts run_enforced_child(const TestCgroup& cg, const TestNetns& ns, int ta, int td, int ua,
                            int ud) {
  auto pipe = base::make_pipe();
  REQUIRE(pipe.ok());
  base::Pipe p = std::move(pipe).value();
  pid_t child = spawn_in_cell(cg, ns, [&] {
    Attempts r;
    int s = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    r.connect_allowed = connect4(s, ta);
    ::close(s);
    for (int* slot : {&r.connect_denied1, &r.connect_denied2}) {
      s = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
      *slot = connect4(s, td);
      ::close(s);
    }
    int u = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    r.send_allowed = sendto4(u, 50, ua);
    r.send_denied1 = sendto4(u, 20, ud);
    r.send_denied2 = sendto4(u, 20, ud);
    ::close(u);
    return ::write(p.write.get(), &r, sizeof r) == sizeof r ? 0 : 1;
  });
  p.write.reset();
  Attempts r;
  REQUIRE(::read(p.read.get(), &r, sizeof r) == sizeof r);
  REQUIRE(wait_child(child) == 0);
  return r;
}

}  // namespace

TEST_CASE("bpf enforcement refuses connects and drops datagrams to destinations not allowed", "[ebpf]") {
  LOAD_PROBES_OR_SKIP(probes);
  TestNetns ns;
  TestCgroup cg;
  base::Fd ta = server(ns, AF_INET, SOCK_STREAM), td = server(ns, AF_INET, SOCK_STREAM);
  base::Fd ua = server(ns, AF_INET, SOCK_DGRAM), ud = server(ns, AF_INET, SOCK_DGRAM);
  const int pta = port_of(ta.get()), ptd = port_of(td.get()), pua = port_of(ua.get()),
            pud = port_of(ud.get());
  // Loopback is not waved through here: the test's "remote" destinations all live on lo.
  auto cell = attach(probes, cg,
                     {.enforce = true,
                      .allow_loopback = false,
                      .allow = {loopback_rule(IPPROTO_TCP, pta), loopback_rule(IPPROTO_UDP, pua, 8)}});
  const Attempts r = run_enforced_child(cg, ns, pta, ptd, pua, pud);
  CHECK(r.connect_allowed == 0);
  CHECK(r.connect_denied1 == EPERM);
  CHECK(r.connect_denied2 == EPERM);
  CHECK(r.send_allowed == 0);
  // A cgroup_skb egress drop reaches a UDP sender as EPERM.
  CHECK(r.send_denied1 == EPERM);
  CHECK(r.send_denied2 == EPERM);

  char buf[256];
  CHECK(::recv(ua.get(), buf, sizeof buf, MSG_DONTWAIT) == 50);
  CHECK(::recv(ud.get(), buf, sizeof buf, MSG_DONTWAIT) < 0);  // nothing got through

  pollfd pfd{probes.ringbuf_fd(), POLLIN, 0};
  CHECK(::poll(&pfd, 1, 1000) == 1);  // a denial wakes the reader at once
  const auto recs = records(probes);
  std::vector<FlowRecord> denies;
  for (const FlowRecord& rec : recs)
    if (rec.kind == RecordKind::deny) denies.push_back(rec);
  REQUIRE(denies.size() == 2);  // one per flow, not one per attempt
  const auto flows = drain(probes, cell.cgroup_id());
  for (const FlowRecord& d : denies) {
    INFO(ebpf::describe(d.flow.key));
    CHECK(d.flow.counters.denied());
    if (d.flow.key.l4proto == IPPROTO_TCP) {
      CHECK(d.flow.key.remote_port == ptd);
      CHECK(d.flow.counters.reason == ebpf::DenyReason::connect_default_deny);
      CHECK(d.flow.counters.connects == 1);
      const Flow* f = find(flows, IPPROTO_TCP, ptd);
      REQUIRE(f != nullptr);
      CHECK(f->counters.connects == 2);
      CHECK(f->counters.denied_connect());
    } else {
      CHECK(d.flow.key.l4proto == IPPROTO_UDP);
      CHECK(d.flow.key.remote_port == pud);
      CHECK(ebpf::reason_code(d.flow.counters.reason) == "egress_default_deny");
      CHECK(d.flow.counters.tx_packets == 1);
      const Flow* f = find(flows, IPPROTO_UDP, pud);
      REQUIRE(f != nullptr);
      CHECK(f->counters.tx_packets == 2);  // both dropped datagrams, in one entry
      CHECK(f->counters.tx_bytes == 2 * (kIp4Udp + 20));
    }
  }
  const Flow* allowed = find(flows, IPPROTO_UDP, pua);
  REQUIRE(allowed != nullptr);
  CHECK_FALSE(allowed->counters.denied());
  CHECK(allowed->counters.tx_bytes == kIp4Udp + 50);
  auto st = probes.stats();
  REQUIRE(st.ok());
  CHECK(st->packets_dropped == 2);
  CHECK(st->connects_refused == 2);
}

TEST_CASE("bpf enforcement without accounting still refuses and drops but sends no births", "[ebpf]") {
  LOAD_PROBES_OR_SKIP(probes);
  TestNetns ns;
  TestCgroup cg;
  base::Fd ta = server(ns, AF_INET, SOCK_STREAM), td = server(ns, AF_INET, SOCK_STREAM);
  base::Fd ua = server(ns, AF_INET, SOCK_DGRAM), ud = server(ns, AF_INET, SOCK_DGRAM);
  const int pta = port_of(ta.get()), ptd = port_of(td.get()), pua = port_of(ua.get()),
            pud = port_of(ud.get());
  auto cell = attach(probes, cg,
                     {.account = false,
                      .enforce = true,
                      .allow_loopback = false,
                      .allow = {loopback_rule(IPPROTO_TCP, pta), loopback_rule(IPPROTO_UDP, pua)}});
  const Attempts r = run_enforced_child(cg, ns, pta, ptd, pua, pud);
  CHECK(r.connect_allowed == 0);
  CHECK(r.connect_denied1 == EPERM);
  CHECK(r.send_allowed == 0);
  CHECK(r.send_denied1 == EPERM);
  size_t denies = 0;
  for (const FlowRecord& rec : records(probes)) {
    INFO(record_kind_name(rec.kind));
    CHECK(rec.kind == RecordKind::deny);
    denies++;
  }
  CHECK(denies == 2);
  // TCP is not tracked without accounting (connect() is its enforcement point).
  CHECK(find(drain(probes, cell.cgroup_id()), IPPROTO_TCP, pta) == nullptr);
}

TEST_CASE("destroying a cell attachment detaches its programs and removes its map entries", "[ebpf]") {
  LOAD_PROBES_OR_SKIP(probes);
  TestNetns ns;
  TestCgroup cg;
  base::Fd ua = server(ns, AF_INET, SOCK_DGRAM);
  const int pua = port_of(ua.get());
  auto progs = [&](bpf_attach_type t) {
    __u32 ids[8] = {}, n = 8, flags = 0;
    REQUIRE(bpf_prog_query(cg.fd(), t, 0, &flags, ids, &n) == 0);
    return n;
  };
  const bpf_attach_type types[] = {BPF_CGROUP_INET_INGRESS, BPF_CGROUP_INET_EGRESS,
                                   BPF_CGROUP_INET4_CONNECT, BPF_CGROUP_INET6_CONNECT};
  uint64_t cgid = 0;
  {
    auto cell = attach(probes, cg,
                       {.enforce = true,
                        .allow_loopback = false,
                        .allow = {loopback_rule(IPPROTO_UDP, pua)}});
    cgid = cell.cgroup_id();
    for (auto t : types) CHECK(progs(t) == 1);
    // A second attachment of the same cgroup would count everything twice: refused.
    ebpf::CellAttachOptions same;
    same.cgroup_fd = cg.fd();
    same.cgroup_id = cgid;
    auto again = probes.attach(same);
    REQUIRE_FALSE(again.ok());
    CHECK(again.error().err == EEXIST);
    CHECK_THAT(again.error().message(), Catch::Contains("cell_config"));

    pid_t child = spawn_in_cell(cg, ns, [&] {
      int u = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
      return sendto4(u, 10, pua) == 0 && sendto4(u, 10, pua + 1) == EPERM ? 0 : 1;
    });
    REQUIRE(wait_child(child) == 0);
    auto e = probes.entries_of(cgid);
    REQUIRE(e.ok());
    CHECK(e->config);
    CHECK(e->allow_rules == 1);
    CHECK(e->flows == 2);

    // Moving the attachment moves the ownership: the moved-from one detaches nothing.
    ebpf::CellAttachment moved = std::move(cell);
    cell.reset();
    for (auto t : types) CHECK(progs(t) == 1);
  }
  for (auto t : types) CHECK(progs(t) == 0);
  auto e = probes.entries_of(cgid);
  REQUIRE(e.ok());
  CHECK_FALSE(e->config);
  CHECK(e->allow_rules == 0);
  CHECK(e->flows == 0);
  auto st = probes.stats();
  REQUIRE(st.ok());
  CHECK(st->flows_removed == 2);
  // The cgroup can be attached again.
  ebpf::CellAttachOptions same;
  same.cgroup_fd = cg.fd();
  same.cgroup_id = cgid;
  CHECK(probes.attach(same).ok());
}

TEST_CASE("a flow probe load failure is an error naming the call and the reason", "[ebpf]") {
  if (auto why = ebpf_unavailable(); !why.empty()) CELLOS_SKIP(why);
  // A hash map of no entries: the kernel refuses to create it (EINVAL).
  ebpf::FlowProbeOptions o;
  o.max_flows = 0;
  auto r = ebpf::FlowProbes::load(o);
  REQUIRE_FALSE(r.ok());
  INFO(r.error().message());
  CHECK(r.error().err != 0);
  CHECK_THAT(r.error().message(), Catch::Contains("flow_probes"));
  CHECK_THAT(r.error().message(), Catch::Contains("flows"));  // libbpf's line names the map
}

namespace {

// A bpffs of the test's own on a temporary directory (unmounted, and so emptied, at the end):
// the pins never touch the host's /sys/fs/bpf.
struct TestBpffs {
  TempDir dir;
  bool mounted = false;
  TestBpffs() {
    mounted = ::mount("bpffs", dir.path().c_str(), "bpf", 0, "mode=0700") == 0;
    REQUIRE(mounted);
  }
  ~TestBpffs() {
    if (mounted) ::umount2(dir.path().c_str(), MNT_DETACH);
  }
  std::string root() const { return dir.path() + "/pins"; }
};

size_t entries_in(const std::string& dir) {
  size_t n = 0;
  for ([[maybe_unused]] auto& e : std::filesystem::directory_iterator(dir)) ++n;
  return n;
}

}  // namespace

TEST_CASE("flow probes pinned by one reactor are reused by the next, emptied first, never shared "
          "with a reactor that holds them, and stale pins are replaced", "[ebpf]") {
  if (auto why = ebpf_unavailable(); !why.empty()) CELLOS_SKIP(why);
  TestBpffs fs;
  ebpf::FlowProbeOptions o;
  o.max_flows = 1024;
  o.max_cells = 64;
  o.pin_dir = fs.root();
  // A stale set: another build's digest directory, held by nobody.
  std::filesystem::create_directories(fs.root() + "/00000000deadbeef");

  std::string digest_dir;
  uint64_t leftover = 0;
  {
    auto first = ebpf::FlowProbes::load(o);
    INFO((first.ok() ? std::string() : first.error().message()));
    REQUIRE(first.ok());
    CHECK_FALSE((*first)->reused());
    CHECK((*first)->pinned());
    CHECK_FALSE(std::filesystem::exists(fs.root() + "/00000000deadbeef"));
    for (auto& e : std::filesystem::directory_iterator(fs.root())) digest_dir = e.path();
    REQUIRE_FALSE(digest_dir.empty());
    CHECK(entries_in(digest_dir) == 10);  // six maps, four programs

    // While it is held, another loader gets a private object, not the pins.
    auto second = ebpf::FlowProbes::load(o);
    REQUIRE(second.ok());
    CHECK_FALSE((*second)->reused());
    CHECK_FALSE((*second)->pinned());
    CHECK_THAT((*second)->pin_note(), Catch::Contains("held by another reactor"));

    // What a crashed user would leave: a cell's config entry.
    const int cfg = bpf_obj_get((digest_dir + "/cell_config").c_str());
    REQUIRE(cfg >= 0);
    leftover = 12345;
    std::array<uint8_t, 16> value{};
    REQUIRE(bpf_map_update_elem(cfg, &leftover, value.data(), BPF_ANY) == 0);
    ::close(cfg);
    auto e = (*first)->entries_of(leftover);
    REQUIRE(e.ok());
    CHECK(e->config);
  }

  // The next user takes the pins, and finds them emptied.
  auto again = ebpf::FlowProbes::load(o);
  INFO((again.ok() ? std::string() : again.error().message()));
  REQUIRE(again.ok());
  ebpf::FlowProbes& probes = **again;
  CHECK(probes.reused());
  CHECK(probes.pinned());
  auto e = probes.entries_of(leftover);
  REQUIRE(e.ok());
  CHECK_FALSE(e->config);

  // And they work: enforcement through the reused programs and maps.
  TestNetns ns;
  TestCgroup cg;
  base::Fd ta = server(ns, AF_INET, SOCK_STREAM), td = server(ns, AF_INET, SOCK_STREAM);
  base::Fd ua = server(ns, AF_INET, SOCK_DGRAM), ud = server(ns, AF_INET, SOCK_DGRAM);
  const int pta = port_of(ta.get()), ptd = port_of(td.get()), pua = port_of(ua.get()),
            pud = port_of(ud.get());
  auto cell = attach(probes, cg,
                     {.enforce = true,
                      .allow_loopback = false,
                      .allow = {loopback_rule(IPPROTO_TCP, pta), loopback_rule(IPPROTO_UDP, pua)}});
  const Attempts r = run_enforced_child(cg, ns, pta, ptd, pua, pud);
  CHECK(r.connect_allowed == 0);
  CHECK(r.connect_denied1 == EPERM);
  CHECK(r.send_allowed == 0);
  CHECK(r.send_denied1 == EPERM);
  auto st = probes.stats();
  REQUIRE(st.ok());
  CHECK(st->connects_refused == 2);  // counted from zero: the first user's counters were reset

  // Other map sizes are another object: the old pins go (nobody holds them once `again` does
  // not), the new ones are loaded afresh.
  cell.reset();
  (*again).reset();
  o.max_flows = 2048;
  auto other = ebpf::FlowProbes::load(o);
  REQUIRE(other.ok());
  CHECK_FALSE((*other)->reused());
  CHECK((*other)->pinned());
  CHECK_FALSE(std::filesystem::exists(digest_dir));
}
