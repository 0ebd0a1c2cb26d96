// The fleet daemon's CompletionGate (a NATS cell's completed and destroyed events wait for its
// completion record) and the settling journal's copy of those events (nats_journal.h).
#include <catch2/catch.hpp>
#include <string>
#include <vector>

#include "reactor/completion_gate.h"
#include "reactor/nats_journal.h"
#include "sinks/cloudevent_json.h"

namespace cellos::reactor {
namespace {

struct Recorder final : sinks::EventSink {
  std::vector<sinks::Event> events;
  int flushes = 0;
  void emit(const sinks::Event& e) override { events.push_back(e); }
  void flush() override { ++flushes; }
};

std::vector<std::string> types(const std::vector<sinks::Event>& es) {
  std::vector<std::string> out;
  for (const auto& e : es) out.push_back(e.subject + " " + sinks::event_type(e.data));
  return out;
}

sinks::Event completed(const std::string& id) {
  sinks::CompletedData c{id, 3, std::nullopt, 120, sinks::CompletedReason::kExited, "", false, true};
  c.resources = sinks::ResourcesData{4096, 777, 2, 0};
  c.backend = "native";
  sinks::Event e = sinks::make_event(std::move(c));
  e.correlation_id = "corr-1";
  return e;
}

}  // namespace

TEST_CASE("completion gate: a gated cell's events from its completed event on wait for release, in order") {
  Recorder log;
  CompletionGate gate(log);
  gate.gate("a");
  gate.emit(sinks::make_event(sinks::RejectedData{std::string("a"), "before completed"}));
  gate.emit(completed("a"));
  gate.emit(sinks::make_event(sinks::RejectedData{std::string("b"), "another cell"}));
  gate.emit(sinks::make_event(sinks::DestroyedData{"a", false, false, "", std::nullopt, "native", std::nullopt}));
  CHECK(log.events.size() == 2);  // a's event before its completed one, and b's
  CHECK(gate.held("a").size() == 2);
  CHECK(gate.gated("a"));
  CHECK(gate.release("a"));
  CHECK(log.flushes == 1);  // written at once
  CHECK(!gate.gated("a"));
  auto t = types(log.events);
  REQUIRE(t.size() == 4);
  CHECK(t[2].ends_with("command.v1.completed"));
  CHECK(t[3].ends_with("lifecycle.v1.destroyed"));
  // Released: its later events pass.
  gate.emit(completed("a"));
  CHECK(log.events.size() == 5);
  CHECK(!gate.release("a"));
}

TEST_CASE("completion gate: an id gated twice (started again while its completion is recorded) stays gated for its second run") {
  Recorder log;
  CompletionGate gate(log);
  gate.gate("a");
  gate.emit(completed("a"));
  gate.gate("a");  // the same id from another stream message
  CHECK(gate.release("a"));  // the first run's completion recorded
  CHECK(log.events.size() == 1);
  CHECK(gate.gated("a"));
  gate.emit(completed("a"));  // the second run's end waits for its own record
  CHECK(log.events.size() == 1);
  gate.release_all();
  CHECK(log.events.size() == 2);
}

TEST_CASE("settling journal: a cell's held events survive the journal with their times and fields") {
  std::vector<sinks::Event> held{completed("j"),
                                 sinks::make_event(sinks::DestroyedData{"j", false, true, "export_failed",
                                                                        std::nullopt, "native", std::nullopt})};
  held[1].correlation_id = "corr-1";
  auto j = journal_events(held);
  REQUIRE(j.is_object());
  // Through text, as the journal stores it.
  auto again = events_from_journal(nlohmann::json::parse(j.dump()));
  REQUIRE(again.size() == 2);
  const auto* c = std::get_if<sinks::CompletedData>(&again[0].data);
  REQUIRE(c);
  CHECK(again[0].subject == "j");
  CHECK(again[0].time_us == held[0].time_us);
  CHECK(again[0].correlation_id == "corr-1");
  CHECK(c->exit_code == 3);
  CHECK(!c->signal);
  CHECK(c->duration_ms == 120);
  CHECK(c->reason == sinks::CompletedReason::kExited);
  CHECK(c->stderr_truncated);
  REQUIRE(c->resources);
  CHECK(c->resources->memory_peak_bytes == 4096u);
  CHECK(c->backend == "native");
  const auto* d = std::get_if<sinks::DestroyedData>(&again[1].data);
  REQUIRE(d);
  CHECK(d->forced);
  CHECK(d->reason == "export_failed");
  CHECK(again[1].time_us == held[1].time_us);
  CHECK(journal_subject(j) == "j");
  CHECK(completed_key("j", journal_time_us(j)) == "j " + sinks::rfc3339_utc(held[0].time_us));
  // Nothing to journal without a completed event; a torn or foreign value rebuilds nothing.
  CHECK(journal_events({held[1]}).is_null());
  CHECK(events_from_journal(nlohmann::json::parse(R"({"completed": 5})")).empty());
}

}  // namespace cellos::reactor
