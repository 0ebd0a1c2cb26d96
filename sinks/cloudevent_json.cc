#include "sinks/cloudevent_json.h"

#include <sys/random.h>
#include <time.h>

#include <cstdio>
#include <unistd.h>

#include "sinks/log_record.h"

namespace cellos::sinks {

std::string rfc3339_utc(int64_t time_us) {
  time_t secs = static_cast<time_t>(time_us / 1000000);
  tm t{};
  gmtime_r(&secs, &t);
  char buf[64];  // ample for any int fields, which keeps -Wformat-truncation quiet
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%06dZ", t.tm_year + 1900,
                t.tm_mon + 1, t.tm_mday, t.tm_hour, t.tm_min, t.tm_sec,
                static_cast<int>(time_us % 1000000));
  return buf;
}

std::string encode_cloudevent(const Event& e, const CloudEventEnvelope& env) {
  // One renderer for every CloudEvent line: the event log's (sinks/log_record.h). A record
  // outside a log has no sequence number (0), so the line carries no cellosseq.
  RecordArena arena;
  auto r = arena.start().initRoot<schema::LogRecord>();
  set_header(RecordHeader{0, e.time_us, env.id, env.source, e.subject, e.correlation_id}, r);
  build_data(e.data, r);
  std::string line;
  render_line(r.asReader(), line);
  return line;
}

EventIdGenerator::EventIdGenerator() {
  uint64_t r = 0;
  if (getrandom(&r, sizeof r, 0) != sizeof r) {
    timespec ts{};
    clock_gettime(CLOCK_MONOTONIC, &ts);
    r = static_cast<uint64_t>(ts.tv_nsec) ^ (static_cast<uint64_t>(getpid()) << 32);
  }
  char buf[24];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(r));
  prefix_ = buf;
}

std::string EventIdGenerator::next() { return prefix_ + "-" + std::to_string(++counter_); }

}  // namespace cellos::sinks
