// `submit --nats --wait` on a real nats-server: the client follows the spec's claim record in
// the completion bucket and exits with the cell's exit status, wherever it ran; a spec the
// daemon rejects gets a "rejected" completion record and the client exits 125 with the reason.
#include <signal.h>

#include <catch2/catch.hpp>
#include <thread>

#include "tests/support/daemon_support.h"
#include "tests/support/nats_support.h"

namespace cellos::test {
namespace {

using namespace std::chrono_literals;
using Catch::Matchers::Contains;

ProcessResult submit_wait(const NatsServer& server, const Fleet& fleet, const nlohmann::json& spec) {
  return run_process({CELLOS_REACTOR_BIN, "submit", "--nats", server.url(), "--config",
                      fleet.config_path(), "--wait", "-"},
                     spec.dump(), 90);
}

}  // namespace

TEST_CASE("nats wait: submit --nats --wait exits with the cell's exit status and names its host, and "
          "a spec the daemon rejects exits 125 with the reason") {
  if (!NatsServer::available()) CELLOS_SKIP("nats-server is not installed");
  NatsServer server;
  Fleet fleet(nats_toml(server, 3, false), "batch_max_delay_ms = 5\n");
  DaemonProcess daemon(fleet);

  auto r = submit_wait(server, fleet, make_spec(unique_id("nwait"), {"/bin/sh", "-c", "exit 3"}));
  INFO(r.out << r.err);
  CHECK(r.status == 3);
  CHECK_THAT(r.err, Contains("finished on host " + fleet.host_id()));
  CHECK_THAT(r.err, Contains("exit status 3"));

  auto ok = submit_wait(server, fleet, make_spec(unique_id("nwait-ok"), {"/bin/true"}));
  CHECK(ok.status == 0);

  // The same id already running on the host: the daemon refuses the second message.
  const std::string id = unique_id("nwait-dup");
  REQUIRE(run_process({CELLOS_REACTOR_BIN, "submit", "--nats", server.url(), "--config",
                       fleet.config_path(), "-"},
                      make_spec(id, {"/bin/sh", "-c", "sleep 30"}).dump())
              .status == 0);
  REQUIRE(eventually([&] {
    for (const auto& e : events_of(fleet, "lifecycle.v1.started"))
      if (e.value("subject", "") == id) return true;
    return false;
  }, 30s));
  auto dup = submit_wait(server, fleet, make_spec(id, {"/bin/true"}));
  INFO(dup.out << dup.err);
  CHECK(dup.status == 125);
  CHECK_THAT(dup.err, Contains("rejected " + id));
  CHECK_THAT(dup.err, Contains("is already running"));

  daemon.signal(SIGTERM);
  daemon.signal(SIGTERM);
  CHECK(daemon.wait() >= 0);
}

}  // namespace cellos::test
