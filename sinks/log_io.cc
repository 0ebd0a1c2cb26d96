#include "sinks/log_io.h"

#include <capnp/serialize-packed.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>

#include "base/fd.h"
#include "sinks/log_record.h"

namespace cellos::sinks {
namespace {

// kj::BufferedOutputStream over a std::string: packing into a reused scratch buffer and
// appending, so a record costs no heap allocation (writePackedMessage's default wrapper
// allocates its buffer per call).
class StringSink final : public kj::BufferedOutputStream {
 public:
  explicit StringSink(std::string& out) : out_(out) {}
  kj::ArrayPtr<kj::byte> getWriteBuffer() override { return kj::arrayPtr(buf_, sizeof buf_); }
  void write(const void* p, size_t n) override {
    out_.append(static_cast<const char*>(p), n);
  }

 private:
  std::string& out_;
  kj::byte buf_[8192];
};

base::Result<std::string> pread_range(int fd, uint64_t off, uint64_t len) {
  std::string s(len, '\0');
  size_t done = 0;
  while (done < len) {
    ssize_t n = ::pread(fd, s.data() + done, len - done, static_cast<off_t>(off + done));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return base::sys_error("pread", "event log tail");
    if (n == 0) break;
    done += static_cast<size_t>(n);
  }
  s.resize(done);
  return s;
}

base::Result<RecoveredTail> tail_of(LogLines l, bool whole_file) {
  RecoveredTail t;
  t.valid_size = l.valid_size;
  t.torn_bytes = l.torn_bytes;
  if (l.lines.empty()) return t;
  size_t manifest = l.lines.size();
  for (size_t i = l.lines.size(); i-- > 0;) {
    if (is_manifest_line(l.lines[i])) {
      manifest = i;
      break;
    }
  }
  if (manifest == l.lines.size() && !whole_file)
    return base::value_error("event log tail", "no manifest found");  // caller reads more
  for (const auto& line : l.lines) {
    uint64_t s = 0;
    if (!line_seq(line, s))
      return base::value_error("event log",
                               "a record without cellosseq: not written by this version's event "
                               "log (move the file aside, or run `verify` on it)");
  }
  line_seq(l.lines.back(), t.last_seq);
  if (manifest < l.lines.size()) t.last_manifest_digest = sha256(l.lines[manifest]);
  for (size_t i = manifest < l.lines.size() ? manifest + 1 : 0; i < l.lines.size(); ++i)
    t.unsealed_lines.push_back(std::move(l.lines[i]));
  if (!t.unsealed_lines.empty()) line_seq(t.unsealed_lines.front(), t.unsealed_first_seq);
  return t;
}

}  // namespace

LogLines split_jsonl(std::string_view text) {
  LogLines l;
  size_t pos = 0;
  while (pos < text.size()) {
    size_t nl = text.find('\n', pos);
    if (nl == std::string_view::npos) break;
    l.lines.emplace_back(text.substr(pos, nl - pos));
    pos = nl + 1;
  }
  l.valid_size = pos;
  l.torn_bytes = text.size() - pos;
  return l;
}

LogLines decode_capnp(std::string_view bytes) {
  LogLines l;
  kj::ArrayInputStream in(kj::arrayPtr(reinterpret_cast<const kj::byte*>(bytes.data()), bytes.size()));
  capnp::ReaderOptions opts;
  opts.traversalLimitInWords = 1 << 20;
  while (true) {
    const size_t left = in.tryGetReadBuffer().size();
    if (left == 0) break;
    const size_t at = bytes.size() - left;
    try {
      capnp::PackedMessageReader reader(in, opts);
      std::string line;
      render_line(reader.getRoot<schema::LogRecord>(), line);
      l.lines.push_back(std::move(line));
      l.valid_size = bytes.size() - in.tryGetReadBuffer().size();
    } catch (const kj::Exception&) {
      l.valid_size = at;
      break;
    } catch (const std::exception&) {
      // A record that decodes but cannot be rendered (a hostile file): it ends the readable part
      // like a torn one, so `verify` and `events cat` report it instead of aborting.
      l.valid_size = at;
      break;
    }
  }
  l.torn_bytes = bytes.size() - l.valid_size;
  return l;
}

bool line_seq(std::string_view line, uint64_t& seq) {
  static constexpr std::string_view kKey = "\"cellosseq\":";
  size_t p = line.find(kKey);
  if (p == std::string_view::npos) return false;
  p += kKey.size();
  uint64_t v = 0;
  size_t digits = 0;
  while (p < line.size() && line[p] >= '0' && line[p] <= '9' && digits < 20) {
    v = v * 10 + static_cast<uint64_t>(line[p++] - '0');
    ++digits;
  }
  if (!digits) return false;
  seq = v;
  return true;
}

bool is_manifest_line(std::string_view line) {
  static const std::string kType = std::string("\"type\":\"") + kBatchSealedType + "\"";
  size_t data = line.find("\"data\":");
  size_t p = line.find(kType);
  return p != std::string_view::npos && p < data;
}

base::Result<RecoveredTail> read_jsonl_tail(int fd) {
  struct stat st {};
  if (::fstat(fd, &st) != 0) return base::sys_error("fstat", "event log");
  const uint64_t size = static_cast<uint64_t>(st.st_size);
  uint64_t window = 64 << 10;
  while (true) {
    const uint64_t off = size > window ? size - window : 0;
    auto text = pread_range(fd, off, size - off);
    if (!text) return std::move(text).error();
    std::string_view view = *text;
    uint64_t skipped = 0;
    if (off > 0) {
      // The window starts mid-line: drop the partial first line.
      size_t nl = view.find('\n');
      if (nl == std::string_view::npos) {
        window *= 4;
        continue;
      }
      skipped = nl + 1;
      view.remove_prefix(skipped);
    }
    LogLines l = split_jsonl(view);
    l.valid_size += off + skipped;
    auto t = tail_of(std::move(l), off == 0);
    if (t.ok() || off == 0) return t;
    window *= 4;
  }
}

base::Result<RecoveredTail> read_capnp_tail(int fd) {
  struct stat st {};
  if (::fstat(fd, &st) != 0) return base::sys_error("fstat", "event log");
  auto bytes = pread_range(fd, 0, static_cast<uint64_t>(st.st_size));
  if (!bytes) return std::move(bytes).error();
  return tail_of(decode_capnp(*bytes), true);
}

void append_packed(capnp::MessageBuilder& msg, std::string& out) {
  StringSink sink(out);
  capnp::writePackedMessage(sink, msg);
}

base::Result<std::string> read_whole(const std::string& path) {
  auto fd = base::open_at(AT_FDCWD, path, O_RDONLY);
  if (!fd) return std::move(fd).error();
  struct stat st {};
  if (::fstat(fd->get(), &st) != 0) return base::sys_error("fstat", "\"" + path + "\"");
  return pread_range(fd->get(), 0, static_cast<uint64_t>(st.st_size));
}

}  // namespace cellos::sinks
