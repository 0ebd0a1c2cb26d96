#include "base/json.h"

#include <algorithm>
#include <cstdint>
#include <functional>
#include <optional>
#include <vector>

#include "base/text.h"

namespace cellos::base {
namespace {

bool is_plain_key(std::string_view key) {
  if (key.empty() || key.size() > 128) return false;
  return std::all_of(key.begin(), key.end(), [](unsigned char c) {
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
           c == '_' || c == '-';
  });
}

// `spec.run` + `env` -> `spec.run.env`; other keys JSON-quoted (`spec.run.env["A B"]`) so the
// path stays unambiguous, on one line and short.
std::string child_path(const std::string& path, std::string_view key) {
  if (is_plain_key(key)) return path.empty() ? std::string(key) : path + "." + std::string(key);
  constexpr size_t kMaxKey = 64;
  bool cut = key.size() > kMaxKey;
  std::string q = Json(std::string(key.substr(0, kMaxKey)))
                      .dump(-1, ' ', /*ensure_ascii=*/true, Json::error_handler_t::replace);
  return path + "[" + q + (cut ? "..." : "") + "]";
}

// nlohmann's what() reads "[json.exception.parse_error.101] parse error at line 1, column 9:
// syntax error ...; last read: '<text>'". The "last read" part echoes document text, which may
// be a secret env value, so it is cut.
std::string short_parse_reason(const std::string& what) {
  std::string r = what;
  if (auto p = r.find("] "); r.starts_with("[json.exception.") && p != std::string::npos)
    r.erase(0, p + 2);
  if (r.starts_with("parse error at ")) r.erase(0, 15);
  if (auto p = r.find("; last read"); p != std::string::npos) r.erase(p);
  return clip(r, kMaxQuotedBytes);
}

// Duplicate detection for one object, linear overall: objects of a few keys (nearly all) are
// scanned, which costs no allocation; past kScanMax keys an open-addressing table of member
// indices takes over. Indices, not pointers or views: the members' vector moves its elements
// (short keys live inside them) when it grows.
class KeyIndex {
 public:
  using Members = std::vector<Json::object_t::value_type>;
  static constexpr size_t kScanMax = 16;

  // True when `key` is new in `members` (which does not hold it yet).
  bool is_new(const Members& members, std::string_view key) {
    if (members.size() < kScanMax)
      return std::none_of(members.begin(), members.end(),
                          [&](const auto& m) { return m.first == key; });
    if (slots_.empty()) rebuild(members, 64);
    const size_t mask = slots_.size() - 1;
    for (size_t i = std::hash<std::string_view>{}(key) & mask;; i = (i + 1) & mask) {
      if (slots_[i] == 0) return true;
      if (members[slots_[i] - 1].first == key) return false;
    }
  }

  // `members.back()` was just appended.
  void added(const Members& members) {
    if (slots_.empty()) return;  // still scanning; the table is built on first need
    if (2 * members.size() > slots_.size()) return rebuild(members, 2 * slots_.size());
    place(members, members.size() - 1);
  }

 private:
  void rebuild(const Members& members, size_t size) {
    while (size < 2 * (members.size() + 1)) size *= 2;
    slots_.assign(size, 0);
    for (size_t i = 0; i < members.size(); ++i) place(members, i);
  }
  void place(const Members& members, size_t index) {
    const size_t mask = slots_.size() - 1;
    size_t i = std::hash<std::string_view>{}(members[index].first) & mask;
    while (slots_[i] != 0) i = (i + 1) & mask;
    slots_[i] = static_cast<uint32_t>(index + 1);
  }

  std::vector<uint32_t> slots_;  // 0: empty, else member index + 1
};

// Builds the document from SAX events, refusing depth and duplicates as they arrive. Mirrors
// nlohmann's json_sax_dom_parser, except that a member is appended to its object's vector
// (ordered_map::operator[] would search the whole object first) after KeyIndex has said the key
// is new.
class BoundedBuilder {
 public:
  using number_integer_t = Json::number_integer_t;
  using number_unsigned_t = Json::number_unsigned_t;
  using number_float_t = Json::number_float_t;
  using string_t = Json::string_t;
  using binary_t = Json::binary_t;
  using Members = KeyIndex::Members;

  explicit BoundedBuilder(const JsonLimits& limits) : limits_(limits) {}

  bool null() { return value(Json(nullptr)); }
  bool boolean(bool v) { return value(Json(v)); }
  bool number_integer(number_integer_t v) { return value(Json(v)); }
  bool number_unsigned(number_unsigned_t v) { return value(Json(v)); }
  bool number_float(number_float_t v, const string_t&) { return value(Json(v)); }
  bool string(string_t& v) { return value(Json(std::move(v))); }
  bool binary(binary_t&) { return fail("", "binary values are not JSON"); }

  bool start_object(std::size_t) { return open(Json::value_t::object); }
  bool start_array(std::size_t) { return open(Json::value_t::array); }
  bool end_object() { return close(); }
  bool end_array() { return close(); }

  bool key(string_t& k) {
    Frame& top = frames_.back();
    Members& members = members_of(top);
    if (limits_.reject_duplicate_keys && !top.keys.is_new(members, k))
      return fail(path_to(k), "duplicate field");
    members.emplace_back(std::move(k), Json());
    if (limits_.reject_duplicate_keys) top.keys.added(members);
    slot_ = &members.back().second;
    return true;
  }

  bool parse_error(std::size_t, const std::string&, const nlohmann::detail::exception& ex) {
    if (!error_) error_ = value_error(limits_.what, "invalid JSON: " + short_parse_reason(ex.what()));
    return false;
  }

  Json& root() { return root_; }
  std::optional<Error>& error() { return error_; }

 private:
  struct Frame {
    Json* node;
    bool array;
    size_t index = 0;  // arrays: elements so far
    KeyIndex keys;     // objects: the keys met so far
  };

  static Members& members_of(Frame& f) {
    return static_cast<Members&>(f.node->get_ref<Json::object_t&>());
  }

  // Where the next value goes: the root, the end of the open array, or the member just keyed.
  Json* place(Json v) {
    ++values_;
    if (frames_.empty()) {
      root_ = std::move(v);
      return &root_;
    }
    Frame& top = frames_.back();
    if (top.array) {
      ++top.index;
      auto& items = top.node->get_ref<Json::array_t&>();
      items.push_back(std::move(v));
      return &items.back();
    }
    *slot_ = std::move(v);
    return slot_;
  }

  bool value(Json v) {
    if (over_budget()) return false;
    place(std::move(v));
    return true;
  }

  // True (and the error set) when the document already holds max_values values.
  bool over_budget() {
    if (limits_.max_values == 0 || values_ < limits_.max_values) return false;
    fail(path_to({}), "more than " + std::to_string(limits_.max_values) + " values in one " +
                          limits_.what);
    return true;
  }

  bool open(Json::value_t t) {
    if (over_budget()) return false;
    if (frames_.size() >= limits_.max_depth)
      return fail(path_to({}), "nested deeper than " + std::to_string(limits_.max_depth) +
                                   " levels");
    Json* node = place(Json(t));
    frames_.push_back(Frame{node, t == Json::value_t::array, 0, {}});
    return true;
  }

  bool close() {
    frames_.pop_back();
    return true;
  }

  // The path of the open frames, then `last` (a key in the innermost object), clipped: depth is
  // capped, but 64 levels of long keys would still make a long line. An object's open member is
  // its last one.
  std::string path_to(std::optional<std::string_view> last) {
    std::string path;
    for (size_t i = 0; i < frames_.size(); ++i) {
      Frame& f = frames_[i];
      const bool innermost = i + 1 == frames_.size();
      if (f.array) {
        // An outer array's open element is its last; the innermost one's is the one arriving.
        const size_t at = innermost ? f.index : f.index - 1;
        path += "[" + std::to_string(at) + "]";
      } else if (innermost && last) {
        path = child_path(path, *last);
      } else if (!members_of(f).empty()) {
        path = child_path(path, members_of(f).back().first);
      }
      if (path.size() > kMaxQuotedBytes) break;
    }
    if (path.starts_with("[")) path = limits_.what + path;
    return path.empty() ? limits_.what : clip(path, kMaxQuotedBytes);
  }

  bool fail(std::string where, std::string reason) {
    if (!error_) error_ = value_error(std::move(where), std::move(reason));
    return false;
  }

  const JsonLimits& limits_;
  Json root_;
  Json* slot_ = nullptr;
  std::vector<Frame> frames_;
  std::optional<Error> error_;
  size_t values_ = 0;
};

}  // namespace

std::string size_text(size_t bytes) {
  if (bytes >= (1 << 20) && bytes % (1 << 20) == 0) return std::to_string(bytes >> 20) + " MiB";
  if (bytes >= (1 << 10) && bytes % (1 << 10) == 0) return std::to_string(bytes >> 10) + " KiB";
  return std::to_string(bytes) + " bytes";
}

Result<Json> parse_json(std::string_view text, const JsonLimits& limits) {
  if (text.size() > limits.max_bytes)
    return value_error(limits.what, std::to_string(text.size()) + " bytes: over the " +
                                        size_text(limits.max_bytes) + " a " + limits.what +
                                        " may have");
  BoundedBuilder b(limits);
  try {
    bool ok = Json::sax_parse(text.begin(), text.end(), &b, Json::input_format_t::json,
                              /*strict=*/true);
    if (b.error()) return std::move(*b.error());
    if (!ok) return value_error(limits.what, "invalid JSON");
  } catch (const std::exception& e) {
    // sax_parse reports syntax through parse_error(); what is left is bad_alloc and the like.
    return value_error(limits.what, std::string("invalid JSON: ") + clip(e.what()));
  }
  return std::move(b.root());
}

}  // namespace cellos::base
