#include "sinks/verify.h"

#include <optional>

#include "base/input_limits.h"
#include "base/json.h"
#include "base/text.h"
#include "sinks/log_io.h"
#include "sinks/log_record.h"
#include "sinks/signing.h"

namespace cellos::sinks {
namespace {

// Lines are parsed bounded (length, depth, no repeated keys: our writer never repeats one), and
// every field is read through the typed accessors below: a hostile log gets a report naming the
// line, never an exception out of a wrongly typed field.
using Json = base::Json;

// A packed Cap'n Proto stream never starts with '{' (its first tag byte would claim a segment
// count in the millions), a JSONL log always does.
bool is_jsonl(const std::string& bytes) { return bytes.empty() || bytes[0] == '{'; }

base::JsonLimits line_limits(const char* what) {
  base::JsonLimits l;
  l.what = what;
  l.max_bytes = base::kMaxLogLineBytes;
  return l;
}

// The member `k` of object `j` when it is a string; nullptr when absent or of another type.
const std::string* str_field(const Json& j, const char* k) {
  auto it = j.find(k);
  return it != j.end() && it->is_string() ? &it->get_ref<const std::string&>() : nullptr;
}

std::optional<uint64_t> uint_field(const Json& j, const char* k) {
  auto it = j.find(k);
  if (it == j.end() || !it->is_number_unsigned()) return std::nullopt;
  return it->get<uint64_t>();
}

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
    r.problem = base::bounded_line(what);
    return false;
  }

  static std::string hex_field(const Json& d, const char* k) {
    const std::string* s = str_field(d, k);
    return s ? *s : std::string("?");
  }

  bool line(const std::string& text) {
    ++line_no;
    try {
      return checked_line(text);
    } catch (const std::exception& e) {
      // Every access below is typed; this is the last guard (bad_alloc and the like).
      return fail(std::string("unreadable record: ") + base::clip(e.what()));
    }
  }

  bool checked_line(const std::string& text) {
    if (text.size() > base::kMaxLogLineBytes)
      return fail("line of " + std::to_string(text.size()) + " bytes: over the " +
                  base::size_text(base::kMaxLogLineBytes) + " a record may have");
    auto parsed = base::parse_json(text, line_limits("line"));
    if (!parsed) return fail("not a JSON object: " + parsed.error().message());
    const Json& j = *parsed;
    if (!j.is_object()) return fail("not a JSON object: the line was modified or cut");
    const std::string* specversion = str_field(j, "specversion");
    const std::string* type = str_field(j, "type");
    const std::string* time = str_field(j, "time");
    if (!specversion || *specversion != "1.0" || !str_field(j, "id") || !str_field(j, "source") ||
        !type || !time)
      return fail("not a CloudEvent (specversion \"1.0\", id, source, type or time missing or "
                  "not a string)");
    const std::optional<uint64_t> seq_field = uint_field(j, "cellosseq");
    if (!seq_field) return fail("no cellosseq sequence number");
    const uint64_t seq = *seq_field;
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
    if (*type == kBatchSealedType) return manifest(text, j);

    if (leaves.empty()) {
      batch_first_seq = seq;
      batch_first_line = line_no;
    }
    leaves.push_back(merkle_leaf(text));
    if (*type == kGapType) {
      ++r.gaps;
      auto data = j.find("data");
      if (data == j.end() || !data->is_object()) return fail("gap record without data object");
      if (data->contains("droppedEvents")) {
        auto dropped = uint_field(*data, "droppedEvents");
        if (!dropped) return fail("gap record: droppedEvents is not an unsigned integer");
        r.dropped_events += *dropped;
      }
    } else {
      ++r.events;
      if (r.first_time.empty()) r.first_time = base::clip(*time, 64);
      r.last_time = base::clip(*time, 64);
    }
    if (j.contains("dssematerial") && key) return dsse(text, j);
    return true;
  }

  bool dsse(const std::string& text, const Json& j) {
    const std::string* mat = str_field(j, "dssematerial");
    if (!mat) return fail("dssematerial is not a string");
    std::string env_text;
    if (!unbase64(*mat, env_text)) return fail("dssematerial is not base64");
    auto parsed = base::parse_json(env_text, line_limits("dssematerial"));
    if (!parsed) return fail("dssematerial is not a DSSE envelope: " + parsed.error().message());
    const Json& env = *parsed;
    if (!env.is_object()) return fail("dssematerial is not a DSSE envelope");
    auto sigs = env.find("signatures");
    if (sigs == env.end() || !sigs->is_array() || sigs->empty() || !(*sigs)[0].is_object())
      return fail("dssematerial is not a DSSE envelope (signatures: an array of objects)");
    const Json& s = (*sigs)[0];
    const std::string* keyid = str_field(s, "keyid");
    const std::string* sig_b64 = str_field(s, "sig");
    const std::string* payload_type = str_field(env, "payloadType");
    if (!keyid || !sig_b64 || !payload_type)
      return fail("DSSE envelope: keyid, sig or payloadType missing or not a string");
    if (*keyid != key->key_id())
      return fail("event signed by key " + base::clip(*keyid, 64) + ", not the given key " +
                  key->key_id());
    std::string sig;
    if (!unbase64(*sig_b64, sig)) return fail("DSSE signature is not base64");
    // The signed body is the line without its dssematerial attribute.
    const std::string attr = ",\"dssematerial\":" + Json(*mat).dump();
    size_t p = text.find(attr);
    if (p == std::string::npos) return fail("dssematerial not where the writer puts it");
    std::string body = text.substr(0, p) + text.substr(p + attr.size());
    if (!key->verify(dsse_pae(*payload_type, body), sig))
      return fail("bad per-event DSSE signature: the event was modified");
    ++r.dsse_checked;
    return true;
  }

  bool manifest(const std::string& text, const Json& j) {
    auto data = j.find("data");
    if (data == j.end() || !data->is_object()) return fail("batch_sealed without data");
    const Json& d = *data;
    const auto first_f = uint_field(d, "firstSeq"), last_f = uint_field(d, "lastSeq"),
               count_f = uint_field(d, "eventCount");
    if (!first_f || !last_f || !count_f)
      return fail("batch_sealed: firstSeq, lastSeq or eventCount missing");
    const uint64_t first = *first_f, last = *last_f, count = *count_f;
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
    if (d.contains("keyId") && !str_field(d, "keyId"))
      return fail("batch_sealed: keyId is not a string");
    const std::string key_id = d.contains("keyId") ? *str_field(d, "keyId") : std::string();
    if (key_id.empty()) {
      if (key) return fail("batch is unsigned, but a public key was given");
    } else {
      if (r.key_id.empty()) r.key_id = base::clip(key_id, 64);
      if (key) {
        if (key_id != key->key_id())
          return fail("batch signed by key " + base::clip(key_id, 64) + ", not the given key " +
                      key->key_id());
        const std::string* b64 = str_field(d, "signature");
        if (!b64) return fail("batch signature missing or not a string");
        std::string sig;
        if (!unbase64(*b64, sig)) return fail("batch signature is not base64");
        // Signed bytes: this line with an empty signature value (the last field of data).
        const std::string attr = "\"signature\":" + Json(*b64).dump();
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
    auto recovered = d.find("recovered");
    if (recovered != d.end() && recovered->is_boolean() && recovered->get<bool>())
      ++r.recovered_batches;
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

std::string VerifyReport::live_summary() const {
  VerifyReport sealed = *this;
  sealed.ok = true;
  sealed.events = events > unsealed_records ? events - unsealed_records : 0;
  std::string s = sealed.summary() + "; after line " + std::to_string(problem_line - 1) + ", ";
  if (unsealed_records) s += std::to_string(unsealed_records) + " records of a batch not sealed yet";
  if (unsealed_records && torn_bytes) s += " and ";
  if (torn_bytes) s += std::to_string(torn_bytes) + " bytes of a record being written";
  return s + ": the log's writer is running (it holds the log's lock), so they were not checked";
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
  return verify_bytes(std::move(*bytes), key);
}

VerifyReport verify_bytes(std::string bytes, const std::optional<SigningKey>& key) {
  VerifyReport r;
  r.ok = true;
  r.format = is_jsonl(bytes) ? "jsonl" : "capnp";
  LogLines l = r.format == "jsonl" ? split_jsonl(bytes) : decode_capnp(bytes);
  bytes.clear();
  Verifier v(key, r);
  for (const auto& line : l.lines)
    if (!v.line(line)) return r;
  if (l.torn_bytes) {
    v.line_no = l.lines.size() + 1;
    v.fail("truncated tail: the last " + std::to_string(l.torn_bytes) + " bytes are not a whole record");
    r.tail_pending = true;
    r.torn_bytes = l.torn_bytes;
    r.unsealed_records = v.leaves.size();
    return r;
  }
  if (!v.leaves.empty()) {
    v.line_no = v.batch_first_line;
    v.fail("unsealed final batch: " + std::to_string(v.leaves.size()) +
           " records after the last manifest (the log was truncated, or its writer crashed "
           "or is still running; the next start seals over it)");
    r.tail_pending = true;
    r.unsealed_records = v.leaves.size();
    return r;
  }
  return r;
}

base::Result<std::string> cat_log(const std::string& path) {
  auto bytes = read_whole(path);
  if (!bytes) return std::move(bytes).error().context("events cat");
  return cat_bytes(std::move(*bytes));
}

base::Result<std::string> cat_bytes(std::string bytes) {
  if (is_jsonl(bytes)) return bytes;
  LogLines l = decode_capnp(bytes);
  std::string out;
  for (const auto& line : l.lines) {
    out += line;
    out += '\n';
  }
  if (l.torn_bytes)
    return base::value_error("events cat", "truncated final record (" +
                                               std::to_string(l.torn_bytes) + " bytes)");
  return out;
}

}  // namespace cellos::sinks
