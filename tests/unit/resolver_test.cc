// Hostname lookups on the ring (netns/resolver.h): answered by a real DNS server (dnsmasq) on
// loopback, refused names named, and a DNS server that never answers costing the reactor
// nothing but a pending lookup that ends in a timeout. Traffic: loopback only.
#include "netns/resolver.h"

#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <optional>

#include "base/completion.h"
#include "base/fd.h"
#include "cells/config.h"
#include "cells/egress.h"
#include "reactor/ring.h"
#include "tests/support/test_support.h"

extern char** environ;

namespace cellos {
namespace {

using namespace std::chrono_literals;

std::unique_ptr<reactor::Ring> ring() {
  auto r = reactor::Ring::create({});
  REQUIRE(r.ok());
  return std::move(*r);
}

// A UDP port on 127.0.0.1 that takes datagrams and never answers: a hung DNS server.
struct SilentServer {
  base::Fd fd;
  int port = 0;
  SilentServer() {
    fd = base::Fd(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(::bind(fd.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
    socklen_t len = sizeof a;
    REQUIRE(::getsockname(fd.get(), reinterpret_cast<sockaddr*>(&a), &len) == 0);
    port = ntohs(a.sin_port);
  }
};

// dnsmasq on 127.0.0.1:<free port> answering only the names it is given, nothing upstream.
struct Dnsmasq {
  pid_t pid = -1;
  int port = 0;
  std::string why;  // set when it cannot run here
  explicit Dnsmasq(const std::vector<std::string>& addresses) {
    if (::access("/usr/sbin/dnsmasq", X_OK) != 0) {
      why = "dnsmasq is not installed (scripts/install-deps.sh installs dnsmasq-base)";
      return;
    }
    { SilentServer probe; port = probe.port; }  // a port free a moment ago
    std::vector<std::string> args{"/usr/sbin/dnsmasq", "--keep-in-foreground", "--no-resolv",
                                  "--no-hosts", "--bind-interfaces", "--listen-address=127.0.0.1",
                                  "--port=" + std::to_string(port), "--pid-file=", "--user=root",
                                  "--log-facility=/dev/null"};
    for (const auto& a : addresses) args.push_back("--address=" + a);
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    if (posix_spawn(&pid, argv[0], nullptr, nullptr, argv.data(), environ) != 0) {
      why = "posix_spawn dnsmasq failed";
      pid = -1;
    }
    ::usleep(200000);  // dnsmasq binds before it answers; lookups retry anyway
  }
  ~Dnsmasq() {
    if (pid > 0) {
      ::kill(pid, SIGTERM);
      ::waitpid(pid, nullptr, 0);
    }
  }
};

// Runs the ring until `done` holds or `limit` passes (a ring timeout as the guard).
bool run_until(reactor::Ring& r, const std::function<bool()>& done, std::chrono::seconds limit) {
  bool expired = false;
  base::Timer guard(&r);
  guard.start(limit, [&](int res) { expired = res == -ETIME; });
  while (!done() && !expired) REQUIRE(r.run_once().ok());
  guard.cancel();
  while (guard.armed()) REQUIRE(r.run_once().ok());
  return done();
}

TEST_CASE("resolver: a real DNS server's answer, every address, from a completion", "[resolver]") {
  Dnsmasq dns({"/build.cellos.test/10.1.2.3", "/build.cellos.test/fd00::7"});
  if (!dns.why.empty()) CELLOS_SKIP(dns.why);
  auto r = ring();
  auto res = netns::Resolver::create(*r, {{"127.0.0.1:" + std::to_string(dns.port)}, 1000ms, 3});
  REQUIRE(res.ok());
  std::optional<base::Result<std::vector<std::string>>> got;
  (*res)->resolve("build.cellos.test", [&](auto a) { got = std::move(a); });
  CHECK_FALSE(got);  // never from inside resolve()
  REQUIRE(run_until(*r, [&] { return got.has_value(); }, 10s));
  REQUIRE(got->ok());
  auto& v = **got;
  CHECK(std::find(v.begin(), v.end(), "10.1.2.3") != v.end());
  CHECK(std::find(v.begin(), v.end(), "fd00::7") != v.end());
}

TEST_CASE("resolver: a name the server does not know fails naming it", "[resolver]") {
  Dnsmasq dns({"/build.cellos.test/10.1.2.3"});
  if (!dns.why.empty()) CELLOS_SKIP(dns.why);
  auto r = ring();
  auto res = netns::Resolver::create(*r, {{"127.0.0.1:" + std::to_string(dns.port)}, 1000ms, 3});
  REQUIRE(res.ok());
  cells::Spec spec;
  spec.egress_rules = {{"10.0.0.1", 1, {}, {}}, {"nothing.cellos.test", 443, {}, {}}};
  REQUIRE(cells::needs_resolution(spec));
  std::optional<base::Result<void>> done;
  cells::resolve_egress(spec, **res, [&](base::Result<void> x) { done = std::move(x); });
  REQUIRE(run_until(*r, [&] { return done.has_value(); }, 10s));
  REQUIRE_FALSE(done->ok());
  CHECK_THAT(done->error().message(),
             Catch::Contains("spec.authority.egressRules[1].host") &&
                 Catch::Contains("\"nothing.cellos.test\": cannot resolve"));
  CHECK(spec.egress_rules[0].resolved.empty());  // an IP is left alone
}

TEST_CASE("resolver: a DNS server that never answers ends in a timeout while the ring keeps "
          "serving",
          "[resolver]") {
  SilentServer silent;
  auto r = ring();
  auto res = netns::Resolver::create(*r, {{"127.0.0.1:" + std::to_string(silent.port)}, 300ms, 2});
  REQUIRE(res.ok());
  std::optional<base::Result<std::vector<std::string>>> got;
  (*res)->resolve("hung.cellos.test", [&](auto a) { got = std::move(a); });
  // Other work on the ring completes while the lookup hangs.
  int ticks = 0;
  base::Timer tick(r.get());
  std::function<void(int)> again = [&](int) {
    if (++ticks < 5) tick.start(10ms, again);
  };
  tick.start(10ms, again);
  REQUIRE(run_until(*r, [&] { return got.has_value(); }, 10s));
  CHECK(ticks == 5);
  REQUIRE_FALSE(got->ok());
  CHECK(got->error().err == ETIMEDOUT);
  CHECK_THAT(got->error().message(), Catch::Contains("hung.cellos.test"));
  CHECK((*res)->pending() == 0);
}

TEST_CASE("resolver: lookups pending at destruction end with ECANCELED", "[resolver]") {
  SilentServer silent;
  auto r = ring();
  auto res = netns::Resolver::create(*r, {{"127.0.0.1:" + std::to_string(silent.port)}, 5000ms, 2});
  REQUIRE(res.ok());
  std::optional<base::Result<std::vector<std::string>>> got;
  (*res)->resolve("hung.cellos.test", [&](auto a) { got = std::move(a); });
  REQUIRE(r->run_once().ok());  // the query is on the wire
  r->close();                   // as the Host does: the ring first
  res->reset();
  REQUIRE(got);
  CHECK(got->error().err == ECANCELED);
}

TEST_CASE("resolver: a resolvers entry that is not an address is refused naming the key",
          "[resolver]") {
  CHECK_THROWS_WITH(cells::parse_config("[network]\nresolvers = [\"dns.example\"]\n", "fleet.toml"),
                    Catch::Contains("network.resolvers"));
  auto c = cells::parse_config("[network]\nresolvers = [\"127.0.0.1:5353\", \"[::1]:53\", \"10.0.0.2\"]\n",
                               "fleet.toml");
  CHECK(c.network.resolvers.size() == 3);
}

}  // namespace
}  // namespace cellos
