// SHA-256 of many messages at once (sinks/sha256_many.h) and the Merkle roots and event-log
// manifests built with it: the digests must be SHA-256's (checked against OpenSSL one message
// at a time), the level-by-level root must be RFC 6962's recursive one, and a log written with
// its leaves hashed at seal time must carry, in every manifest, the root of its lines hashed
// one at a time, and verify.
#include "sinks/sha256_many.h"

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <vector>

#include "sinks/event_log.h"
#include "sinks/log_io.h"
#include "sinks/signing.h"
#include "sinks/verify.h"
#include "tests/support/event_log_support.h"
#include "tests/support/test_support.h"

namespace cellos::sinks {
namespace {

using Json = nlohmann::json;

std::vector<std::string> random_messages(size_t count, size_t max_len, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<std::string> out;
  for (size_t i = 0; i < count; ++i) {
    std::string s(rng() % (max_len + 1), '\0');
    for (auto& c : s) c = static_cast<char>(rng());
    out.push_back(std::move(s));
  }
  return out;
}

std::vector<Digest> one_at_a_time(const std::vector<std::string>& msgs) {
  std::vector<Digest> out;
  for (const auto& m : msgs) out.push_back(sha256(m));
  return out;
}

std::vector<Digest> all_at_once(const std::vector<std::string>& msgs, bool simd) {
  std::vector<std::string_view> views(msgs.begin(), msgs.end());
  std::vector<Digest> out(msgs.size());
  if (simd)
    sha256_many_simd(views.data(), views.size(), out.data());
  else
    sha256_many(views.data(), views.size(), out.data());
  return out;
}

TEST_CASE("sha256_many: the 16-lane path gives SHA-256 for every length from 0 to 300 bytes",
          "[sha256]") {
  if (!sha256_many_is_simd()) CELLOS_SKIP("this CPU has no AVX-512 F/BW: sha256_many is OpenSSL's");
  // Lengths 0..300 in one call: lanes of every padding case (55/56/63/64 bytes and their
  // multiples) side by side, ending after different numbers of blocks.
  std::vector<std::string> msgs;
  std::mt19937 rng(7);
  for (size_t len = 0; len <= 300; ++len) {
    std::string s(len, '\0');
    for (auto& c : s) c = static_cast<char>(rng());
    msgs.push_back(std::move(s));
  }
  CHECK(all_at_once(msgs, true) == one_at_a_time(msgs));
  // The FIPS 180-2 test vector and the empty string, in one group with others.
  std::vector<std::string> known = {"abc", "", std::string(1000, 'a')};
  const auto d = all_at_once(known, true);
  CHECK(to_hex(d[0]) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  CHECK(to_hex(d[1]) == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  CHECK(d[2] == sha256(known[2]));
}

TEST_CASE("sha256_many: any count of mixed-length messages, a partial last group included",
          "[sha256]") {
  for (size_t count : {1, 2, 15, 16, 17, 31, 33, 100, 512}) {
    INFO("count " << count);
    const auto msgs = random_messages(count, 700, static_cast<uint32_t>(count));
    CHECK(all_at_once(msgs, false) == one_at_a_time(msgs));
    if (sha256_many_is_simd()) CHECK(all_at_once(msgs, true) == one_at_a_time(msgs));
  }
}

TEST_CASE("sha256_many: messages over kLongMessage among short ones keep their places",
          "[sha256]") {
  auto msgs = random_messages(40, 400, 11);
  msgs[0] = std::string(kLongMessage + 1, 'x');
  msgs[17] = std::string(3 * kLongMessage, 'y');
  msgs[39] = std::string(kLongMessage, 'z');  // at the limit: still in a lane
  CHECK(all_at_once(msgs, false) == one_at_a_time(msgs));
}

TEST_CASE("merkle: the level-by-level root equals RFC 6962's recursive root for 1 to 1100 leaves",
          "[sha256]") {
  std::vector<Digest> leaves;
  for (size_t n = 1; n <= 1100; ++n) {
    leaves.push_back(merkle_leaf(std::to_string(n)));
    INFO("n " << n);
    REQUIRE(merkle_root(leaves) == merkle_root_recursive(leaves));
  }
}

// Each manifest's root recomputed the old way: every line's leaf hashed on its own (OpenSSL),
// the tree by RFC 6962's recursion.
void check_roots(const std::string& path) {
  auto text = read_whole(path);
  REQUIRE(text.ok());
  std::vector<Digest> leaves;
  size_t manifests = 0;
  for (const auto& line : split_jsonl(*text).lines) {
    Json j = Json::parse(line);
    if (j["type"] != kBatchSealedType) {
      leaves.push_back(merkle_leaf(line));
      continue;
    }
    ++manifests;
    INFO("manifest " << manifests);
    CHECK(j["data"]["eventCount"] == leaves.size());
    CHECK(j["data"]["merkleRoot"] == to_hex(merkle_root_recursive(leaves)));
    leaves.clear();
  }
  CHECK(leaves.empty());
  CHECK(manifests > 3);
}

TEST_CASE("event log: leaves hashed together at seal give each manifest the root of its lines "
          "hashed one by one, and the log verifies",
          "[eventlog][sha256]") {
  test::TempDir dir;
  auto key = write_key_pair(dir.path() + "/keys");
  REQUIRE(key.ok());
  for (uint64_t batch : {1, 16, 37, 512}) {
    INFO("batch_max_events " << batch);
    EventLogOptions o;
    o.path = dir.path() + "/events-" + std::to_string(batch) + ".jsonl";
    o.host_id = "host-1";
    o.batch_max_events = batch;
    o.batch_max_delay = std::chrono::milliseconds(60000);
    o.signing_key_path = dir.path() + "/keys/host.key";
    {
      test::LogHarness h(o);
      h.emit_samples(batch == 512 ? 450 : 30);  // ends in a partial batch, sealed by flush
      h.drain();
    }
    check_roots(o.path);
    VerifyOptions v;
    v.path = o.path;
    v.public_key_path = dir.path() + "/keys/host.pub";
    auto r = verify_log(v);
    REQUIRE(r.ok());
    INFO(r->summary());
    CHECK(r->ok);
    CHECK(r->signatures_checked);
  }
}

}  // namespace
}  // namespace cellos::sinks
