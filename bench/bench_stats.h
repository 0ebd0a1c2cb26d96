// Timing helpers the in-process benchmarks share: milliseconds since a point, and the median,
// p99 and mean of a sample.
#pragma once

#include <algorithm>
#include <chrono>
#include <vector>

namespace cellos::bench {

using Clock = std::chrono::steady_clock;

inline double ms_since(Clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}

struct Stats {
  double median, p99, mean;
};

inline Stats stats(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  double sum = 0;
  for (double x : v) sum += x;
  return {v[v.size() / 2], v[std::min(v.size() - 1, v.size() * 99 / 100)],
          sum / static_cast<double>(v.size())};
}

}  // namespace cellos::bench
