#include "reactor/event_sink_setup.h"

#include "sinks/jsonl_sink.h"

namespace cellos::reactor {

base::Result<std::unique_ptr<sinks::EventSink>> open_event_sink(
    const cells::Config& config, base::IoPort&, const std::optional<std::string>& path) {
  auto sink = sinks::JsonlSink::open(path.value_or(config.events_path()), config.host.id);
  if (!sink) return std::move(sink).error();
  return std::unique_ptr<sinks::EventSink>(std::move(*sink));
}

}  // namespace cellos::reactor
