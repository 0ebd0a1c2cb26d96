// JsonlSink: CloudEvents JSON lines appended to a file (or stdout for "-").
//
// One write(2) per event with O_APPEND, so lines from concurrent writers never interleave
// inside a line. Batching through the ring replaces this in the event-log work.
#pragma once

#include <memory>
#include <string>

#include "base/fd.h"
#include "sinks/cloudevent_json.h"

namespace cellos::sinks {

class JsonlSink final : public EventSink {
 public:
  // "-" writes to standard output; a path is created (0640) and appended to.
  static base::Result<std::unique_ptr<JsonlSink>> open(const std::string& path,
                                                       const std::string& host_id);
  void emit(const Event& e) override;
  uint64_t events_written() const override { return written_; }
  // The first write error, if any; reported once, and the reactor keeps supervising.
  const std::string& first_error() const { return first_error_; }

 private:
  JsonlSink(base::Fd fd, std::string path, std::string source)
      : fd_(std::move(fd)), path_(std::move(path)), source_(std::move(source)) {}
  base::Fd fd_;
  std::string path_;
  std::string source_;
  EventIdGenerator ids_;
  std::string first_error_;
  uint64_t written_ = 0;
};

}  // namespace cellos::sinks
