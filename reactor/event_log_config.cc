#include "reactor/event_log_config.h"

#include "sinks/event_log.h"

namespace cellos::reactor {

base::Result<std::unique_ptr<sinks::EventSink>> open_event_log(
    const cells::Config& config, base::IoPort& io, std::optional<std::string> path_override) {
  sinks::EventLogOptions o;
  o.path = path_override.value_or(config.events_path());
  o.host_id = config.host.id;
  o.format = sinks::parse_log_format(config.events.format);
  o.batch_max_events = config.events.batch_max_events;
  o.batch_max_delay = std::chrono::milliseconds(config.events.batch_max_delay_ms);
  o.signing_key_path = config.events.signing_key;
  o.per_event_signing = config.events.per_event_signing;
  o.max_buffered_bytes = config.events.max_buffered_bytes;
  auto log = sinks::EventLog::open(o, io);
  if (!log) return std::move(log).error();
  return std::unique_ptr<sinks::EventSink>(std::move(*log));
}

}  // namespace cellos::reactor
