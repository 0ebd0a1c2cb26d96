// The one machine-readable line a benchmark prints for bench/report.py (the `bench-report`
// target): `REPORT {json}` on stdout, after its human-readable output. Header-only and
// dependency-free, so every bench (some link nothing of the reactor) can use it.
//
//   {"bench": "spawn", "part": "...",                       which benchmark (and which part of it)
//    "rows": [{"name": "floor", "median ms": 2.4, ...}],    one table: first key names the row
//    "metrics": [{"name": "reactor/floor median", "value": 3.4, "target": "<= 1.5", "met": false}],
//    "samples": "/abs/raw.csv", ...}                         raw samples for figures, extra fields
//
// A bench may print several REPORT lines (one per part); the report merges them. Raw-sample
// files go under $CELLOS_BENCH_OUT when it is set (out_path() says where, or "" when unset), so a
// plain run writes nothing beyond what it always wrote.
#pragma once

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <utility>
#include <vector>

namespace cellos::bench {

// $CELLOS_BENCH_OUT/<file>, or "" when the variable is unset (then write no samples).
inline std::string out_path(const std::string& file) {
  const char* dir = std::getenv("CELLOS_BENCH_OUT");
  if (dir == nullptr || *dir == '\0') return "";
  return std::string(dir) + "/" + file;
}

class ReportLine {
 public:
  explicit ReportLine(const std::string& bench, const std::string& part = "") {
    head_ = "\"bench\":" + quote(bench);
    if (!part.empty()) head_ += ",\"part\":" + quote(part);
  }
  // One table row: its name, then (column, value) pairs in display order.
  ReportLine& row(const std::string& name,
                  const std::vector<std::pair<std::string, double>>& cols) {
    std::string r = "{\"name\":" + quote(name);
    for (const auto& [k, v] : cols) r += "," + quote(k) + ":" + number(v);
    rows_.push_back(r + "}");
    return *this;
  }
  // A headline figure; target is how it is judged ("<= 1.5"), met whether this run met it.
  ReportLine& metric(const std::string& name, double value, const std::string& unit = "",
                     const std::string& target = "", int met = -1) {
    std::string m = "{\"name\":" + quote(name) + ",\"value\":" + number(value);
    if (!unit.empty()) m += ",\"unit\":" + quote(unit);
    if (!target.empty()) m += ",\"target\":" + quote(target);
    if (met >= 0) m += std::string(",\"met\":") + (met ? "true" : "false");
    metrics_.push_back(m + "}");
    return *this;
  }
  ReportLine& field(const std::string& key, const std::string& value) {
    extra_ += "," + quote(key) + ":" + quote(value);
    return *this;
  }
  ReportLine& field(const std::string& key, double value) {
    extra_ += "," + quote(key) + ":" + number(value);
    return *this;
  }
  void print() const {
    std::string s = "REPORT {" + head_;
    s += ",\"rows\":[" + join(rows_) + "],\"metrics\":[" + join(metrics_) + "]" + extra_ + "}";
    std::printf("%s\n", s.c_str());
    std::fflush(stdout);
  }

 private:
  static std::string join(const std::vector<std::string>& v) {
    std::string s;
    for (const auto& x : v) s += (s.empty() ? "" : ",") + x;
    return s;
  }
  static std::string number(double v) {
    if (!std::isfinite(v)) return "null";
    char buf[64];
    std::snprintf(buf, sizeof buf, "%.10g", v);
    return buf;
  }
  static std::string quote(const std::string& s) {
    std::string q = "\"";
    for (unsigned char c : s) {
      if (c == '"' || c == '\\') {
        q += '\\';
        q += static_cast<char>(c);
      } else if (c < 0x20) {
        char buf[8];
        std::snprintf(buf, sizeof buf, "\\u%04x", c);
        q += buf;
      } else {
        q += static_cast<char>(c);
      }
    }
    return q + "\"";
  }
  std::string head_, extra_;
  std::vector<std::string> rows_, metrics_;
};

}  // namespace cellos::bench
