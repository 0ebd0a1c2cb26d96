// The cell's network: its own namespace with loopback up and nothing else.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <catch2/catch.hpp>

#include "tests/support/test_support.h"

using namespace cellos::test;

namespace {

// A listener on the host's loopback, on a port the kernel picks.
struct HostListener {
  int fd = -1;
  int port = 0;
  HostListener() {
    fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    REQUIRE(::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
    REQUIRE(::listen(fd, 8) == 0);
    REQUIRE(::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) == 0);
    port = ntohs(a.sin_port);
  }
  ~HostListener() { ::close(fd); }
};

}  // namespace

TEST_CASE("a listener on the host's loopback is unreachable from a cell", "[net]") {
  Fleet fleet;
  HostListener host;
  // Sanity: the host itself reaches it, so a refusal below is the cell's isolation.
  auto direct = run_process({probe_path(), "connect", "127.0.0.1", std::to_string(host.port)});
  REQUIRE(direct.out == "connected\n");
  auto r = fleet.run(make_spec(unique_id("net"), {fleet.probe(), "connect", "127.0.0.1",
                                                  std::to_string(host.port)})
                         .dump());
  CHECK(r.status == 1);
  CHECK_THAT(r.out, Catch::Contains("Connection refused"));
}

TEST_CASE("the cell's own loopback works", "[net]") {
  Fleet fleet;
  auto r = fleet.run(make_spec(unique_id("lo"), {fleet.probe(), "loopback-echo"}).dump());
  CHECK(r.status == 0);
  CHECK(r.out == "loopback ok\n");
}

TEST_CASE("a cell has no network interface but loopback", "[net]") {
  Fleet fleet;
  auto r = fleet.run(make_spec(unique_id("ifs"),
                               {"/bin/sh", "-c", "tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' '"})
                         .dump());
  CHECK(r.status == 0);
  CHECK(r.out == "lo\n");
}

TEST_CASE("the network_policy event records isolation and the declared egress", "[net]") {
  Fleet fleet;
  auto spec = make_spec(unique_id("policy"), {"/bin/true"});
  spec["spec"]["authority"] = {
      {"egressRules", {{{"host", "10.1.2.3"}, {"port", 443}, {"protocol", "tcp"}},
                       {{"host", "localhost"}, {"port", 80}}}}};
  auto r = fleet.run(spec.dump());
  REQUIRE(r.status == 0);
  auto p = r.event("observability.v1.network_policy");
  CHECK(p["isolationMode"] == "clone_newnet");
  CHECK(p["declaredEgressCount"] == 2);
  CHECK(p["declaredEgress"][0] ==
        nlohmann::json{{"host", "10.1.2.3"}, {"port", 443}, {"protocol", "tcp"}});
  CHECK(p["declaredEgress"][1]["protocol"].is_null());
}
