// The per-cell DNS proxy (netns/dns_proxy.h) on a real ring, in front of a real DNS server
// (dnsmasq on loopback, logging every query it receives so a test can count what left the
// proxy). The proxy listens on 127.0.0.1 in the test's own namespace here; the cell tests put
// it in a cell's. Traffic: loopback only.
#include "netns/dns_proxy.h"

#include <ldns/ldns.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <optional>

#include "base/completion.h"
#include "base/fd.h"
#include "cells/dns_authority.h"
#include "reactor/ring.h"
#include "tests/support/dnsmasq.h"
#include "tests/support/test_support.h"

namespace cellos {
namespace {

using namespace std::chrono_literals;
using test::Dnsmasq;

std::vector<uint8_t> make_query(const std::string& name, ldns_rr_type type, uint16_t id) {
  ldns_pkt* p = nullptr;
  REQUIRE(ldns_pkt_query_new_frm_str(&p, name.c_str(), type, LDNS_RR_CLASS_IN, LDNS_RD) ==
          LDNS_STATUS_OK);
  ldns_pkt_set_id(p, id);
  uint8_t* buf = nullptr;
  size_t size = 0;
  REQUIRE(ldns_pkt2wire(&buf, p, &size) == LDNS_STATUS_OK);
  std::vector<uint8_t> out(buf, buf + size);
  std::free(buf);
  ldns_pkt_free(p);
  return out;
}

bool run_until(reactor::Ring& r, const std::function<bool()>& done, std::chrono::seconds limit) {
  bool expired = false;
  base::Timer guard(&r);
  guard.start(limit, [&](int res) { expired = res == -ETIME; });
  while (!done() && !expired) REQUIRE(r.run_once().ok());
  guard.cancel();
  while (guard.armed()) REQUIRE(r.run_once().ok());
  return done();
}

// Runs the ring for `d` (answers that should never come get that long to show up).
void run_for(reactor::Ring& r, std::chrono::milliseconds d) {
  bool over = false;
  base::Timer t(&r);
  t.start(d, [&](int) { over = true; });
  while (!over) REQUIRE(r.run_once().ok());
}

bool readable(int fd) {
  pollfd p{fd, POLLIN, 0};
  return ::poll(&p, 1, 0) == 1;
}

struct Fixture {
  std::unique_ptr<reactor::Ring> ring;
  std::unique_ptr<netns::DnsProxy> proxy;
  std::vector<netns::DnsQueryReport> reports;
  std::vector<std::string> allowlist{"ok.cellos.test", "big.cellos.test", "*.wild.cellos.test",
                                     "rebind.cellos.test"};

  explicit Fixture(std::vector<std::string> upstreams,
                   std::function<std::optional<std::string>(const netns::DnsAnswer&)> on_answer = {},
                   std::chrono::milliseconds timeout = 1000ms,
                   const std::function<void(netns::DnsProxyOptions&)>& tweak = {}) {
    auto r = reactor::Ring::create({});
    REQUIRE(r.ok());
    ring = std::move(*r);
    netns::DnsProxyOptions o;
    o.listen_port = 0;
    o.upstreams = std::move(upstreams);
    o.timeout = timeout;
    o.allowed = [this](std::string_view n) { return cells::dns_name_allowed(allowlist, n); };
    o.on_answer = std::move(on_answer);
    o.on_query = [this](const netns::DnsQueryReport& q) { reports.push_back(q); };
    if (tweak) tweak(o);
    auto p = netns::DnsProxy::open(*ring, std::move(o));
    REQUIRE(p.ok());
    proxy = std::move(*p);
  }

  sockaddr_in addr() const {
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons(proxy->udp_port());
    return a;
  }

  // One UDP exchange: the answer, or nothing within `wait`.
  std::optional<std::vector<uint8_t>> udp(const std::vector<uint8_t>& q,
                                          std::chrono::seconds wait = 5s) {
    base::Fd s(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
    sockaddr_in a = addr();
    REQUIRE(::sendto(s.get(), q.data(), q.size(), 0, reinterpret_cast<sockaddr*>(&a), sizeof a) ==
            static_cast<ssize_t>(q.size()));
    if (!run_until(*ring, [&] { return readable(s.get()); }, wait)) return std::nullopt;
    std::vector<uint8_t> buf(65536);
    ssize_t n = ::recv(s.get(), buf.data(), buf.size(), 0);
    REQUIRE(n > 0);
    buf.resize(static_cast<size_t>(n));
    return buf;
  }

  // One TCP exchange (length-prefixed).
  std::optional<std::vector<uint8_t>> tcp(const std::vector<uint8_t>& q) {
    base::Fd s(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
    sockaddr_in a = addr();
    int rc = ::connect(s.get(), reinterpret_cast<sockaddr*>(&a), sizeof a);
    REQUIRE((rc == 0 || errno == EINPROGRESS));
    std::vector<uint8_t> frame(2 + q.size());
    frame[0] = static_cast<uint8_t>(q.size() >> 8);
    frame[1] = static_cast<uint8_t>(q.size());
    std::copy(q.begin(), q.end(), frame.begin() + 2);
    bool sent = false;
    std::vector<uint8_t> in;
    auto done = [&]() -> bool {
      if (!sent) {
        if (::send(s.get(), frame.data(), frame.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(frame.size()))
          sent = true;
        return false;
      }
      uint8_t b[4096];
      ssize_t n = ::recv(s.get(), b, sizeof b, MSG_DONTWAIT);
      if (n > 0) in.insert(in.end(), b, b + n);
      return in.size() >= 2 && in.size() >= 2 + (static_cast<size_t>(in[0]) << 8 | in[1]);
    };
    // The proxy's sweep timer ticks while the connection is open, so done() is polled.
    if (!run_until(*ring, done, 10s)) return std::nullopt;
    return std::vector<uint8_t>(in.begin() + 2, in.end());
  }
};

netns::DnsAnswer parsed(const std::vector<uint8_t>& wire) {
  auto a = netns::parse_answer(wire);
  REQUIRE(a.ok());
  return *a;
}

std::vector<std::string> addresses(const netns::DnsAnswer& a) {
  std::vector<std::string> out;
  for (const auto& r : a.records)
    if (r.type != netns::kDnsTypeCname) out.push_back(r.data);
  return out;
}

std::vector<std::string> big_server() {
  std::vector<std::string> o{"--address=/ok.cellos.test/10.1.2.3",
                             "--address=/x.wild.cellos.test/10.1.2.4",
                             "--address=/denied.cellos.test/10.9.9.9",
                             "--address=/rebind.cellos.test/127.0.0.1",
                             "--txt-record=ok.cellos.test,hello"};
  for (int i = 1; i <= 40; ++i) o.push_back("--address=/big.cellos.test/10.7.0." + std::to_string(i));
  return o;
}

TEST_CASE("dns proxy: an allow-listed name is forwarded and answered with the client's id",
          "[dns][dns_proxy]") {
  Dnsmasq dns(big_server());
  if (!dns.why().empty()) CELLOS_SKIP(dns.why());
  Fixture f({dns.upstream()});
  auto got = f.udp(make_query("ok.cellos.test", LDNS_RR_TYPE_A, 0x4242));
  REQUIRE(got);
  auto a = parsed(*got);
  CHECK(a.id == 0x4242);
  CHECK(a.rcode == netns::kRcodeNoError);
  CHECK(addresses(a) == std::vector<std::string>{"10.1.2.3"});
  CHECK(a.records.at(0).ttl == 300);
  // A wildcard entry, any case, over TCP too.
  got = f.tcp(make_query("X.Wild.cellos.test", LDNS_RR_TYPE_A, 7));
  REQUIRE(got);
  CHECK(addresses(parsed(*got)) == std::vector<std::string>{"10.1.2.4"});
  REQUIRE(f.reports.size() == 2);
  CHECK(f.reports[0].permitted);
  CHECK(f.reports[0].reason == "allowlist_match");
  CHECK(f.reports[0].name == "ok.cellos.test");
  CHECK(f.reports[0].transport == "udp");
  CHECK(f.reports[0].answers == std::vector<std::string>{"10.1.2.3"});
  CHECK(f.reports[0].upstream_latency_us.has_value());
  CHECK(f.reports[0].upstream == dns.upstream());
  CHECK(f.reports[1].transport == "tcp");
  CHECK(f.reports[1].name == "x.wild.cellos.test");
  CHECK(f.proxy->stats().permitted == 2);
  CHECK(dns.queries_for("ok.cellos.test") == 1);
}

TEST_CASE("dns proxy: names off the list and other types are REFUSED without leaving the host",
          "[dns][dns_proxy]") {
  Dnsmasq dns(big_server());
  if (!dns.why().empty()) CELLOS_SKIP(dns.why());
  Fixture f({dns.upstream()});
  auto got = f.udp(make_query("denied.cellos.test", LDNS_RR_TYPE_A, 1));
  REQUIRE(got);
  CHECK(parsed(*got).rcode == netns::kRcodeRefused);
  CHECK(parsed(*got).records.empty());
  // The bare suffix of a wildcard is not covered.
  got = f.udp(make_query("wild.cellos.test", LDNS_RR_TYPE_A, 2));
  REQUIRE(got);
  CHECK(parsed(*got).rcode == netns::kRcodeRefused);
  // TXT (an exfiltration channel) for an allowed name.
  got = f.udp(make_query("ok.cellos.test", LDNS_RR_TYPE_TXT, 3));
  REQUIRE(got);
  CHECK(parsed(*got).rcode == netns::kRcodeRefused);
  got = f.tcp(make_query("denied.cellos.test", LDNS_RR_TYPE_AAAA, 4));
  REQUIRE(got);
  CHECK(parsed(*got).rcode == netns::kRcodeRefused);
  REQUIRE(f.reports.size() == 4);
  CHECK(f.reports[0].reason == "hostname_not_allowlisted");
  CHECK_FALSE(f.reports[0].permitted);
  CHECK(f.reports[1].reason == "hostname_not_allowlisted");
  CHECK(f.reports[2].reason == "query_type_not_allowed");
  CHECK(f.reports[2].qtype == LDNS_RR_TYPE_TXT);
  CHECK(f.reports[3].transport == "tcp");
  CHECK(f.proxy->stats().refused == 4);
  // Nothing reached the server: the allowed A query below proves its log is being written.
  REQUIRE(f.udp(make_query("ok.cellos.test", LDNS_RR_TYPE_A, 5)));
  CHECK(dns.queries_for("ok.cellos.test") == 1);
  CHECK(dns.queries_for("denied.cellos.test") == 0);
  CHECK(dns.queries_for("wild.cellos.test") == 0);
}

TEST_CASE("dns proxy: malformed and oversized messages are dropped, counted, never answered",
          "[dns][dns_proxy]") {
  Dnsmasq dns(big_server());
  if (!dns.why().empty()) CELLOS_SKIP(dns.why());
  Fixture f({dns.upstream()});
  std::vector<uint8_t> garbage{1, 2, 3, 4, 5};
  CHECK_FALSE(f.udp(garbage, 1s));
  auto answer = make_query("ok.cellos.test", LDNS_RR_TYPE_A, 9);
  answer[2] |= 0x80;  // QR: an answer sent as a query (reflection)
  CHECK_FALSE(f.udp(answer, 1s));
  auto big = make_query("ok.cellos.test", LDNS_RR_TYPE_A, 10);
  big.resize(netns::kMaxDnsQueryBytes + 1, 0);
  CHECK_FALSE(f.udp(big, 1s));
  CHECK(f.proxy->stats().malformed == 2);
  CHECK(f.proxy->stats().oversized == 1);
  REQUIRE(f.reports.size() == 3);
  CHECK(f.reports[0].dropped);
  CHECK(f.reports[0].reason == "malformed_query");
  CHECK(f.reports[2].reason == "oversized_query");
  // The proxy still serves.
  CHECK(f.udp(make_query("ok.cellos.test", LDNS_RR_TYPE_A, 11)));
  CHECK(dns.queries_for("ok.cellos.test") == 1);
}

TEST_CASE("dns proxy: a truncated UDP answer reaches the client, which gets it whole over TCP",
          "[dns][dns_proxy]") {
  Dnsmasq dns(big_server());
  if (!dns.why().empty()) CELLOS_SKIP(dns.why());
  Fixture f({dns.upstream()});
  auto got = f.udp(make_query("big.cellos.test", LDNS_RR_TYPE_A, 21));
  REQUIRE(got);
  auto a = parsed(*got);
  CHECK(a.truncated);
  CHECK(a.records.size() < 40);
  got = f.tcp(make_query("big.cellos.test", LDNS_RR_TYPE_A, 22));
  REQUIRE(got);
  a = parsed(*got);
  CHECK_FALSE(a.truncated);
  CHECK(a.id == 22);
  CHECK(addresses(a).size() == 40);
  CHECK(f.proxy->stats().tcp_connections == 1);
}

TEST_CASE("dns proxy: a silent upstream is retried, then the client gets SERVFAIL",
          "[dns][dns_proxy]") {
  base::Fd silent(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  REQUIRE(::bind(silent.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
  socklen_t len = sizeof a;
  REQUIRE(::getsockname(silent.get(), reinterpret_cast<sockaddr*>(&a), &len) == 0);
  Fixture f({"127.0.0.1:" + std::to_string(ntohs(a.sin_port))}, {}, 200ms);
  auto got = f.udp(make_query("ok.cellos.test", LDNS_RR_TYPE_A, 31));
  REQUIRE(got);
  CHECK(parsed(*got).rcode == netns::kRcodeServfail);
  CHECK(parsed(*got).id == 31);
  CHECK(f.proxy->stats().upstream_retries == 1);
  REQUIRE(f.reports.size() == 1);
  CHECK(f.reports[0].reason == "upstream_timeout");
  // Both tries reached the silent server, each with the proxy's own id, not the client's.
  uint8_t b[512];
  int seen = 0;
  while (::recv(silent.get(), b, sizeof b, MSG_DONTWAIT) > 0) ++seen;
  CHECK(seen == 2);
  CHECK(f.proxy->pending() == 0);
}

TEST_CASE("dns proxy: an answer the policy rejects becomes REFUSED with its reason",
          "[dns][dns_proxy]") {
  Dnsmasq dns(big_server());
  if (!dns.why().empty()) CELLOS_SKIP(dns.why());
  Fixture f({dns.upstream()}, [](const netns::DnsAnswer& a) -> std::optional<std::string> {
    for (const auto& r : a.records)
      if (r.data == "127.0.0.1") return "rebind_rejected";
    return std::nullopt;
  });
  auto got = f.udp(make_query("rebind.cellos.test", LDNS_RR_TYPE_A, 41));
  REQUIRE(got);
  auto a = parsed(*got);
  CHECK(a.rcode == netns::kRcodeRefused);
  CHECK(a.records.empty());
  REQUIRE(f.reports.size() == 1);
  CHECK(f.reports[0].reason == "rebind_rejected");
  CHECK_FALSE(f.reports[0].permitted);
  got = f.udp(make_query("ok.cellos.test", LDNS_RR_TYPE_A, 42));
  REQUIRE(got);
  CHECK(parsed(*got).rcode == netns::kRcodeNoError);
}

TEST_CASE("dns proxy: destroyed with queries in flight, its state goes with the last completion",
          "[dns][dns_proxy]") {
  base::Fd silent(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  REQUIRE(::bind(silent.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
  socklen_t len = sizeof a;
  REQUIRE(::getsockname(silent.get(), reinterpret_cast<sockaddr*>(&a), &len) == 0);
  Fixture f({"127.0.0.1:" + std::to_string(ntohs(a.sin_port))}, {}, 5000ms);
  base::Fd s(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  auto q = make_query("ok.cellos.test", LDNS_RR_TYPE_A, 51);
  sockaddr_in pa = f.addr();
  REQUIRE(::sendto(s.get(), q.data(), q.size(), 0, reinterpret_cast<sockaddr*>(&pa), sizeof pa) > 0);
  REQUIRE(run_until(*f.ring, [&] { return f.proxy->pending() == 1; }, 5s));
  const uint16_t port = f.proxy->udp_port();
  f.proxy.reset();
  run_for(*f.ring, 100ms);  // the cancelled operations complete; nothing is called back
  CHECK(f.reports.empty());
  // The port is free again: the sockets were closed.
  base::Fd again(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  sockaddr_in b = pa;
  b.sin_port = htons(port);
  CHECK(::bind(again.get(), reinterpret_cast<sockaddr*>(&b), sizeof b) == 0);
}

}  // namespace
}  // namespace cellos

namespace cellos {
namespace {

base::Fd silent_server(int& port) {
  base::Fd fd(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  REQUIRE(::bind(fd.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
  socklen_t len = sizeof a;
  REQUIRE(::getsockname(fd.get(), reinterpret_cast<sockaddr*>(&a), &len) == 0);
  port = ntohs(a.sin_port);
  return fd;
}

TEST_CASE("dns proxy: past max_pending queries upstream, the next gets SERVFAIL at once",
          "[dns][dns_proxy]") {
  int port = 0;
  base::Fd silent = silent_server(port);
  Fixture f({"127.0.0.1:" + std::to_string(port)}, {}, 5000ms,
            [](netns::DnsProxyOptions& o) { o.max_pending = 1; });
  base::Fd s(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  auto q = make_query("ok.cellos.test", LDNS_RR_TYPE_A, 61);
  sockaddr_in pa = f.addr();
  REQUIRE(::sendto(s.get(), q.data(), q.size(), 0, reinterpret_cast<sockaddr*>(&pa), sizeof pa) > 0);
  REQUIRE(run_until(*f.ring, [&] { return f.proxy->pending() == 1; }, 5s));
  auto got = f.udp(make_query("ok.cellos.test", LDNS_RR_TYPE_AAAA, 62), 2s);
  REQUIRE(got);
  CHECK(parsed(*got).rcode == netns::kRcodeServfail);
  REQUIRE(f.reports.size() == 1);
  CHECK(f.reports[0].reason == "proxy_busy");
}

TEST_CASE("dns proxy: TCP clients past max_tcp_clients are closed, idle ones after tcp_idle",
          "[dns][dns_proxy]") {
  Dnsmasq dns(big_server());
  if (!dns.why().empty()) CELLOS_SKIP(dns.why());
  Fixture f({dns.upstream()}, {}, 1000ms, [](netns::DnsProxyOptions& o) {
    o.max_tcp_clients = 1;
    o.tcp_idle = 300ms;
  });
  auto connect = [&] {
    base::Fd c(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_in a = f.addr();
    REQUIRE(::connect(c.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
    return c;
  };
  // Closed by the proxy: a read returns 0 (EOF) or ECONNRESET.
  auto closed = [](int fd) {
    char b;
    ssize_t n = ::recv(fd, &b, 1, MSG_DONTWAIT);
    return n == 0 || (n < 0 && errno == ECONNRESET);
  };
  base::Fd first = connect();
  REQUIRE(run_until(*f.ring, [&] { return f.proxy->stats().tcp_connections == 1; }, 5s));
  base::Fd second = connect();
  REQUIRE(run_until(*f.ring, [&] { return f.proxy->stats().tcp_refused == 1; }, 5s));
  CHECK(run_until(*f.ring, [&] { return closed(second.get()); }, 5s));
  CHECK_FALSE(closed(first.get()));
  // The first one, silent, is closed once idle.
  CHECK(run_until(*f.ring, [&] { return closed(first.get()); }, 5s));
}

}  // namespace
}  // namespace cellos
