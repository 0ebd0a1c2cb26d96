// How long one hostile spec holds the single-threaded reactor: the worst inputs a spool, a NATS
// stream or `run -` can hand parse_spec, each at the 1 MiB cap, timed from text to verdict.
// The target is 20 ms per spec (a spec must never stall the ring for longer than a few timer
// ticks). Prints one row per case and the command that reproduces it; exits 1 when a case
// misses the target, so CI can run it as a gate on an idle machine.
//
//   spec_bench [-n RUNS] [--case NAME]
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "bench/bench_stats.h"
#include "bench/report_line.h"
#include "cells/spec.h"

namespace {

using cellos::bench::Clock;
using cellos::bench::ms_since;
using cellos::cells::kMaxSpecBytes;

constexpr double kTargetMs = 20;

const std::string kHead =
    R"({"apiVersion":"cellos.io/v1","kind":"ExecutionCell","spec":{"id":"b","run":{"argv":["/bin/true"])";

// Fills `unit` up to just under the cap between `pre` and `post`.
std::string fill(const std::string& pre, const std::string& unit, const std::string& post) {
  std::string s = pre;
  while (s.size() + unit.size() + post.size() < kMaxSpecBytes) s += unit;
  return s + post;
}

// 120k distinct keys fit in 1 MiB only when short: three characters, a letter first.
std::string key3(size_t i) {
  static constexpr char kChars[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
  return {kChars[i % 52], kChars[i / 52 % 62], kChars[i / 3224 % 62]};
}

std::string many_keys(size_t n, bool repeat_last) {
  std::string env;
  for (size_t i = 0; i < n; ++i) env += (i ? ",\"" : "\"") + key3(i) + "\":1";
  if (repeat_last) env += ",\"" + key3(n - 1) + "\":2";
  return kHead + ",\"env\":{" + env + "}}}}";
}

struct Case {
  const char* name;
  const char* what;
  std::function<std::string()> make;
  bool expect_accept;
};

std::vector<Case> cases() {
  return {
      {"deep-arrays", "1 MiB of '[' under run.env",
       [] { return fill(kHead + ",\"env\":", "[", ""); }, false},
      {"deep-objects", "objects nested to the cap, {\"a\":{\"a\":...",
       [] { return fill("", "{\"a\":", ""); }, false},
      {"keys-120k", "120k distinct keys in run.env", [] { return many_keys(120000, false); },
       false},
      {"keys-120k-dup", "120k keys in run.env, the last repeated", [] { return many_keys(120000, true); },
       false},
      {"duplicates", "1 MiB of one key repeated at the root",
       [] { return fill("{", "\"a\":1,", "\"a\":1}"); }, false},
      {"duplicates-nested", "1 MiB of {\"a\":1,\"a\":1} objects in an array",
       [] { return fill(kHead + ",\"env\":[", "{\"a\":1},", "{\"a\":1,\"a\":1}]}}}"); }, false},
      {"long-string", "one 1 MiB argv string (accepted)",
       [] {
         std::string s = kHead.substr(0, kHead.size() - 1) + ",\"";
         return fill(s, "x", "\"]}}}");
       },
       true},
      {"long-key", "one 1 MiB unknown key", [] { return fill(kHead + ",\"", "k", "\":1}}}"); },
       false},
      {"secret-refs", "1 MiB of secretRefs", [] {
         std::string refs;
         for (int i = 0; refs.size() < kMaxSpecBytes - 4096; ++i)
           refs += (i ? ",\"S" : "\"S") + std::to_string(i) + "\"";
         return R"({"apiVersion":"cellos.io/v1","kind":"ExecutionCell","spec":{"id":"b",)"
                R"("authority":{"secretRefs":[)" + refs + R"(]},"run":{"argv":["/bin/true"]}}})";
       },
       false},
      {"env-4096", "4096 env variables, the most a spec may have (accepted)",
       [] {
         std::string env;
         for (int i = 0; i < 4096; ++i)
           env += (i ? ",\"E" : "\"E") + std::to_string(i) + "\":\"" + std::string(200, 'v') + "\"";
         return kHead + ",\"env\":{" + env + "}}}}";
       },
       true},
      {"argv-many", "1 MiB of one-letter argv entries",
       [] {
         std::string s = kHead.substr(0, kHead.size() - 1);
         return fill(s, ",\"a\"", "]}}}");
       },
       false},
      {"over-cap", "4 MiB of spaces (refused by size)",
       [] { return std::string(4 << 20, ' '); }, false},
  };
}

}  // namespace

int main(int argc, char** argv) {
  int runs = 20;
  std::string only;
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "-n") && i + 1 < argc) {
      runs = std::atoi(argv[++i]);
    } else if (!std::strcmp(argv[i], "--case") && i + 1 < argc) {
      only = argv[++i];
    } else {
      std::fprintf(stderr, "usage: %s [-n RUNS] [--case NAME]\n", argv[0]);
      return 2;
    }
  }
  if (runs < 1) runs = 1;
  std::printf("%-18s %9s %9s %9s %8s  %s\n", "case", "bytes", "median", "max", "target", "verdict");
  bool all_ok = true;
  cellos::bench::ReportLine rep("spec");  // the line bench/report.py reads, printed at the end
  double worst = 0;
  for (const Case& c : cases()) {
    if (!only.empty() && only != c.name) continue;
    const std::string text = c.make();
    std::vector<double> ms;
    std::string verdict;
    bool as_expected = true;
    for (int i = 0; i < runs; ++i) {
      auto t0 = Clock::now();
      auto r = cellos::cells::parse_spec(text);
      ms.push_back(ms_since(t0));
      as_expected = as_expected && r.ok() == c.expect_accept;
      if (i == 0) verdict = r.ok() ? "accepted" : r.error().message();
    }
    double max = *std::max_element(ms.begin(), ms.end());
    auto s = cellos::bench::stats(ms);
    const bool ok = s.median <= kTargetMs && as_expected;
    all_ok = all_ok && ok;
    if (verdict.size() > 70) verdict = verdict.substr(0, 67) + "...";
    std::printf("%-18s %9zu %7.2fms %7.2fms %6.0fms  %s %s\n", c.name, text.size(), s.median, max,
                kTargetMs, ok ? "ok  " : "MISS", verdict.c_str());
    std::printf("  %s; reproduce: %s -n %d --case %s\n", c.what, argv[0], runs, c.name);
    rep.row(c.name, {{"bytes", static_cast<double>(text.size())}, {"median ms", s.median},
                     {"max ms", max}, {"as expected", as_expected ? 1 : 0}});
    worst = std::max(worst, s.median);
  }
  rep.metric("slowest case, median", worst, "ms", "<= 20", all_ok)
      .field("reproduce", std::string(argv[0]) + " -n " + std::to_string(runs))
      .print();
  return all_ok ? 0 : 1;
}
