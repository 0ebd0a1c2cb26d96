#include "sinks/jsonl_sink.h"

#include <fcntl.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>

namespace cellos::sinks {

base::Result<std::unique_ptr<JsonlSink>> JsonlSink::open(const std::string& path,
                                                         const std::string& host_id) {
  base::Fd fd;
  if (path == "-") {
    int d = ::fcntl(STDOUT_FILENO, F_DUPFD_CLOEXEC, 3);
    if (d < 0) return base::sys_error("dup", "stdout");
    fd = base::Fd(d);
  } else {
    auto f = base::open_at(AT_FDCWD, path, O_WRONLY | O_CREAT | O_APPEND, 0640);
    if (!f) return std::move(f).error().context("event log");
    fd = std::move(*f);
  }
  return std::unique_ptr<JsonlSink>(
      new JsonlSink(std::move(fd), path, "/cellos-reactor/" + host_id));
}

void JsonlSink::emit(const Event& e) {
  std::string line = encode_cloudevent(e, {source_, ids_.next()});
  line += '\n';
  size_t done = 0;
  while (done < line.size()) {
    ssize_t n = ::write(fd_.get(), line.data() + done, line.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      if (first_error_.empty()) {
        first_error_ = "write(event log \"" + path_ + "\"): " + std::strerror(errno);
        std::fprintf(stderr, "cellos-reactor: %s\n", first_error_.c_str());
      }
      return;
    }
    done += static_cast<size_t>(n);
  }
  ++written_;
}

}  // namespace cellos::sinks
