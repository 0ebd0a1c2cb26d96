#include "sinks/verify.h"

#include <nlohmann/json.hpp>

#include "sinks/log_io.h"
#include "sinks/log_record.h"
#include "sinks/signing.h"

namespace cellos::sinks {
namespace {

using Json = nlohmann::json;

// A packed Cap'n Proto stream never starts with '{' (its first tag byte would claim a segment
// count in the millions), a JSONL log always does.
bool is_jsonl(const std::string& bytes) { return bytes.empty() || bytes[0] == '{'; }

struct Verifier {
  Verifier(const std::optional<SigningKey>& k, VerifyReport& rep) : key(k), r(rep) {}
  const std::optional<SigningKey>& key;
  VerifyReport& r;
  uint64_t line_no = 0;
  uint64_t expected_seq = 1;
  std::vector<Digest> leaves;
  uint64_t batch_first_seq = 0, batch_first_line = 0;
  Digest chain{};

  bool fail(const std::string& what) {
    r.ok = false;
    r.problem_line = line_no;
    r.problem = what;
    return false;
  }

  static std::string hex_field(const Json& d, const char* k) {
    auto it = d.find(k);
    return it != d.end() && it->is_string() ? it->get<std::string>() : std::string("?");
  }
  static uint64_t u_field(const Json& d, const char* k, bool& ok) {
    auto it = d.find(k);
    if (it == d.end() || !it->is_number_unsigned()) {
      ok = false;
      return 0;
    }
    return it->get<uint64_t>();
  }

  bool line(const std::string& text) {
    ++line_no;
    Json j = Json::parse(text, nullptr, false);
    if (j.is_discarded() || !j.is_object())
      return fail("not a JSON object: the line was modified or cut");
    if (j.value("specversion", "") != "1.0" || !j.contains("id") || !j.contains("source") ||
        !j.contains("type") || !j.contains("time"))
      return fail("not a CloudEvent (missing specversion 1.0, id, source, type or time)");
    auto seq_it = j.find("cellosseq");
    if (seq_it == j.end() || !seq_it->is_number_unsigned())
      return fail("no cellosseq sequence number");
    const uint64_t seq = seq_it->get<uint64_t>();
    if (seq != expected_seq) {
      if (line_no == 1)
        return fail("log starts at cellosseq " + std::to_string(seq) +
                    ", not 1: its first records are missing");
      if (seq < expected_seq)
        return fail("cellosseq " + std::to_string(seq) + " after " +
                    std::to_string(expected_seq - 1) + ": a duplicated or reordered line");
      return fail("cellosseq jumps from " + std::to_string(expected_seq - 1) + " to " +
                  std::to_string(seq) + ": " + std::to_string(seq - expected_seq) +
                  " line(s) deleted, or lines reordered");
    }
    ++expected_seq;
    const std::string type = j["type"].get<std::string>();
    if (type == kBatchSealedType) return manifest(text, j);

    if (leaves.empty()) {
      batch_first_seq = seq;
      batch_first_line = line_no;
    }
    leaves.push_back(merkle_leaf(text));
    if (type == kGapType) {
      ++r.gaps;
      r.dropped_events += j["data"].value("droppedEvents", uint64_t{0});
    } else {
      ++r.events;
      if (r.first_time.empty()) r.first_time = j["time"].get<std::string>();
      r.last_time = j["time"].get<std::string>();
    }
    if (j.contains("dssematerial") && key) return dsse(text, j);
    return true;
  }

  bool dsse(const std::string& text, const Json& j) {
    const std::string mat = j["dssematerial"].is_string() ? j["dssematerial"].get<std::string>() : "";
    std::string env_text;
    if (!unbase64(mat, env_text)) return fail("dssematerial is not base64");
    Json env = Json::parse(env_text, nullptr, false);
    if (env.is_discarded() || !env.contains("signatures") || !env["signatures"].is_array() ||
        env["signatures"].empty())
      return fail("dssematerial is not a DSSE envelope");
    const Json& s = env["signatures"][0];
    if (s.value("keyid", "") != key->key_id())
      return fail("event signed by key " + s.value("keyid", "") + ", not the given key " +
                  key->key_id());
    std::string sig;
    if (!unbase64(s.value("sig", ""), sig)) return fail("DSSE signature is not base64");
    // The signed body is the line without its dssematerial attribute.
    const std::string attr = ",\"dssematerial\":" + Json(mat).dump();
    size_t p = text.find(attr);
    if (p == std::string::npos) return fail("dssematerial not where the writer puts it");
    std::string body = text.substr(0, p) + text.substr(p + attr.size());
    if (!key->verify(dsse_pae(env.value("payloadType", ""), body), sig))
      return fail("bad per-event DSSE signature: the event was modified");
    ++r.dsse_checked;
    return true;
  }

  bool manifest(const std::string& text, const Json& j) {
    const Json& d = j["data"];
    if (!d.is_object()) return fail("batch_sealed without data");
    bool ok = true;
    const uint64_t first = u_field(d, "firstSeq", ok), last = u_field(d, "lastSeq", ok),
                   count = u_field(d, "eventCount", ok);
    if (!ok) return fail("batch_sealed: firstSeq, lastSeq or eventCount missing");
    const uint64_t want_first = leaves.empty() ? 0 : batch_first_seq;
    const uint64_t want_last = leaves.empty() ? 0 : batch_first_seq + leaves.size() - 1;
    if (count != leaves.size() || first != want_first || last != want_last)
      return fail("batch_sealed covers seq " + std::to_string(first) + ".." +
                  std::to_string(last) + " (" + std::to_string(count) +
                  " records) but the batch before it holds " + std::to_string(leaves.size()) +
                  " records from seq " + std::to_string(want_first));
    if (hex_field(d, "merkleRoot") != to_hex(merkle_root(leaves)))
      return fail("Merkle root mismatch: a line of the batch at lines " +
                  std::to_string(batch_first_line) + ".." + std::to_string(line_no - 1) +
                  " was modified, inserted or removed");
    if (hex_field(d, "prevDigest") != to_hex(chain))
      return fail("broken hash chain: prevDigest is not the digest of the previous manifest");
    const std::string key_id = d.value("keyId", "");
    if (key_id.empty()) {
      if (key) return fail("batch is unsigned, but a public key was given");
    } else {
      if (r.key_id.empty()) r.key_id = key_id;
      if (key) {
        if (key_id != key->key_id())
          return fail("batch signed by key " + key_id + ", not the given key " + key->key_id());
        std::string sig;
        const std::string b64 = d.value("signature", "");
        if (!unbase64(b64, sig)) return fail("batch signature is not base64");
        // Signed bytes: this line with an empty signature value (the last field of data).
        const std::string attr = "\"signature\":" + Json(b64).dump();
        size_t p = text.rfind(attr);
        if (p == std::string::npos) return fail("signature not where the writer puts it");
        std::string body = text.substr(0, p) + "\"signature\":\"\"" + text.substr(p + attr.size());
        if (!key->verify(body, sig)) return fail("bad batch signature");
        r.signatures_checked = true;
      }
    }
    chain = sha256(text);
    leaves.clear();
    ++r.batches;
    if (d.value("recovered", false)) ++r.recovered_batches;
    return true;
  }
};

}  // namespace

std::string VerifyReport::summary() const {
  if (!ok) return "line " + std::to_string(problem_line) + ": " + problem;
  std::string s = "intact: " + std::to_string(events) + " events in " + std::to_string(batches) +
                  " batches (" + format + ")";
  if (recovered_batches) s += ", " + std::to_string(recovered_batches) + " sealed over after a crash";
  if (gaps)
    s += ", " + std::to_string(gaps) + " gap record(s): " + std::to_string(dropped_events) +
         " events dropped by the writer";
  if (!first_time.empty()) s += ", first " + first_time + ", last " + last_time;
  if (key_id.empty())
    s += "; UNSIGNED: chain and Merkle roots checked, authenticity cannot be verified";
  else if (signatures_checked)
    s += "; signed by key " + key_id + ", signatures verified" +
         (dsse_checked ? " (and " + std::to_string(dsse_checked) + " per-event DSSE)" : "");
  else
    s += "; signed by key " + key_id + ", signatures NOT checked (no --public-key)";
  return s;
}

base::Result<VerifyReport> verify_log(const VerifyOptions& options) {
  std::optional<SigningKey> key;
  if (options.public_key_path) {
    auto k = SigningKey::load_public(*options.public_key_path);
    if (!k) return std::move(k).error();
    key.emplace(std::move(*k));
  }
  auto bytes = read_whole(options.path);
  if (!bytes) return std::move(bytes).error().context("verify");
  VerifyReport r;
  r.ok = true;
  r.format = is_jsonl(*bytes) ? "jsonl" : "capnp";
  LogLines l = r.format == "jsonl" ? split_jsonl(*bytes) : decode_capnp(*bytes);
  bytes->clear();
  Verifier v(key, r);
  for (const auto& line : l.lines)
    if (!v.line(line)) return r;
  if (l.torn_bytes) {
    v.line_no = l.lines.size() + 1;
    v.fail("truncated tail: the last " + std::to_string(l.torn_bytes) + " bytes are not a whole record");
    return r;
  }
  if (!v.leaves.empty()) {
    v.line_no = v.batch_first_line;
    v.fail("unsealed final batch: " + std::to_string(v.leaves.size()) +
           " records after the last manifest (the log was truncated, or its writer crashed "
           "or is still running; the next start seals over it)");
    return r;
  }
  if (l.lines.empty()) {
    r.ok = true;
  }
  return r;
}

base::Result<std::string> cat_log(const std::string& path) {
  auto bytes = read_whole(path);
  if (!bytes) return std::move(bytes).error().context("events cat");
  if (is_jsonl(*bytes)) return std::move(*bytes);
  LogLines l = decode_capnp(*bytes);
  std::string out;
  for (const auto& line : l.lines) {
    out += line;
    out += '\n';
  }
  if (l.torn_bytes) return base::value_error("events cat", "truncated final record (" + std::to_string(l.torn_bytes) + " bytes)");
  return out;
}

}  // namespace cellos::sinks
