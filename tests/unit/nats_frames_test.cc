#include <catch2/catch.hpp>

#include "reactor/nats/frames.h"

namespace cellos::reactor::nats {

TEST_CASE("nats frames: every field survives encode and decode") {
  Frame f{Kind::kSpec, 42, 3, "$JS.ACK.CELLOS_SPECS.d.3.42.7.1700000000.0", "key",
          std::string("{\"spec\":\0x}", 11), "build-42.42"};
  const std::string bytes = encode(f);
  auto d = decode(std::as_bytes(std::span(bytes)));
  REQUIRE(d.ok());
  CHECK(d->kind == Kind::kSpec);
  CHECK(d->seq == 42);
  CHECK(d->count == 3);
  CHECK(d->token == f.token);
  CHECK(d->key == "key");
  CHECK(d->text == f.text);
  CHECK(d->claim == "build-42.42");
}

TEST_CASE("nats frames: truncated, padded or unknown frames are refused") {
  const std::string bytes = encode(Frame{Kind::kCompleted, 1, 2, "t", "k", "text", "c"});
  for (size_t cut = 0; cut < bytes.size(); ++cut) {
    auto d = decode(std::as_bytes(std::span(bytes.data(), cut)));
    CHECK_FALSE(d.ok());
  }
  std::string padded = bytes + "x";
  CHECK_FALSE(decode(std::as_bytes(std::span(padded))).ok());
  std::string unknown = bytes;
  unknown[0] = 99;
  auto d = decode(std::as_bytes(std::span(unknown)));
  REQUIRE_FALSE(d.ok());
  CHECK(d.error().message().find("unknown kind 99") != std::string::npos);
}

TEST_CASE("nats frames: completion keys are valid KV keys for every spec id") {
  CHECK(completion_key("build-42") == "build-42");
  CHECK(completion_key("a.b") == "a=2Eb");
  CHECK(completion_key("trailing.") == "trailing=2E");
  CHECK(completion_key("x..y") == "x=2E=2Ey");
  CHECK(claim_key("a.b", 7) == "a=2Eb.7");
  CHECK(batch_msg_id("host-1", 512) == "host-1-512");
  CHECK(events_subject("CELLOS_EVENTS", "host-1") == "CELLOS_EVENTS.host-1");
}

}  // namespace cellos::reactor::nats
