#include <catch2/catch.hpp>

#include "cells/config.h"

namespace cellos::cells {
namespace {

std::string error_of(const std::string& toml) {
  try {
    parse_config(toml, "fleet.toml");
  } catch (const ConfigError& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST_CASE("config: [intake.nats] and [events.nats] are off unless given, with documented defaults") {
  Config c = parse_config("", "fleet.toml");
  CHECK_FALSE(c.intake.nats.enabled);
  CHECK_FALSE(c.events.nats.enabled);
  c = parse_config("[intake.nats]\n[events.nats]\n", "fleet.toml");
  CHECK(c.intake.nats.enabled);
  CHECK(c.intake.nats.url == "nats://127.0.0.1:4222");
  CHECK(c.intake.nats.stream == "CELLOS_SPECS");
  CHECK(c.intake.nats.subject == "cellos.specs");
  CHECK(c.intake.nats.durable == "cellos-reactor");
  CHECK(c.intake.nats.ack_wait_seconds == 30);
  CHECK(c.events.nats.enabled);
  CHECK(c.events.nats.prefix == "CELLOS_EVENTS");
}

TEST_CASE("config: [intake.nats] and [events.nats] keys are parsed") {
  Config c = parse_config(
      "[intake.nats]\nurl = \"nats://10.1.2.3:4222\"\nstream = \"JOBS\"\nsubject = \"ci.jobs\"\n"
      "durable = \"fleet-a\"\nack_wait_seconds = 9\nmax_deliver = 3\ncompletions_bucket = \"done\"\n"
      "[events.nats]\nurl = \"nats://10.1.2.3:4222\"\nprefix = \"EV\"\nduplicate_window_seconds = 60\n",
      "fleet.toml");
  CHECK(c.intake.nats.url == "nats://10.1.2.3:4222");
  CHECK(c.intake.nats.stream == "JOBS");
  CHECK(c.intake.nats.subject == "ci.jobs");
  CHECK(c.intake.nats.durable == "fleet-a");
  CHECK(c.intake.nats.ack_wait_seconds == 9);
  CHECK(c.intake.nats.max_deliver == 3);
  CHECK(c.intake.nats.completions_bucket == "done");
  CHECK(c.events.nats.prefix == "EV");
  CHECK(c.events.nats.duplicate_window_seconds == 60);
}

TEST_CASE("config: bad NATS keys stop with one line naming the key") {
  CHECK(error_of("[intake.nats]\nurl = \"http://x\"\n") ==
        "fleet.toml: intake.nats.url: must be a nats://host:port URL (several separated by ',')");
  CHECK(error_of("[intake.nats]\nstream = \"a.b\"\n") ==
        "fleet.toml: intake.nats.stream: must be 1..64 characters of [A-Za-z0-9_-]");
  CHECK(error_of("[intake.nats]\nsubject = \"cellos.*\"\n").find("intake.nats.subject") != std::string::npos);
  CHECK(error_of("[intake.nats]\nack_wait_seconds = 1\n") ==
        "fleet.toml: intake.nats.ack_wait_seconds: must be an integer in 3..3600");
  CHECK(error_of("[intake.nats]\nbogus = 1\n") == "fleet.toml: intake.nats.bogus: unknown key");
  CHECK(error_of("[intake.other]\n") == "fleet.toml: intake.other: unknown table");
  CHECK(error_of("[events.nats]\nprefix = \"EV.X\"\n").find("events.nats.prefix") != std::string::npos);
  CHECK(error_of("[events]\nformat = \"capnp\"\n[events.nats]\n") ==
        "fleet.toml: events.nats: needs events.format = \"jsonl\" written to a file (not \"-\")");
  CHECK(error_of("[host]\nid = \"a.b\"\n[events.nats]\n").find("cannot hold") != std::string::npos);
}

}  // namespace cellos::cells
