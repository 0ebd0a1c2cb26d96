#include "reactor/nats/frames.h"

#include <cstring>

namespace cellos::reactor::nats {
namespace {

template <typename T>
void put(std::string& out, T v) {
  out.append(reinterpret_cast<const char*>(&v), sizeof v);
}

void put_bytes(std::string& out, std::string_view s) {
  put<uint32_t>(out, static_cast<uint32_t>(s.size()));
  out.append(s);
}

class Reader {
 public:
  explicit Reader(std::span<const std::byte> b) : b_(b) {}
  template <typename T>
  bool get(T& v) {
    if (b_.size() - at_ < sizeof v) return false;
    std::memcpy(&v, b_.data() + at_, sizeof v);
    at_ += sizeof v;
    return true;
  }
  bool get_bytes(std::string& s) {
    uint32_t n = 0;
    if (!get(n) || b_.size() - at_ < n) return false;
    s.assign(reinterpret_cast<const char*>(b_.data() + at_), n);
    at_ += n;
    return true;
  }
  bool done() const { return at_ == b_.size(); }

 private:
  std::span<const std::byte> b_;
  size_t at_ = 0;
};

bool known(uint8_t k) { return (k >= 1 && k <= 6) || (k >= 32 && k <= 39); }

}  // namespace

std::string encode(const Frame& f) {
  std::string out;
  out.reserve(1 + 16 + 16 + f.token.size() + f.key.size() + f.text.size() + f.claim.size());
  put<uint8_t>(out, static_cast<uint8_t>(f.kind));
  put<uint64_t>(out, f.seq);
  put<uint64_t>(out, f.count);
  put_bytes(out, f.token);
  put_bytes(out, f.key);
  put_bytes(out, f.text);
  put_bytes(out, f.claim);
  return out;
}

base::Result<Frame> decode(std::span<const std::byte> bytes) {
  Reader r(bytes);
  Frame f;
  uint8_t kind = 0;
  if (!r.get(kind)) return base::value_error("nats frame", "empty");
  if (!known(kind)) return base::value_error("nats frame", "unknown kind " + std::to_string(kind));
  f.kind = static_cast<Kind>(kind);
  if (!r.get(f.seq) || !r.get(f.count) || !r.get_bytes(f.token) || !r.get_bytes(f.key) ||
      !r.get_bytes(f.text) || !r.get_bytes(f.claim))
    return base::value_error("nats frame", "truncated (" + std::to_string(bytes.size()) + " bytes)");
  if (!r.done()) return base::value_error("nats frame", "trailing bytes");
  return f;
}

std::string completion_key(std::string_view spec_id) {
  std::string k;
  for (char c : spec_id) {
    if (c == '.')
      k += "=2E";
    else
      k += c;
  }
  return k;
}

std::string claim_key(std::string_view spec_id, uint64_t stream_seq) {
  return completion_key(spec_id) + "." + std::to_string(stream_seq);
}

std::string batch_msg_id(std::string_view host_id, uint64_t last_seq) {
  return std::string(host_id) + "-" + std::to_string(last_seq);
}

std::string events_subject(std::string_view prefix, std::string_view host_id) {
  return std::string(prefix) + "." + std::string(host_id);
}

}  // namespace cellos::reactor::nats
