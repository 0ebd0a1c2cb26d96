#include "sinks/log_record.h"

#include <array>
#include <cstring>

#include "sinks/cloudevent_json.h"
#include "sinks/signing.h"

namespace cellos::sinks {
namespace {

using schema::LogRecord;

const char* reason_text(schema::CompletedReason r) {
  switch (r) {
    case schema::CompletedReason::EXITED: return "exited";
    case schema::CompletedReason::SIGNALED: return "signaled";
    case schema::CompletedReason::TIMEOUT: return "timeout";
    case schema::CompletedReason::OOM: return "oom";
    case schema::CompletedReason::SETUP_FAILED: return "setup_failed";
    case schema::CompletedReason::SHUTDOWN: return "shutdown";
  }
  return "exited";
}

std::string_view sv(capnp::Text::Reader t) { return {t.cStr(), t.size()}; }
std::string_view sv(capnp::Data::Reader d) {
  return {reinterpret_cast<const char*>(d.begin()), d.size()};
}

// Where a line is rendered: a cursor into a std::string whose bytes past the cursor are
// scratch room. Appending through std::string (a capacity check and an out-of-line call per
// piece, strlen for literals) was most of the rendering cost (perf, bench/event_bench); here a
// piece is a bounds check and a copy of a known size. Room is added by resizing the string
// (its capacity grows geometrically); the caller trims it to len() at the end.
struct Out {
  Out(std::string& str, size_t len) : s(str), p(str.data() + len), end(str.data() + str.size()) {}
  size_t len() const { return static_cast<size_t>(p - s.data()); }
  // Room for n more bytes at p. Writers that fill the room themselves advance p.
  void need(size_t n) {
    if (static_cast<size_t>(end - p) < n) grow(n);
  }
  Out& operator+=(char c) {
    need(1);
    *p++ = c;
    return *this;
  }
  // A string literal (only literals: the whole array but its NUL is copied), its size known at
  // compile time: no strlen, an inlined copy.
  template <size_t N>
  Out& operator+=(const char (&lit)[N]) {
    need(N - 1);
    std::memcpy(p, lit, N - 1);
    p += N - 1;
    return *this;
  }
  Out& operator+=(std::string_view v) {
    need(v.size());
    std::memcpy(p, v.data(), v.size());
    p += v.size();
    return *this;
  }
  [[gnu::noinline]] void grow(size_t n) {
    const size_t at = len();
    s.resize(at + n + 4096);
    p = s.data() + at;
    end = s.data() + s.size();
  }

  std::string& s;
  char* p;    // the next byte to write
  char* end;  // the end of the room: s.data() + s.size()
};

// Bytes a JSON string takes as they are: printable ASCII but the quote and the backslash.
constexpr std::array<bool, 256> kPlain = [] {
  std::array<bool, 256> t{};
  for (int c = 0x20; c < 0x80; ++c) t[static_cast<size_t>(c)] = c != '"' && c != '\\';
  return t;
}();

// A JSON string literal for `s`: escapes quotes, backslashes and control characters, and
// replaces bytes that are not UTF-8 with U+FFFD (a hostile argv can carry any bytes).
// True when none of the 8 bytes in `x` needs escaping (kPlain for all of them): none below
// 0x20 or above 0x7f, none a quote or a backslash. Exact for "any", which is all it answers.
inline bool plain8(uint64_t x) {
  constexpr uint64_t k01 = 0x0101010101010101ull, k80 = 0x8080808080808080ull;
  const uint64_t q = x ^ (0x22 * k01), b = x ^ (0x5c * k01);
  return (((x - 0x20 * k01) | x | ((q - k01) & ~q) | ((b - k01) & ~b)) & k80) == 0;
}

void json_string(Out& out, std::string_view s) {
  static const char* kHex = "0123456789abcdef";
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  const auto* end = p + s.size();
  {
    // Fast path: the usual all-plain string goes out as it is, checked 8 bytes at a time.
    const unsigned char* q = p;
    for (uint64_t x; end - q >= 8; q += 8) {
      std::memcpy(&x, q, 8);
      if (!plain8(x)) break;
    }
    while (q < end && kPlain[*q]) ++q;
    if (q == end) {
      out.need(s.size() + 2);
      char* o = out.p;
      *o++ = '"';
      std::memcpy(o, s.data(), s.size());
      o += s.size();
      *o++ = '"';
      out.p = o;
      return;
    }
  }
  // At most 6 bytes out per byte in (a control character as \u00XX), and the quotes.
  out.need(s.size() * 6 + 2);
  char* o = out.p;
  *o++ = '"';
  while (p < end) {
    // A run of plain printable ASCII is copied in one go.
    const unsigned char* run = p;
    while (p < end && kPlain[*p]) ++p;
    if (p != run) {
      std::memcpy(o, run, static_cast<size_t>(p - run));
      o += p - run;
    }
    if (p >= end) break;
    unsigned char c = *p;
    if (c == '"' || c == '\\') {
      *o++ = '\\';
      *o++ = static_cast<char>(c);
      ++p;
    } else if (c < 0x20) {
      *o++ = '\\';
      switch (c) {
        case '\n': *o++ = 'n'; break;
        case '\r': *o++ = 'r'; break;
        case '\t': *o++ = 't'; break;
        default:
          std::memcpy(o, "u00", 3);
          o += 3;
          *o++ = kHex[c >> 4];
          *o++ = kHex[c & 15];
      }
      ++p;
    } else {
      // A UTF-8 sequence: copied if well formed (no overlongs, no surrogates), else U+FFFD.
      size_t n = c >= 0xf0 ? 4 : c >= 0xe0 ? 3 : c >= 0xc2 ? 2 : 0;
      bool ok = n && c <= 0xf4 && static_cast<size_t>(end - p) >= n;
      for (size_t k = 1; ok && k < n; ++k) ok = (p[k] & 0xc0) == 0x80;
      if (ok && n == 3) {
        if (c == 0xe0 && p[1] < 0xa0) ok = false;
        if (c == 0xed && p[1] >= 0xa0) ok = false;
      }
      if (ok && n == 4) {
        if (c == 0xf0 && p[1] < 0x90) ok = false;
        if (c == 0xf4 && p[1] >= 0x90) ok = false;
      }
      if (ok) {
        std::memcpy(o, p, n);
        o += n;
        p += n;
      } else {
        std::memcpy(o, "\xef\xbf\xbd", 3);
        o += 3;
        ++p;
      }
    }
  }
  *o++ = '"';
  out.p = o;
}

void append_json_string(Out& out, std::string_view s) { json_string(out, s); }

void append_uint(Out& out, uint64_t v) {
  char buf[24];
  char* p = buf + sizeof buf;
  do {
    *--p = static_cast<char>('0' + v % 10);
    v /= 10;
  } while (v);
  out += std::string_view(p, static_cast<size_t>(buf + sizeof buf - p));
}

void append_int(Out& out, int64_t v) {
  if (v < 0) {
    out += '-';
    append_uint(out, static_cast<uint64_t>(-(v + 1)) + 1);
  } else {
    append_uint(out, static_cast<uint64_t>(v));
  }
}

// RFC 3339 with microseconds. gmtime_r per event showed in profiles; the date and time up to
// the second change once a second, so they are cached (plain data: no thread_local guard).
struct TimeCache {
  int64_t sec = INT64_MIN;
  size_t n = 0;
  char text[48];  // "2026-11-23T11:12:13."
};
thread_local TimeCache time_cache;

void append_time(Out& out, int64_t time_us) {
  TimeCache& c = time_cache;
  int64_t sec = time_us >= 0 ? time_us / 1000000 : (time_us - 999999) / 1000000;
  if (sec != c.sec) {
    std::string full = rfc3339_utc(sec * 1000000);
    c.n = std::min(full.size() - 7, sizeof c.text);
    std::memcpy(c.text, full.data(), c.n);
    c.sec = sec;
  }
  out.need(c.n + 7);
  char* o = out.p;
  std::memcpy(o, c.text, c.n);
  o += c.n;
  int64_t us = time_us - sec * 1000000;
  for (int i = 5; i >= 0; --i) {
    o[i] = static_cast<char>('0' + us % 10);
    us /= 10;
  }
  o[6] = 'Z';
  out.p = o + 7;
}

// Appends `,"name":` (or `"name":` for the first field): the names are literals, so this is
// one bounds check and a copy of a known size.
struct Field {
  Out& out;
  bool first = true;
  template <size_t N>
  void key(const char (&k)[N]) {
    out.need(N + 3);
    char* o = out.p;
    if (!first) *o++ = ',';
    first = false;
    *o++ = '"';
    std::memcpy(o, k, N - 1);
    o += N - 1;
    *o++ = '"';
    *o++ = ':';
    out.p = o;
  }
  template <size_t N>
  void str(const char (&k)[N], std::string_view v) {
    key(k);
    json_string(out, v);
  }
  // A value that is one of our own constants (a type name, an enum's text): nothing in it to
  // escape, so it is copied without the scan.
  template <size_t N>
  void plain(const char (&k)[N], std::string_view v) {
    key(k);
    out.need(v.size() + 2);
    char* o = out.p;
    *o++ = '"';
    std::memcpy(o, v.data(), v.size());
    o += v.size();
    *o++ = '"';
    out.p = o;
  }
  template <size_t N>
  void text_or_null(const char (&k)[N], bool has, capnp::Text::Reader v) {
    key(k);
    if (has)
      json_string(out, sv(v));
    else
      out += "null";
  }
  template <size_t N>
  void u(const char (&k)[N], uint64_t v) {
    key(k);
    append_uint(out, v);
  }
  template <size_t N>
  void i(const char (&k)[N], int64_t v) {
    key(k);
    append_int(out, v);
  }
  template <size_t N>
  void b(const char (&k)[N], bool v) {
    key(k);
    if (v)
      out += "true";
    else
      out += "false";
  }
  template <size_t N>
  void time(const char (&k)[N], int64_t time_us) {
    key(k);
    out += '"';
    append_time(out, time_us);
    out += '"';
  }
  template <size_t N>
  void hex(const char (&k)[N], capnp::Data::Reader d) {
    static const char* kHex = "0123456789abcdef";
    key(k);
    out.need(d.size() * 2 + 2);
    char* o = out.p;
    *o++ = '"';
    for (auto byte : d) {
      *o++ = kHex[byte >> 4];
      *o++ = kHex[byte & 15];
    }
    *o++ = '"';
    out.p = o;
  }
};

void render_flow_summary(schema::FlowSummary::Reader s, Field& f) {
  Out& out = f.out;
  f.key("flows");
  out += '{';
  Field g{out};
  g.b("probes", s.getProbes());
  g.u("flows", s.getFlows());
  g.u("txPackets", s.getTxPackets());
  g.u("txBytes", s.getTxBytes());
  g.u("rxPackets", s.getRxPackets());
  g.u("rxBytes", s.getRxBytes());
  g.u("deniedFlows", s.getDeniedFlows());
  g.u("deniedPackets", s.getDeniedPackets());
  g.u("lostRecords", s.getLostRecords());
  g.u("nflogGaps", s.getNflogGaps());
  g.u("evictedFlows", s.getEvictedFlows());
  g.key("topDestinations");
  out += '[';
  auto list = s.getTopDestinations();
  for (unsigned k = 0; k < list.size(); ++k) {
    if (k) out += ',';
    out += '{';
    Field h{out};
    const auto e = list[k];  // one element lookup, not one per field
    h.str("addr", sv(e.getAddr()));
    h.u("port", e.getPort());
    h.str("protocol", sv(e.getProtocol()));
    h.u("flows", e.getFlows());
    h.u("packets", e.getPackets());
    h.u("bytes", e.getBytes());
    out += '}';
  }
  out += ']';
  out += '}';
}

void render_data(LogRecord::Data::Reader d, Out& out) {
  out += '{';
  Field f{out};
  switch (d.which()) {
    case LogRecord::Data::STARTED: {
      auto s = d.getStarted();
      f.str("cellId", sv(s.getCellId()));
      f.str("runId", sv(s.getRunId()));
      f.str("hostId", sv(s.getHostId()));
      if (s.hasCorrelationId() && s.getCorrelationId().size())
        f.str("correlationId", sv(s.getCorrelationId()));
      if (s.hasArgv0Path() && s.getArgv0Path().size()) f.str("argv0Path", sv(s.getArgv0Path()));
      if (s.hasBackend() && s.getBackend().size() > 0) f.str("backend", sv(s.getBackend()));
      if (s.hasAdmission() && s.getAdmission().size() > 0) f.str("admission", sv(s.getAdmission()));
      break;
    }
    case LogRecord::Data::NETWORK_POLICY: {
      auto s = d.getNetworkPolicy();
      auto list = s.getDeclaredEgress();
      f.str("cellId", sv(s.getCellId()));
      f.str("isolationMode", sv(s.getIsolationMode()));
      f.u("declaredEgressCount", list.size());
      f.key("declaredEgress");
      out += '[';
      for (unsigned k = 0; k < list.size(); ++k) {
        if (k) out += ',';
        out += '{';
        Field g{out};
        const auto e = list[k];  // one element lookup, not one per field
        g.str("host", sv(e.getHost()));
        g.u("port", e.getPort());
        g.text_or_null("protocol", e.hasProtocol(), e.getProtocol());
        if (e.hasResolvedAddresses() && e.getResolvedAddresses().size() > 0) {
          g.key("resolvedAddresses");
          out += '[';
          auto addrs = e.getResolvedAddresses();
          for (unsigned a = 0; a < addrs.size(); ++a) {
            if (a) out += ',';
            append_json_string(out, sv(addrs[a]));
          }
          out += ']';
        }
        out += '}';
      }
      out += ']';
      break;
    }
    case LogRecord::Data::COMPLETED: {
      auto s = d.getCompleted();
      f.str("cellId", sv(s.getCellId()));
      f.key("exitCode");
      if (s.getHasExitCode()) append_int(out, s.getExitCode()); else out += "null";
      f.key("signal");
      if (s.getHasSignal()) append_int(out, s.getSignal()); else out += "null";
      f.u("durationMs", s.getDurationMs());
      f.plain("reason", reason_text(s.getReason()));
      if (s.hasError() && s.getError().size() > 0) f.str("error", sv(s.getError()));
      if (s.getStdoutTruncated()) f.b("stdoutTruncated", true);
      if (s.getStderrTruncated()) f.b("stderrTruncated", true);
      if (s.hasResources()) {
        auto r = s.getResources();
        f.key("resources");
        out += '{';
        Field g{out};
        g.key("memoryPeakBytes");
        if (r.getHasMemoryPeak()) append_uint(out, r.getMemoryPeakBytes()); else out += "null";
        g.key("cpuUsageUsec");
        if (r.getHasCpuUsage()) append_uint(out, r.getCpuUsageUsec()); else out += "null";
        g.key("pidsPeak");
        if (r.getHasPidsPeak()) append_uint(out, r.getPidsPeak()); else out += "null";
        g.u("oomKills", r.getOomKills());
        out += '}';
      }
      if (s.hasGracefulStop()) {
        auto r = s.getGracefulStop();
        f.key("gracefulStop");
        out += '{';
        Field g{out};
        g.str("cause", sv(r.getCause()));
        g.u("graceSeconds", r.getGraceSeconds());
        g.b("exitedInTime", r.getExitedInTime());
        out += '}';
      }
      if (s.hasBackend() && s.getBackend().size() > 0) f.str("backend", sv(s.getBackend()));
      break;
    }
    case LogRecord::Data::DESTROYED: {
      auto s = d.getDestroyed();
      f.str("cellId", sv(s.getCellId()));
      f.plain("outcome", s.getSucceeded() ? "succeeded" : "failed");
      f.plain("terminalState", s.getForced() ? "Forced" : "Clean");
      if (s.hasReason() && s.getReason().size() > 0) f.str("reason", sv(s.getReason()));
      if (s.hasBackend() && s.getBackend().size() > 0) f.str("backend", sv(s.getBackend()));
      if (s.hasFlows()) render_flow_summary(s.getFlows(), f);
      if (s.hasDns()) {
        auto x = s.getDns();
        f.key("dns");
        out += '{';
        Field g{out};
        g.u("queries", x.getQueries());
        g.u("permitted", x.getPermitted());
        g.u("refused", x.getRefused());
        g.u("failed", x.getFailed());
        g.u("dropped", x.getDropped());
        g.u("rebindRejected", x.getRebindRejected());
        g.u("addressesGranted", x.getAddressesGranted());
        g.u("addressesEvicted", x.getAddressesEvicted());
        out += '}';
      }
      break;
    }
    case LogRecord::Data::DNS_QUERY: {
      auto s = d.getDnsQuery();
      f.str("cellId", sv(s.getCellId()));
      f.str("queryName", sv(s.getQueryName()));
      f.str("queryType", sv(s.getQueryType()));
      f.str("transport", sv(s.getTransport()));
      f.str("decision", sv(s.getDecision()));
      f.str("reasonCode", sv(s.getReasonCode()));
      f.str("responseCode", sv(s.getResponseCode()));
      f.key("answers");
      out += '[';
      {
        auto list = s.getAnswers();
        for (unsigned i = 0; i < list.size(); ++i) {
          if (i) out += ',';
          append_json_string(out, sv(list[i]));
        }
      }
      out += ']';
      f.key("upstreamLatencyUs");
      if (s.getHasUpstreamLatency()) append_int(out, s.getUpstreamLatencyUs()); else out += "null";
      f.str("upstream", sv(s.getUpstream()));
      f.u("count", s.getCount());
      break;
    }
    case LogRecord::Data::FLOW_DECISION: {
      auto s = d.getFlowDecision();
      f.str("cellId", sv(s.getCellId()));
      f.str("direction", sv(s.getDirection()));
      f.plain("decision", s.getAllowed() ? "allow" : "deny");
      f.str("reasonCode", sv(s.getReasonCode()));
      f.str("protocol", sv(s.getProtocol()));
      f.str("srcAddr", sv(s.getSrcAddr()));
      f.u("srcPort", s.getSrcPort());
      f.str("dstAddr", sv(s.getDstAddr()));
      f.u("dstPort", s.getDstPort());
      f.u("packets", s.getPackets());
      f.u("bytes", s.getBytes());
      f.u("txPackets", s.getTxPackets());
      f.u("txBytes", s.getTxBytes());
      f.u("rxPackets", s.getRxPackets());
      f.u("rxBytes", s.getRxBytes());
      f.time("firstSeen", s.getFirstSeenUs());
      f.time("lastSeen", s.getLastSeenUs());
      f.str("phase", sv(s.getPhase()));
      break;
    }
    case LogRecord::Data::ARTIFACT_EXPORT: {
      auto s = d.getArtifactExport();
      f.str("cellId", sv(s.getCellId()));
      f.str("name", sv(s.getName()));
      f.str("path", sv(s.getPath()));
      f.b("required", s.getRequired());
      f.b("succeeded", s.getSucceeded());
      f.u("sizeBytes", s.getSizeBytes());
      f.u("files", s.getFiles());
      if (s.hasSha256() && s.getSha256().size() > 0) f.str("sha256", sv(s.getSha256()));
      if (s.hasError() && s.getError().size() > 0) f.str("error", sv(s.getError()));
      f.key("receipts");
      Out& out = f.out;
      out += '[';
      auto list = s.getReceipts();
      for (unsigned k = 0; k < list.size(); ++k) {
        if (k) out += ',';
        out += '{';
        Field h{out};
        const auto e = list[k];  // one element lookup, not one per field
        h.str("targetKind", sv(e.getTargetKind()));
        h.str("destination", sv(e.getDestination()));
        h.b("succeeded", e.getSucceeded());
        if (e.hasError() && e.getError().size() > 0) h.str("error", sv(e.getError()));
        out += '}';
      }
      out += ']';
      break;
    }
    case LogRecord::Data::NESTED_SEALED: {
      auto s = d.getNestedSealed();
      f.str("cellId", sv(s.getCellId()));
      f.str("nestingPath", sv(s.getNestingPath()));
      f.str("path", sv(s.getPath()));
      f.str("publicKey", base64(sv(s.getPublicKey())));
      f.str("keyId", sv(s.getKeyId()));
      f.hex("headDigest", s.getHeadDigest());
      f.u("lastSeq", s.getLastSeq());
      f.u("eventCount", s.getEventCount());
      f.u("batches", s.getBatches());
      f.u("sizeBytes", s.getSizeBytes());
      f.hex("sha256", s.getSha256());
      f.str("format", sv(s.getFormat()));
      f.u("unsealedRecords", s.getUnsealedRecords());
      f.u("tornBytes", s.getTornBytes());
      f.b("verified", s.getVerified());
      if (s.hasError() && s.getError().size() > 0) f.str("error", sv(s.getError()));
      break;
    }
    case LogRecord::Data::FLOW_PROBES: {
      auto s = d.getFlowProbes();
      f.str("hostId", sv(s.getHostId()));
      f.b("active", s.getActive());
      f.str("enforcement", sv(s.getEnforcement()));
      if (s.hasReason() && s.getReason().size() > 0) f.str("reason", sv(s.getReason()));
      break;
    }
    case LogRecord::Data::NETWORK_ENFORCEMENT: {
      auto s = d.getNetworkEnforcement();
      f.str("cellId", sv(s.getCellId()));
      f.str("isolationMode", sv(s.getIsolationMode()));
      f.u("declaredEgressRuleCount", s.getDeclaredEgressRuleCount());
      f.b("nftRulesApplied", s.getNftRulesApplied());
      f.b("supplementaryEgressFilterActive", s.getSupplementaryEgressFilterActive());
      f.key("commandExitCode");
      if (s.getHasCommandExitCode()) append_int(out, s.getCommandExitCode()); else out += "null";
      f.u("nftRuleCount", s.getNftRuleCount());
      f.text_or_null("cellAddress", s.hasCellAddress(), s.getCellAddress());
      f.key("ruleCounters");
      out += '[';
      auto list = s.getRuleCounters();
      for (unsigned k = 0; k < list.size(); ++k) {
        if (k) out += ',';
        out += '{';
        Field g{out};
        const auto e = list[k];  // one element lookup, not one per field
        g.str("rule", sv(e.getRule()));
        g.u("packets", e.getPackets());
        g.u("bytes", e.getBytes());
        out += '}';
      }
      out += ']';
      break;
    }
    case LogRecord::Data::SECRET_ACCESS: {
      auto s = d.getSecretAccess();
      f.str("cellId", sv(s.getCellId()));
      f.str("runId", sv(s.getRunId()));
      f.str("secretName", sv(s.getSecretName()));
      f.plain("decision", s.getAllowed() ? "allow" : "deny");
      f.str("reasonCode", sv(s.getReasonCode()));
      f.str("delivery", sv(s.getDelivery()));
      f.i("peerPid", s.getPeerPid());
      f.u("peerUid", s.getPeerUid());
      break;
    }
    case LogRecord::Data::SECRETS_REVOKED: {
      auto s = d.getSecretsRevoked();
      f.str("cellId", sv(s.getCellId()));
      f.str("runId", sv(s.getRunId()));
      f.str("delivery", sv(s.getDelivery()));
      f.key("secretNames");
      out += '[';
      auto names = s.getSecretNames();
      for (unsigned k = 0; k < names.size(); ++k) {
        if (k) out += ',';
        append_json_string(out, sv(names[k]));
      }
      out += ']';
      f.u("served", s.getServed());
      f.u("refused", s.getRefused());
      f.str("reason", sv(s.getReason()));
      break;
    }
    case LogRecord::Data::IDENTITY_ISSUED: {
      auto s = d.getIdentityIssued();
      f.str("cellId", sv(s.getCellId()));
      f.str("runId", sv(s.getRunId()));
      f.str("issuer", sv(s.getIssuer()));
      f.str("subject", sv(s.getSubject()));
      f.str("audience", sv(s.getAudience()));
      f.str("keyId", sv(s.getKeyId()));
      f.str("jti", sv(s.getJti()));
      f.str("delivery", sv(s.getDelivery()));
      f.i("issuedAt", s.getIssuedAt());
      f.i("expiresAt", s.getExpiresAt());
      break;
    }
    case LogRecord::Data::REJECTED: {
      auto s = d.getRejected();
      f.text_or_null("cellId", s.hasCellId(), s.getCellId());
      f.str("reason", sv(s.getReason()));
      break;
    }
    case LogRecord::Data::BATCH_SEALED: {
      auto s = d.getBatchSealed();
      f.u("firstSeq", s.getFirstSeq());
      f.u("lastSeq", s.getLastSeq());
      f.u("eventCount", s.getEventCount());
      f.hex("merkleRoot", s.getMerkleRoot());
      f.hex("prevDigest", s.getPrevDigest());
      f.b("recovered", s.getRecovered());
      f.u("truncatedBytes", s.getTruncatedBytes());
      f.plain("alg", s.getKeyId().size() ? "ed25519" : "none");
      f.str("keyId", sv(s.getKeyId()));
      // Last, so the signed bytes (this line with an empty signature) are found by one search.
      f.str("signature", base64(sv(s.getSignature())));
      break;
    }
    case LogRecord::Data::GAP: {
      auto s = d.getGap();
      f.u("droppedEvents", s.getDroppedEvents());
      f.u("droppedBytes", s.getDroppedBytes());
      f.time("firstTime", s.getFirstTimeUs());
      f.time("lastTime", s.getLastTimeUs());
      f.str("reason", sv(s.getReason()));
      break;
    }
  }
  out += '}';
}

}  // namespace

const char* record_type(LogRecord::Reader r) {
  switch (r.getData().which()) {
    case LogRecord::Data::STARTED: return "dev.cellos.events.cell.lifecycle.v1.started";
    case LogRecord::Data::NETWORK_POLICY:
      return "dev.cellos.events.cell.observability.v1.network_policy";
    case LogRecord::Data::COMPLETED: return "dev.cellos.events.cell.command.v1.completed";
    case LogRecord::Data::DESTROYED: return "dev.cellos.events.cell.lifecycle.v1.destroyed";
    case LogRecord::Data::REJECTED: return "dev.cellos.events.cell.lifecycle.v1.rejected";
    case LogRecord::Data::BATCH_SEALED: return kBatchSealedType;
    case LogRecord::Data::GAP: return kGapType;
    case LogRecord::Data::NETWORK_ENFORCEMENT:
      return "dev.cellos.events.cell.observability.v1.network_enforcement";
    case LogRecord::Data::FLOW_DECISION:
      return "dev.cellos.events.cell.observability.v1.network_flow_decision";
    case LogRecord::Data::FLOW_PROBES: return "dev.cellos.events.host.observability.v1.flow_probes";
    case LogRecord::Data::SECRET_ACCESS: return "dev.cellos.events.cell.secrets.v1.access_decision";
    case LogRecord::Data::SECRETS_REVOKED: return "dev.cellos.events.cell.secrets.v1.revoked";
    case LogRecord::Data::IDENTITY_ISSUED: return "dev.cellos.events.cell.identity.v1.materialized";
    case LogRecord::Data::ARTIFACT_EXPORT: return "dev.cellos.events.cell.export.v1.completed";
    case LogRecord::Data::NESTED_SEALED: return "dev.cellos.events.cell.nested.v1.sealed";
    case LogRecord::Data::DNS_QUERY: return dns_event_type(sv(r.getData().getDnsQuery().getKind()));
  }
  return "unknown";
}

namespace {

// `h` is the record's header: read back from `r`, or the one set_header() wrote into it.
void render(const RecordHeader& h, LogRecord::Reader r, Out& out, bool with_dsse) {
  // Every line starts with these constant bytes: one copy.
  out += "{\"specversion\":\"1.0\"";
  Field f{out, false};
  f.str("id", h.id);
  f.str("source", h.source);
  f.plain("type", record_type(r));
  if (!h.subject.empty()) f.str("subject", h.subject);
  f.time("time", h.time_us);
  out += ",\"datacontenttype\":\"application/json\"";
  // A CloudEvents extension attribute (lowercase alphanumerics, as the spec requires of names).
  if (!h.correlation.empty()) f.str("correlationid", h.correlation);
  if (h.seq != 0) f.u("cellosseq", h.seq);  // 0: a record outside a log
  if (with_dsse && r.hasDsse()) f.str("dssematerial", sv(r.getDsse()));
  f.key("data");
  render_data(r.getData(), out);
  out += '}';
}

RecordHeader header_of(LogRecord::Reader r) {
  return RecordHeader{r.getSeq(), r.getTimeUs(), sv(r.getId()), sv(r.getSource()),
                      r.hasSubject() ? sv(r.getSubject()) : std::string_view(),
                      r.hasCorrelationId() ? sv(r.getCorrelationId()) : std::string_view()};
}

}  // namespace

void render_line(LogRecord::Reader r, std::string& out, bool with_dsse) {
  Out o(out, out.size());
  render(header_of(r), r, o, with_dsse);
  out.resize(o.len());
}

size_t render_line_at(LogRecord::Reader r, std::string& buf, size_t len, bool with_dsse) {
  Out o(buf, len);
  render(header_of(r), r, o, with_dsse);
  return o.len();
}

size_t render_line_at(const RecordHeader& h, LogRecord::Reader r, std::string& buf, size_t len) {
  Out o(buf, len);
  render(h, r, o, true);
  return o.len();
}

void append_json_string(std::string& out, std::string_view s) {
  Out o(out, out.size());
  json_string(o, s);
  out.resize(o.len());
}

std::string dsse_pae(std::string_view type, std::string_view body) {
  std::string s = "DSSEv1 ";
  s += std::to_string(type.size());
  s += ' ';
  s += type;
  s += ' ';
  s += std::to_string(body.size());
  s += ' ';
  s += body;
  return s;
}

capnp::MallocMessageBuilder& RecordArena::start() {
  // capnp wants a zeroed first segment; ~MallocMessageBuilder zeroes the part the last record
  // used when the segment is the caller's, so destroying the previous message is enough.
  msg_.reset();
  msg_.emplace(kj::arrayPtr(reinterpret_cast<capnp::word*>(words_.get()), kWords));
  return *msg_;
}

}  // namespace cellos::sinks
