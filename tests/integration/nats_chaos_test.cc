// Chaos on a NATS fleet: three daemons, 300 specs of random length submitted in waves, the
// nats-server SIGKILLed and restarted 20 times (every other time a moment after a wave, while
// the hosts pull and claim it), and one daemon SIGKILLed and started again mid-run. Every spec
// completes exactly once across the hosts, has exactly one completion record, and leaves the
// queue; each host's stream is its local log and verifies.
//
// The seed is printed; CELLOS_CHAOS_SEED=<seed> replays its schedule (the kernel's and the
// server's timing still differ run to run).
#include <signal.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <memory>
#include <random>
#include <thread>

#include "tests/support/daemon_support.h"
#include "tests/support/nats_support.h"

namespace cellos::test {
namespace {

using namespace std::chrono_literals;

constexpr const char* kSpecs = "CELLOS_SPECS";
constexpr int kSpecsTotal = 300, kWaves = 20, kRestarts = 20;

std::map<std::string, int> completions(const std::vector<std::unique_ptr<Fleet>>& fleets) {
  std::map<std::string, int> n;
  for (const auto& f : fleets)
    for (const auto& e : events_of(*f, "command.v1.completed")) ++n[e.value("subject", "")];
  return n;
}

// JetStream answers (a restarted server recovers its streams first).
bool jetstream_ready(const NatsServer& s) {
  auto info = s.js_api(std::string("STREAM.INFO.") + kSpecs, nlohmann::json::object());
  return !info.is_discarded() && info.contains("state");
}

uint64_t seed_from_env() {
  if (const char* s = std::getenv("CELLOS_CHAOS_SEED"); s && *s) return std::strtoull(s, nullptr, 10);
  return std::random_device{}();
}

}  // namespace

TEST_CASE("nats chaos: 300 specs on three daemons through 20 server SIGKILLs and a daemon SIGKILL run exactly once each") {
  if (!NatsServer::available()) CELLOS_SKIP("nats-server is not installed");
  const uint64_t seed = seed_from_env();
  std::fprintf(stderr, "nats chaos: seed %llu (CELLOS_CHAOS_SEED=%llu replays it)\n",
               static_cast<unsigned long long>(seed), static_cast<unsigned long long>(seed));
  INFO("seed " << seed);
  std::mt19937_64 rng(seed);
  NatsServer server;
  std::vector<std::unique_ptr<Fleet>> fleets;
  std::vector<std::unique_ptr<DaemonProcess>> daemons;
  for (int i = 0; i < 3; ++i) {
    fleets.push_back(std::make_unique<Fleet>(nats_toml(server, 3), "batch_max_delay_ms = 5\n",
                                             "max_concurrent_cells = 6\n"));
    daemons.push_back(std::make_unique<DaemonProcess>(*fleets.back()));
  }
  std::vector<std::string> ids, jsons;
  std::uniform_int_distribution<int> centis(0, 250);
  for (int i = 0; i < kSpecsTotal; ++i) {
    ids.push_back(unique_id("chaos"));
    char len[16];
    const int c = centis(rng);
    std::snprintf(len, sizeof len, "%d.%02d", c / 100, c % 100);
    jsons.push_back(make_spec(ids.back(), {"/bin/sleep", len}).dump());
  }
  std::uniform_int_distribution<int> burst_ms(0, 150), quiet_ms(300, 3000);
  const int per_wave = kSpecsTotal / kWaves;
  const int kill_daemon_at = 7, restart_daemon_at = 11;
  for (int wave = 0; wave < kWaves; ++wave) {
    REQUIRE(eventually([&] { return wave == 0 || jetstream_ready(server); }, 30s));
    std::vector<std::string> batch(jsons.begin() + wave * per_wave, jsons.begin() + (wave + 1) * per_wave);
    // Submitted while the server is up and its JetStream answers (never sent twice: a publish
    // whose answer was lost would be queued twice, a second message of the same id).
    REQUIRE(submit_all(server, batch, fleets[0]->dir()) == per_wave);
    if (wave < kRestarts) {
      // Even waves: killed into the burst of deliveries and claims the wave causes.
      std::this_thread::sleep_for(std::chrono::milliseconds(wave % 2 == 0 ? burst_ms(rng) : quiet_ms(rng)));
      server.restart();
    }
    if (wave == kill_daemon_at) {
      daemons[2]->signal(SIGKILL);
      REQUIRE(daemons[2]->wait() == 128 + SIGKILL);
    }
    if (wave == restart_daemon_at) {
      // The dead daemon's socket file is still there: DaemonProcess waits for a fresh one.
      ::unlink((fleets[2]->state_dir() + "/reactor.sock").c_str());
      daemons[2] = std::make_unique<DaemonProcess>(*fleets[2]);
    }
  }
  bool all = eventually([&] {
    auto d = completions(fleets);
    for (const auto& id : ids)
      if (!d.count(id)) return false;
    return true;
  }, 150s);
  std::this_thread::sleep_for(4s);  // past AckWait: a spec run twice would show up now
  auto done = completions(fleets);
  std::vector<std::string> lost, twice;
  for (const auto& id : ids) {
    auto it = done.find(id);
    if (it == done.end()) lost.push_back(id);
    else if (it->second != 1) twice.push_back(id);
  }
  INFO("lost: " << lost.size() << (lost.empty() ? "" : " e.g. " + lost[0]));
  INFO("ran twice: " << twice.size() << (twice.empty() ? "" : " e.g. " + twice[0]));
  REQUIRE(all);
  REQUIRE(lost.empty());
  REQUIRE(twice.empty());

  // Every spec acked off the queue, and one completion record each, completed.
  bool drained = eventually([&] { return server.stream_messages(kSpecs) == 0; }, 30s);
  if (!drained) {
    INFO("stream: " << server.js_api(std::string("STREAM.INFO.") + kSpecs, nlohmann::json::object()).dump());
    INFO("consumer: " << server.js_api(std::string("CONSUMER.INFO.") + kSpecs + ".cellos-reactor",
                                       nlohmann::json::object()).dump());
    std::string errs;
    for (auto& d : daemons) errs += d->err().substr(d->err().size() > 3000 ? d->err().size() - 3000 : 0);
    INFO(errs);
    REQUIRE(drained);
  }
  auto recs = kv_records(server, "cellos-completions");
  std::map<std::string, int> records;
  size_t not_completed = 0;
  for (const auto& [key, r] : recs) {
    if (r.is_discarded()) continue;
    ++records[r.value("specId", "")];
    if (r.value("state", "") != "completed") ++not_completed;
  }
  CHECK(not_completed == 0);
  for (const auto& id : ids) CHECK(records[id] == 1);

  for (auto& f : fleets) {
    std::string stream;
    bool same = eventually([&] {
      stream = fetch_events(server, f->host_id());
      return stream == read_text(f->events_path());
    }, 30s);
    INFO("host " << f->host_id() << ": stream " << stream.size() << " bytes, local log "
                 << read_text(f->events_path()).size() << " bytes");
    REQUIRE(same);
    const std::string copy = f->dir() + "/from-stream.jsonl";
    write_text(copy, stream);
    auto v = run_process({CELLOS_REACTOR_BIN, "verify", copy});
    INFO(v.out << v.err);
    REQUIRE(v.status == 0);
  }
  for (auto& d : daemons) d->signal(SIGTERM);
  for (auto& d : daemons) REQUIRE(d->wait() == 0);
}

}  // namespace cellos::test
