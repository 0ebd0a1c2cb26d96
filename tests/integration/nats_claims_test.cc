// Claims in the completion bucket (reactor/nats/claims.h), on a real nats-server: a consumer
// deleted and made again mid-run delivers specs already run as first deliveries, and none runs
// twice; a host stopped (SIGSTOP) past the takeover window loses its claim to another host,
// and when continued kills its cell and completes nothing; a daemon killed before its
// completion was recorded records it from its journal when it starts again; `submit --config`
// with [intake.nats] publishes to the work queue (the spool only with --spool).
#include <signal.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <map>
#include <memory>
#include <set>
#include <thread>

#include "tests/support/daemon_support.h"
#include "tests/support/nats_support.h"

namespace cellos::test {
namespace {

using namespace std::chrono_literals;

constexpr const char* kSpecs = "CELLOS_SPECS";
constexpr const char* kBucket = "cellos-completions";

std::map<std::string, int> per_cell(const std::vector<const Fleet*>& fleets, const std::string& suffix) {
  std::map<std::string, int> n;
  for (const Fleet* f : fleets)
    for (const auto& e : events_of(*f, suffix)) ++n[e.value("subject", "")];
  return n;
}

void require_once_each(const std::map<std::string, int>& m, const std::vector<std::string>& ids,
                       const std::string& what) {
  std::vector<std::string> lost, twice;
  for (const auto& id : ids) {
    auto it = m.find(id);
    if (it == m.end()) lost.push_back(id);
    else if (it->second != 1) twice.push_back(id);
  }
  INFO(what << ": missing " << lost.size() << (lost.empty() ? "" : " e.g. " + lost[0]));
  INFO(what << ": more than once " << twice.size() << (twice.empty() ? "" : " e.g. " + twice[0]));
  REQUIRE(lost.empty());
  REQUIRE(twice.empty());
}

// The completion records of `ids`: exactly one per id, completed.
void require_one_completed_record_each(const NatsServer& s, const std::vector<std::string>& ids) {
  auto recs = kv_records(s, kBucket);
  std::map<std::string, int> per_id;
  std::vector<std::string> not_completed;
  for (const auto& [key, r] : recs) {
    if (r.is_discarded()) continue;
    ++per_id[r.value("specId", "")];
    if (r.value("state", "") != "completed") not_completed.push_back(key + " " + r.dump());
  }
  require_once_each(per_id, ids, "completion records");
  INFO("not completed: " << not_completed.size() << (not_completed.empty() ? "" : " e.g. " + not_completed[0]));
  REQUIRE(not_completed.empty());
}

}  // namespace

TEST_CASE("nats claims: a durable consumer deleted and made again mid-run delivers specs already run afresh and none runs twice") {
  if (!NatsServer::available()) CELLOS_SKIP("nats-server is not installed");
  NatsServer server;
  Fleet a(nats_toml(server, 3), "batch_max_delay_ms = 5\n", "max_concurrent_cells = 3\n");
  Fleet b(nats_toml(server, 3), "batch_max_delay_ms = 5\n", "max_concurrent_cells = 3\n");
  DaemonProcess da(a), db(b);
  std::vector<std::string> ids, jsons;
  for (int i = 0; i < 40; ++i) {
    ids.push_back(unique_id("cd"));
    jsons.push_back(make_spec(ids.back(), {"/bin/sleep", "1"}).dump());
  }
  REQUIRE(submit_all(server, jsons, a.dir()) == 40);
  const std::vector<const Fleet*> both = {&a, &b};
  // Deleted while cells run: their specs are in the stream, delivered and not acked.
  std::set<std::string> running;
  REQUIRE(eventually([&] {
    auto started = per_cell(both, "lifecycle.v1.started"), done = per_cell(both, "command.v1.completed");
    running.clear();
    for (const auto& [id, n] : started)
      if (!done.count(id)) running.insert(id);
    return started.size() >= 6 && running.size() >= 3;
  }, 60s));
  auto del = server.js_api(std::string("CONSUMER.DELETE.") + kSpecs + ".cellos-reactor", nlohmann::json::object());
  INFO(del.dump());
  REQUIRE(del.value("success", false));
  // Made again as the daemons make it: it starts from the stream's first message, so every
  // spec running now comes again as a first delivery (NumDelivered 1).
  const nlohmann::json config = {{"durable_name", "cellos-reactor"}, {"deliver_policy", "all"},
                                 {"ack_policy", "explicit"}, {"ack_wait", 3000000000LL},
                                 {"max_deliver", -1}, {"filter_subject", "cellos.specs"},
                                 {"max_ack_pending", 100000}, {"max_waiting", 512},
                                 {"replay_policy", "instant"}};
  auto made = server.js_api(std::string("CONSUMER.DURABLE.CREATE.") + kSpecs + ".cellos-reactor",
                            {{"stream_name", kSpecs}, {"config", config}});
  INFO(made.dump());  // a daemon's companion may have made it first
  REQUIRE(eventually([&] {
    auto info = server.js_api(std::string("CONSUMER.INFO.") + kSpecs + ".cellos-reactor", nlohmann::json::object());
    return !info.is_discarded() && info.contains("config");
  }, 10s));

  REQUIRE(eventually([&] {
    auto done = per_cell(both, "command.v1.completed");
    for (const auto& id : ids)
      if (!done.count(id)) return false;
    return true;
  }, 120s));
  std::this_thread::sleep_for(4s);  // past AckWait: a spec run twice would show up now
  INFO(da.err() << db.err());
  require_once_each(per_cell(both, "lifecycle.v1.started"), ids, "started");
  require_once_each(per_cell(both, "command.v1.completed"), ids, "completed");
  REQUIRE(eventually([&] { return server.stream_messages(kSpecs) == 0; }, 20s));
  require_one_completed_record_each(server, ids);
  da.signal(SIGTERM);
  db.signal(SIGTERM);
  REQUIRE(da.wait() == 0);
  REQUIRE(db.wait() == 0);
}

TEST_CASE("nats claims: a host stopped past the takeover window is fenced: another host takes the spec over, and the stopped host, continued, kills its cell and completes nothing") {
  if (!NatsServer::available()) CELLOS_SKIP("nats-server is not installed");
  NatsServer server;
  Fleet a(nats_toml(server, 3), "batch_max_delay_ms = 5\n", "max_concurrent_cells = 2\n");
  Fleet b(nats_toml(server, 3), "batch_max_delay_ms = 5\n", "max_concurrent_cells = 2\n");
  DaemonProcess da(a);
  const std::string id = unique_id("fence");
  // Long enough to outlast the stop, the takeover window and the fencing on host a.
  REQUIRE(submit_all(server, {make_spec(id, {"/bin/sleep", "40"}).dump()}, a.dir()) == 1);
  REQUIRE(eventually([&] { return !events_of(a, "lifecycle.v1.started").empty(); }, 30s));
  REQUIRE(eventually([&] { return companion_pid(da.pid()) > 0; }, 10s));
  const pid_t comp = companion_pid(da.pid());
  // The whole host stops: its daemon (no heartbeat) and its companion (no renewal).
  REQUIRE(::kill(da.pid(), SIGSTOP) == 0);
  REQUIRE(::kill(comp, SIGSTOP) == 0);
  DaemonProcess db(b);
  // After AckWait the spec comes to b, claimed by a; b hands it back until a's claim has stood
  // unrenewed for the takeover window (3 AckWaits), then takes it over and runs it.
  REQUIRE(eventually([&] { return !events_of(b, "lifecycle.v1.started").empty(); }, 90s));
  CHECK(events_of(a, "command.v1.completed").empty());  // a's cell still runs
  REQUIRE(::kill(comp, SIGCONT) == 0);
  REQUIRE(::kill(da.pid(), SIGCONT) == 0);
  // a's next heartbeat finds b's claim: a kills its cell.
  REQUIRE(eventually([&] { return !events_of(a, "command.v1.completed").empty(); }, 30s));
  auto killed = events_of(a, "command.v1.completed");
  REQUIRE(killed.size() == 1);
  INFO(killed[0].dump());
  CHECK(killed[0]["data"].value("reason", "") != "exited");
  CHECK(da.err().find("fenced") != std::string::npos);
  // b completes it; the one record is b's, completed; the queue is empty.
  REQUIRE(eventually([&] { return !events_of(b, "command.v1.completed").empty(); }, 90s));
  CHECK(events_of(b, "command.v1.completed")[0]["data"].value("exitCode", -1) == 0);
  REQUIRE(eventually([&] { return server.stream_messages(kSpecs) == 0; }, 20s));
  auto recs = kv_records(server, kBucket);
  REQUIRE(recs.size() == 1);
  const auto& rec = recs.begin()->second;
  INFO(rec.dump());
  CHECK(rec.value("state", "") == "completed");
  CHECK(rec.value("hostId", "") == b.host_id());
  CHECK(rec.value("takenOverFrom", "") == a.host_id());
  std::this_thread::sleep_for(4s);  // past AckWait: nothing comes again
  CHECK(events_of(a, "lifecycle.v1.started").size() == 1);
  CHECK(events_of(b, "lifecycle.v1.started").size() == 1);
  da.signal(SIGTERM);
  db.signal(SIGTERM);
  REQUIRE(da.wait() == 0);
  REQUIRE(db.wait() == 0);
}

TEST_CASE("nats claims: a daemon killed after a cell finished but before its completion was recorded has no completed event on disk, records it from its journal when it starts again, writes its events then and never runs it twice") {
  if (!NatsServer::available()) CELLOS_SKIP("nats-server is not installed");
  NatsServer server;
  Fleet fleet(nats_toml(server, 3), "batch_max_delay_ms = 5\n", "max_concurrent_cells = 2\n");
  auto daemon = std::make_unique<DaemonProcess>(fleet);
  const std::string id = unique_id("jr");
  REQUIRE(submit_all(server, {make_spec(id, {"/bin/sleep", "1"}).dump()}, fleet.dir()) == 1);
  {
    bool started = eventually([&] { return !events_of(fleet, "lifecycle.v1.started").empty(); }, 30s);
    INFO(daemon->err());
    REQUIRE(started);
  }
  // The companion stopped: the finished cell's completion can reach the journal, not the bucket.
  const pid_t comp = companion_pid(daemon->pid());
  REQUIRE(comp > 0);
  REQUIRE(::kill(comp, SIGSTOP) == 0);
  const std::string journal = fleet.state_dir() + "/nats-settling.jsonl";
  {
    bool journaled = eventually([&] { return read_text(journal).find(id) != std::string::npos; }, 30s);
    INFO(daemon->err());
    REQUIRE(journaled);
  }
  // The cell finished, and its completed and destroyed events wait for the record: a completed
  // event on disk without its record is what another host would run a second time.
  std::this_thread::sleep_for(500ms);  // a batch's delay is 5 ms: they would be on disk by now
  CHECK(events_of(fleet, "command.v1.completed").empty());
  CHECK(events_of(fleet, "lifecycle.v1.destroyed").empty());
  daemon->signal(SIGKILL);  // the stopped companion dies with it (PR_SET_PDEATHSIG)
  REQUIRE(daemon->wait() == 128 + SIGKILL);
  auto recs = kv_records(server, kBucket);
  REQUIRE(recs.size() == 1);
  CHECK(recs.begin()->second.value("state", "") == "claimed");  // what the host died with

  ::unlink((fleet.state_dir() + "/reactor.sock").c_str());
  daemon = std::make_unique<DaemonProcess>(fleet);
  REQUIRE(eventually([&] {
    auto r = kv_records(server, kBucket);
    return r.size() == 1 && r.begin()->second.value("state", "") == "completed";
  }, 30s));
  // Its redelivery finds it completed and is acked; nothing runs again.
  REQUIRE(eventually([&] { return server.stream_messages(kSpecs) == 0; }, 30s));
  std::this_thread::sleep_for(4s);  // past AckWait
  INFO(daemon->err());
  CHECK(daemon->err().find("recorded now") != std::string::npos);
  CHECK(daemon->err().find("written from the settling journal") != std::string::npos);
  CHECK(events_of(fleet, "lifecycle.v1.started").size() == 1);
  // The run's own completed event, written from the journal by the new daemon: one.
  auto done = events_of(fleet, "command.v1.completed");
  REQUIRE(done.size() == 1);
  CHECK(done[0].value("subject", "") == id);
  CHECK(done[0]["data"].value("exitCode", -1) == 0);
  CHECK(events_of(fleet, "lifecycle.v1.destroyed").size() == 1);  // not reported lost as well
  CHECK(read_text(journal).empty());  // emptied once settled
  daemon->signal(SIGTERM);
  REQUIRE(daemon->wait() == 0);
}

TEST_CASE("nats claims: a daemon killed at moments spanning a cell's end leaves exactly one completed event and one completion record once it starts again") {
  if (!NatsServer::available()) CELLOS_SKIP("nats-server is not installed");
  NatsServer server;
  Fleet fleet(nats_toml(server, 3), "batch_max_delay_ms = 5\n", "max_concurrent_cells = 2\n");
  // A kill timing loop: each round kills the daemon a little later after its cell started,
  // from while the command runs, through its end and the record, to after its events are on
  // disk. Whatever the moment, the restarted daemon ends with one run's completed event.
  for (int round = 0; round < 8; ++round) {
    const std::string id = unique_id("kt");
    ::unlink((fleet.state_dir() + "/reactor.sock").c_str());
    auto daemon = std::make_unique<DaemonProcess>(fleet);
    REQUIRE(submit_all(server, {make_spec(id, {"/bin/sleep", "0.2"}).dump()}, fleet.dir()) == 1);
    auto started = [&] {
      size_t n = 0;
      for (const auto& e : events_of(fleet, "lifecycle.v1.started")) n += e.value("subject", "") == id;
      return n;
    };
    REQUIRE(eventually([&] { return started() >= 1; }, 30s));
    std::this_thread::sleep_for(std::chrono::milliseconds(150 + 25 * round));
    daemon->signal(SIGKILL);
    REQUIRE(daemon->wait() == 128 + SIGKILL);
    ::unlink((fleet.state_dir() + "/reactor.sock").c_str());
    daemon = std::make_unique<DaemonProcess>(fleet);
    auto completed = [&] {
      size_t n = 0;
      for (const auto& e : events_of(fleet, "command.v1.completed")) n += e.value("subject", "") == id;
      return n;
    };
    auto recorded = [&] {
      for (const auto& [key, r] : kv_records(server, kBucket))
        if (r.is_object() && r.value("specId", "") == id) return r.value("state", "") == "completed";
      return false;
    };
    bool done = eventually([&] { return completed() >= 1 && recorded(); }, 30s);
    INFO("round " << round << ": " << daemon->err());
    REQUIRE(done);
    std::this_thread::sleep_for(4s);  // past AckWait: a second run would have started by now
    CHECK(completed() == 1);
    CHECK(started() <= 2);  // run again only if it was killed before its journal entry
    daemon->signal(SIGTERM);
    REQUIRE(daemon->wait() == 0);
  }
}

TEST_CASE("nats claims: submit --config with [intake.nats] publishes to the work queue, and --spool writes the spool") {
  if (!NatsServer::available()) CELLOS_SKIP("nats-server is not installed");
  NatsServer server;
  Fleet fleet(nats_toml(server, 3, false), "batch_max_delay_ms = 5\n");
  const std::string queued = unique_id("viaq"), spooled = unique_id("vias");
  const std::string qpath = fleet.dir() + "/q.json", spath = fleet.dir() + "/s.json";
  write_text(qpath, make_spec(queued, {"/bin/true"}).dump());
  write_text(spath, make_spec(spooled, {"/bin/true"}).dump());
  auto q = run_process({CELLOS_REACTOR_BIN, "submit", qpath, "--config", fleet.config_path()});
  INFO(q.out << q.err);
  REQUIRE(q.status == 0);
  CHECK(q.out.find("CELLOS_SPECS") != std::string::npos);
  CHECK(server.stream_messages(kSpecs) == 1);
  CHECK(dir_entries(fleet.state_dir() + "/spool").empty());
  auto s = run_process({CELLOS_REACTOR_BIN, "submit", spath, "--config", fleet.config_path(), "--spool"});
  INFO(s.out << s.err);
  REQUIRE(s.status == 0);
  CHECK(dir_entries(fleet.state_dir() + "/spool").size() == 1);
  CHECK(server.stream_messages(kSpecs) == 1);
  // The daemon runs both: one from the queue, one from the spool.
  DaemonProcess daemon(fleet);
  REQUIRE(eventually([&] { return events_of(fleet, "command.v1.completed").size() == 2; }, 30s));
  REQUIRE(eventually([&] { return server.stream_messages(kSpecs) == 0; }, 10s));
  daemon.signal(SIGTERM);
  REQUIRE(daemon.wait() == 0);
}

}  // namespace cellos::test
