// The daemon never waits on DNS: hostnames in egress rules are looked up on its ring, so a DNS
// server that never answers delays only the spec that needs it. Traffic: loopback only.
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>

#include <catch2/catch.hpp>

#include "base/fd.h"
#include "tests/support/daemon_support.h"
#include "tests/support/test_support.h"

using namespace cellos::test;
using nlohmann::json;

TEST_CASE("with a DNS server that never answers the daemon keeps admitting, killing at TTL and "
          "answering status, and the waiting spec is rejected at the lookup's timeout",
          "[daemon][dns]") {
  // A UDP port on loopback that takes the queries and never answers.
  cellos::base::Fd silent(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  REQUIRE(::bind(silent.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
  socklen_t len = sizeof a;
  REQUIRE(::getsockname(silent.get(), reinterpret_cast<sockaddr*>(&a), &len) == 0);
  // Two tries of 3 s: the lookup hangs for about 6 s, long enough for everything below.
  Fleet fleet("[network]\nresolvers = [\"127.0.0.1:" + std::to_string(ntohs(a.sin_port)) +
              "\"]\nresolve_timeout_ms = 3000\n");
  DaemonProcess daemon(fleet);

  const std::string named = unique_id("named");
  json spec = make_spec(named, {"/bin/true"});
  spec["spec"]["authority"]["egressRules"] = {{{"host", "registry.cellos.test"}, {"port", 443}}};
  spool(fleet, spec);
  const std::string quick = unique_id("quick"), sleeper = unique_id("sleeper");
  spool(fleet, make_spec(quick, {"/bin/true"}));
  json s = make_spec(sleeper, {"/bin/sleep", "60"});
  s["spec"]["lifetime"] = {{"ttlSeconds", 1}};
  spool(fleet, s);

  auto destroyed = [&](const std::string& id) {
    for (const auto& e : events_of(fleet, "lifecycle.v1.destroyed"))
      if (e["data"]["cellId"] == id) return true;
    return false;
  };
  // While the lookup hangs: the plain spec runs, the sleeper is killed at its TTL, status answers.
  REQUIRE(eventually([&] { return destroyed(quick) && destroyed(sleeper); }, std::chrono::seconds(5)));
  auto st = run_process({CELLOS_REACTOR_BIN, "status", "--config", fleet.config_path(), "--json"});
  REQUIRE(st.status == 0);
  CHECK(json::parse(st.out)["rejected"] == 0);  // the named spec is still being looked up
  bool timed_out = false;
  for (const auto& e : events_of(fleet, "command.v1.completed"))
    if (e["data"]["cellId"] == sleeper) timed_out = e["data"]["reason"] == "timeout";
  CHECK(timed_out);

  // Then the lookup times out and the spec is rejected naming the rule; it never ran.
  REQUIRE(eventually([&] { return !events_of(fleet, "rejected").empty(); }, std::chrono::seconds(20)));
  auto rejected = events_of(fleet, "rejected");
  REQUIRE(rejected.size() == 1);
  const std::string reason = rejected[0]["data"].dump();
  CHECK_THAT(reason, Catch::Contains("egressRules[0].host") &&
                         Catch::Contains("registry.cellos.test") && Catch::Contains("cannot resolve"));
  CHECK_FALSE(destroyed(named));
  daemon.signal(SIGTERM);
  CHECK(daemon.wait(std::chrono::seconds(30)) == 0);
}
