#include "sinks/sublog_seal.h"

#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <set>
#include <utility>

#include "base/fd.h"
#include "base/json.h"
#include "base/text.h"
#include "sinks/log_io.h"
#include "sinks/log_record.h"

namespace cellos::sinks {
namespace {

using Json = base::Json;

constexpr size_t kMaxSealedPath = 4096;

// Below `dirfd` only: no `..` out of it, no absolute path, no symlink anywhere on the way (the
// last component's included), no magic link. Whoever wrote the directory cannot point the
// reader elsewhere.
int open_beneath(int dirfd, const std::string& rel, int flags) {
  open_how how{};
  how.flags = static_cast<uint64_t>(flags | O_CLOEXEC);
  how.resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS;
  return static_cast<int>(::syscall(SYS_openat2, dirfd, rel.c_str(), &how, sizeof how));
}

std::string open_error(int err) {
  switch (err) {
    case ENOENT: return "missing (no such file)";
    case ELOOP: return "a symlink on the way (never followed)";
    case EXDEV: return "escapes the directory of the log that records it";
    case ENOTDIR: return "a component of the path is not a directory";
    default: return std::strerror(err);
  }
}

struct FileRead {
  bool ok = false;
  std::string why;  // when !ok
  std::string bytes;
  uint64_t size = 0;  // st_size at open
  bool over = false;  // size > the cap: not read
  dev_t dev = 0;
  ino_t ino = 0;
};

// Reads a regular file of one link below `dirfd`, at most `cap` bytes (over: size only).
// O_NONBLOCK so a FIFO planted in its place cannot hang the open.
FileRead read_beneath(int dirfd, const std::string& rel, uint64_t cap) {
  FileRead f;
  base::Fd fd(open_beneath(dirfd, rel, O_RDONLY | O_NONBLOCK | O_NOCTTY));
  if (!fd) {
    f.why = open_error(errno);
    return f;
  }
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) {
    f.why = std::string("fstat: ") + std::strerror(errno);
    return f;
  }
  if (!S_ISREG(st.st_mode)) {
    f.why = "not a regular file";
    return f;
  }
  // A hard link the nested command made to a file it could see is another file's bytes.
  if (st.st_nlink != 1) {
    f.why = "has " + std::to_string(st.st_nlink) + " hard links (refused: it may be another file)";
    return f;
  }
  f.dev = st.st_dev;
  f.ino = st.st_ino;
  f.size = static_cast<uint64_t>(st.st_size);
  if (f.size > cap) {
    f.over = true;
    f.why = "is " + std::to_string(f.size) + " bytes, over the " + base::size_text(cap) +
            " a sub-log may have";
    return f;
  }
  // Up to cap + 1 bytes: a file grown since fstat shows as larger than the cap.
  const uint64_t want = cap == UINT64_MAX ? cap : cap + 1;
  f.bytes.resize(static_cast<size_t>(std::min<uint64_t>(f.size + 1, want)));
  size_t done = 0;
  for (;;) {
    if (done == f.bytes.size()) {
      if (done >= want) break;
      f.bytes.resize(static_cast<size_t>(std::min<uint64_t>(done * 2 + 4096, want)));
    }
    ssize_t n = ::read(fd.get(), f.bytes.data() + done, f.bytes.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      f.why = std::string("read: ") + std::strerror(errno);
      return f;
    }
    if (n == 0) break;
    done += static_cast<size_t>(n);
  }
  f.bytes.resize(done);
  f.size = done;
  f.ok = true;
  return f;
}

std::string raw(const Digest& d) { return std::string(reinterpret_cast<const char*>(d.data()), d.size()); }
std::string hex_of(const std::string& bytes) {
  return to_hex(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size());
}

LogLines lines_of(std::string_view bytes) {
  return bytes.empty() || bytes[0] == '{' ? split_jsonl(bytes) : decode_capnp(bytes);
}

// What the bytes of a sub-log are: verified against `key`, its head (the SHA-256 of its last
// manifest line) and last sequence number.
struct Examined {
  VerifyReport report;
  LogLines lines;
  std::string head;  // raw; "" without a manifest
  uint64_t last_seq = 0;
};

// A tail left by a killed writer (an unsealed last batch, a record cut short) is no problem
// here: the seal pins those bytes by their SHA-256 and counts them.
Examined examine(const std::string& bytes, const std::optional<SigningKey>& key) {
  Examined e;
  e.report = verify_bytes(bytes, key);
  if (!e.report.ok && e.report.tail_pending) {
    e.report.ok = true;
  } else {
    e.report.unsealed_records = e.report.torn_bytes = 0;
  }
  e.lines = lines_of(bytes);
  for (size_t i = e.lines.lines.size(); i-- > 0;)
    if (is_manifest_line(e.lines.lines[i])) {
      e.head = raw(sha256(e.lines.lines[i]));
      break;
    }
  if (!e.lines.lines.empty()) line_seq(e.lines.lines.back(), e.last_seq);
  return e;
}

// verify's summary, and what of its tail only the parent's seal pins.
std::string summary_of(const VerifyReport& r) {
  if (!r.unsealed_records && !r.torn_bytes) return r.summary();
  VerifyReport sealed = r;
  sealed.events = r.events > r.unsealed_records ? r.events - r.unsealed_records : 0;
  std::string s = sealed.summary() + "; its reactor was stopped before sealing its end (";
  if (r.unsealed_records) s += std::to_string(r.unsealed_records) + " records after its last manifest";
  if (r.unsealed_records && r.torn_bytes) s += ", ";
  if (r.torn_bytes) s += std::to_string(r.torn_bytes) + " bytes of a record cut short";
  return s + "): those bytes are pinned by the seal's SHA-256 only";
}

std::string dirname_of(const std::string& path) {
  const size_t slash = path.rfind('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

const std::string* str_at(const Json& j, const char* k) {
  auto it = j.find(k);
  return it != j.end() && it->is_string() ? &it->get_ref<const std::string&>() : nullptr;
}

// The seal's data object, every field type-checked (a hostile line is a message, never a throw).
std::string from_object(const Json& d, NestedSealedData& s) {
  if (!d.is_object()) return "data is not an object";
  auto text = [&](const char* k, std::string& out) -> std::string {
    const std::string* v = str_at(d, k);
    if (!v) return std::string(k) + " missing or not a string";
    out = *v;
    return "";
  };
  auto uint = [&](const char* k, uint64_t& out) -> std::string {
    auto it = d.find(k);
    if (it == d.end() || !it->is_number_unsigned()) return std::string(k) + " missing or not an unsigned integer";
    out = it->get<uint64_t>();
    return "";
  };
  auto hex = [&](const char* k, std::string& out, bool may_be_empty) -> std::string {
    std::string t;
    if (auto e = text(k, t); !e.empty()) return e;
    std::vector<uint8_t> b;
    if ((t.empty() && !may_be_empty) || !from_hex(t, b) || (!b.empty() && b.size() != 32))
      return std::string(k) + " is not a hex SHA-256";
    out.assign(b.begin(), b.end());
    return "";
  };
  std::string e, key_b64;
  if (!(e = text("cellId", s.cell_id)).empty() || !(e = text("nestingPath", s.nesting_path)).empty() ||
      !(e = text("path", s.path)).empty() || !(e = text("publicKey", key_b64)).empty() ||
      !(e = text("keyId", s.key_id)).empty() || !(e = hex("headDigest", s.head_digest, true)).empty() ||
      !(e = uint("lastSeq", s.last_seq)).empty() || !(e = uint("eventCount", s.event_count)).empty() ||
      !(e = uint("batches", s.batches)).empty() || !(e = uint("sizeBytes", s.size_bytes)).empty() ||
      !(e = hex("sha256", s.sha256, true)).empty() || !(e = text("format", s.format)).empty() ||
      !(e = uint("unsealedRecords", s.unsealed_records)).empty() ||
      !(e = uint("tornBytes", s.torn_bytes)).empty())
    return e;
  if (!unbase64(key_b64, s.public_key)) return "publicKey is not base64";
  auto v = d.find("verified");
  if (v == d.end() || !v->is_boolean()) return "verified missing or not a boolean";
  s.verified = v->get<bool>();
  if (d.contains("error") && (e = text("error", s.error)).empty() == false) return e;
  return "";
}

}  // namespace

std::string check_sealed_path(std::string_view path) {
  if (path.empty()) return "empty";
  if (path.size() > kMaxSealedPath) return "longer than 4096 bytes";
  if (path.find('\0') != std::string_view::npos) return "holds a NUL byte";
  if (path.front() == '/') return "absolute (a seal records a path relative to its log's directory)";
  size_t start = 0;
  while (start <= path.size()) {
    size_t end = path.find('/', start);
    if (end == std::string_view::npos) end = path.size();
    const std::string_view c = path.substr(start, end - start);
    if (c.empty()) return "has an empty component";
    if (c == ".") return "has a \".\" component";
    if (c == "..") return "has a \"..\" component (a sub-log is below its log's directory)";
    start = end + 1;
  }
  return "";
}

NestedSealedData seal_sublog(const SublogSealOptions& o) {
  NestedSealedData d;
  d.cell_id = o.cell_id;
  d.nesting_path = o.nesting_path;
  d.public_key = o.public_key;
  auto fail = [&d](std::string why) {
    d.verified = false;
    d.error = base::bounded_line(why);
    return d;
  };
  auto key = SigningKey::from_raw_public(o.public_key);
  if (key) d.key_id = key->key_id();
  const std::string dir = dirname_of(o.log_path);
  const std::string prefix = dir == "/" ? "/" : dir + "/";
  if (!o.sublog_path.starts_with(prefix))
    return fail("the sub-log " + base::clip(o.sublog_path) + " is not below the log's directory " +
                base::clip(dir));
  const std::string rel = o.sublog_path.substr(prefix.size());
  if (auto why = check_sealed_path(rel); !why.empty())
    return fail("the sub-log's path " + base::clip(rel) + ": " + why);
  d.path = rel;
  base::Fd dirfd(::open(dir.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
  if (!dirfd) return fail("the log's directory " + base::clip(dir) + ": " + std::strerror(errno));
  FileRead f = read_beneath(dirfd.get(), rel, o.max_bytes);
  d.size_bytes = f.size;
  if (!f.ok) return fail("the sub-log " + base::clip(rel) + ": " + f.why);
  d.sha256 = raw(sha256(f.bytes));
  if (!key) return fail("the nested reactor's public key: " + key.error().message());
  std::optional<SigningKey> k;
  k.emplace(std::move(*key));
  Examined e = examine(f.bytes, k);
  d.unsealed_records = e.report.unsealed_records;
  d.torn_bytes = e.report.torn_bytes;
  d.format = e.report.format;
  d.head_digest = e.head;
  d.last_seq = e.last_seq;
  d.event_count = e.report.events;
  d.batches = e.report.batches;
  if (!e.report.ok) return fail("the sub-log " + base::clip(rel) + " does not verify: " + e.report.summary());
  // An empty file verifies (nothing to check) but proves nothing: a nested reactor writes
  // its flow_probes event at start.
  if (f.bytes.empty()) return fail("the sub-log " + base::clip(rel) + " is empty: no nested reactor wrote to it");
  d.verified = true;
  return d;
}

std::string sealed_to_json(const NestedSealedData& d) {
  Json j;
  j["cellId"] = d.cell_id;
  j["nestingPath"] = d.nesting_path;
  j["path"] = d.path;
  j["publicKey"] = base64(d.public_key);
  j["keyId"] = d.key_id;
  j["headDigest"] = hex_of(d.head_digest);
  j["lastSeq"] = d.last_seq;
  j["eventCount"] = d.event_count;
  j["batches"] = d.batches;
  j["sizeBytes"] = d.size_bytes;
  j["sha256"] = hex_of(d.sha256);
  j["format"] = d.format;
  j["verified"] = d.verified;
  j["unsealedRecords"] = d.unsealed_records;
  j["tornBytes"] = d.torn_bytes;
  if (!d.error.empty()) j["error"] = d.error;
  // Replace, not throw, on bytes that are not UTF-8 (a clipped path from a hostile directory).
  return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

base::Result<NestedSealedData> sealed_from_json(std::string_view text) {
  base::JsonLimits l;
  l.what = "seal";
  l.max_bytes = 64 << 10;
  auto j = base::parse_json(text, l);
  if (!j) return std::move(j).error();
  NestedSealedData d;
  if (auto e = from_object(*j, d); !e.empty()) return base::value_error("seal", e);
  return d;
}

// ---- verify_trail ----

namespace {

struct Walker {
  const TrailOptions& o;
  TrailReport& r;
  std::set<std::pair<dev_t, ino_t>> seen;

  bool fail(const std::string& what) {
    r.ok = false;
    r.problem = base::bounded_line(what);
    return false;
  }

  // The seals in `lines[0, n)` of the log at `display` (its directory is `dirfd`), one depth
  // below `depth`.
  bool walk(int dirfd, const std::string& display, const std::vector<std::string>& lines, size_t n,
            unsigned depth, const std::string& nesting) {
    for (size_t i = 0; i < n; ++i) {
      const std::string& line = lines[i];
      base::JsonLimits l;
      l.what = "line";
      l.max_bytes = base::kMaxLogLineBytes;
      auto j = base::parse_json(line, l);
      if (!j || !j->is_object()) continue;  // verify already accepted every line
      const std::string* type = str_at(*j, "type");
      if (!type || *type != kNestedSealedType) continue;
      if (!o.follow_nested) {
        ++r.seals_not_followed;
        continue;
      }
      if (!seal(dirfd, display, i + 1, *j, depth + 1, nesting)) return false;
    }
    return true;
  }

  bool seal(int dirfd, const std::string& display, uint64_t line_no, const Json& j, unsigned depth,
            const std::string& nesting) {
    const std::string at = "seal at line " + std::to_string(line_no) + " of " + base::clip(display);
    auto data = j.find("data");
    NestedSealedData s;
    if (data == j.end()) return fail("depth " + std::to_string(depth) + ", " + at + ": the seal has no data");
    if (auto e = from_object(*data, s); !e.empty())
      return fail("depth " + std::to_string(depth) + ", " + at + ": the seal is unreadable: " + e);
    const std::string chain = nesting.empty() ? s.nesting_path : nesting + " > " + s.nesting_path;
    // As verify prints a sub-log that is intact: "depth 2 (host-a/c1 > inner/c2), seal at ...".
    std::string where = "depth " + std::to_string(depth) + " (" + base::clip(chain) + "), " + at;
    if (depth > o.max_depth)
      return fail(where + ": nested deeper than " + std::to_string(o.max_depth) +
                  " levels: not followed");
    if (auto why = check_sealed_path(s.path); !why.empty())
      return fail(where + ": path \"" + base::clip(s.path) + "\" refused: " + why);
    const std::string dir_display = display.find('/') == std::string::npos ? "" : dirname_of(display) + "/";
    const std::string shown = dir_display + s.path;
    where += ": " + base::clip(shown);
    if (!s.verified)
      return fail(where + ": sealed as FAILED by the reactor that ran the cell: " +
                  (s.error.empty() ? std::string("(no reason given)") : s.error));
    auto key = SigningKey::from_raw_public(s.public_key);
    if (!key) return fail(where + ": the recorded public key is not an Ed25519 public key");
    if (key->key_id() != s.key_id)
      return fail(where + ": the recorded keyId " + base::clip(s.key_id, 64) +
                  " is not the recorded key's id " + key->key_id());
    // No seal of ours records more (seal_sublog refuses larger files): a claim beyond it would
    // only make verify read that much.
    if (s.size_bytes > kMaxSublogBytes)
      return fail(where + ": sealed as " + std::to_string(s.size_bytes) + " bytes, over the " +
                  base::size_text(kMaxSublogBytes) + " a seal reads");
    FileRead f = read_beneath(dirfd, s.path, s.size_bytes);
    if (f.over)
      return fail(where + ": " + std::to_string(f.size) + " bytes, not the " +
                  std::to_string(s.size_bytes) + " sealed: appended to after it was sealed");
    if (!f.ok) return fail(where + ": " + f.why);
    if (!seen.insert({f.dev, f.ino}).second)
      return fail(where + ": the same file as an earlier seal (a cycle, or one sub-log sealed twice)");
    if (f.size != s.size_bytes)
      return fail(where + ": " + std::to_string(f.size) + " bytes, not the " +
                  std::to_string(s.size_bytes) + " sealed: truncated after it was sealed");
    if (raw(sha256(f.bytes)) != s.sha256)
      return fail(where + ": SHA-256 " + hex_of(raw(sha256(f.bytes))) + " is not the sealed " +
                  hex_of(s.sha256) + ": changed after it was sealed");
    const std::string key_id = key->key_id();
    std::optional<SigningKey> k;
    k.emplace(std::move(*key));
    Examined e = examine(f.bytes, k);
    if (!e.report.ok)
      return fail(where + ": does not verify with the sealed key " + key_id + ": " +
                  e.report.summary());
    if (e.head != s.head_digest || e.last_seq != s.last_seq || e.report.events != s.event_count ||
        e.report.unsealed_records != s.unsealed_records || e.report.torn_bytes != s.torn_bytes)
      return fail(where + ": its head (last manifest digest, lastSeq, eventCount, unsealed tail) "
                  "is not the sealed one");
    TrailLog t;
    t.depth = depth;
    t.nesting = base::clip(chain);
    t.path = base::clip(shown);
    t.sealed_line = line_no;
    t.summary = summary_of(e.report);
    r.logs.push_back(std::move(t));
    r.deepest = std::max(r.deepest, depth);
    // Its own seals name paths below its directory.
    base::Fd sub_dir;
    const size_t slash = s.path.rfind('/');
    sub_dir = base::Fd(slash == std::string::npos
                           ? ::fcntl(dirfd, F_DUPFD_CLOEXEC, 0)
                           : open_beneath(dirfd, s.path.substr(0, slash), O_PATH | O_DIRECTORY));
    if (!sub_dir) return fail(where + ": its directory: " + open_error(errno));
    return walk(sub_dir.get(), shown, e.lines.lines, e.lines.lines.size(), depth, chain);
  }
};

}  // namespace

base::Result<TrailReport> verify_trail(const TrailOptions& o) {
  std::optional<SigningKey> key;
  if (o.top.public_key_path) {
    auto k = SigningKey::load_public(*o.top.public_key_path);
    if (!k) return std::move(k).error();
    key.emplace(std::move(*k));
  }
  auto bytes = read_whole(o.top.path);
  if (!bytes) return std::move(bytes).error().context("verify");
  TrailReport r;
  r.top = verify_bytes(*bytes, key);
  const bool live_ok = !r.top.ok && r.top.tail_pending && o.top_live;
  if (!r.top.ok && !live_ok) return r;
  LogLines lines = lines_of(*bytes);
  bytes->clear();
  size_t sealed = lines.lines.size();
  if (live_ok) sealed -= std::min<size_t>(sealed, r.top.unsealed_records);
  base::Fd dirfd(::open(dirname_of(o.top.path).c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
  if (!dirfd) return base::sys_error("open", dirname_of(o.top.path)).context("verify");
  r.ok = true;
  Walker w{o, r, {}};
  // The top log itself: a seal naming it (through a hard link it could not, one link only) is a cycle.
  struct stat st {};
  if (::stat(o.top.path.c_str(), &st) == 0) w.seen.insert({st.st_dev, st.st_ino});
  const size_t slash = o.top.path.rfind('/');
  w.walk(dirfd.get(), slash == std::string::npos ? o.top.path : o.top.path.substr(slash + 1),
         lines.lines, sealed, 0, "");
  return r;
}

}  // namespace cellos::sinks
