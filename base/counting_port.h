// An IoPort that passes everything to another and counts the writes on the way: how the event
// log's tests and benchmark prove "one write per batch" without tracing syscalls. It counts the
// exit waits too: when a cell arms its own (exit_watch_test).
#pragma once

#include <cstdint>

#include "base/io.h"

namespace cellos::base {

class CountingPort final : public IoPort {
 public:
  explicit CountingPort(IoPort& inner) : inner_(inner) {}
  void read(int fd, std::span<std::byte> b, Completion& c) override { inner_.read(fd, b, c); }
  void write(int fd, std::span<const std::byte> b, Completion& c) override {
    ++writes;
    inner_.write(fd, b, c);
  }
  void timeout(std::chrono::nanoseconds a, Completion& c) override { inner_.timeout(a, c); }
  void wait_exit(int fd, siginfo_t* i, Completion& c) override {
    ++exit_waits;
    inner_.wait_exit(fd, i, c);
  }
  bool can_wait_pid() const override { return inner_.can_wait_pid(); }
  void wait_exit_pid(pid_t pid, siginfo_t* i, Completion& c) override {
    ++exit_waits;
    inner_.wait_exit_pid(pid, i, c);
  }
  void poll(int fd, short events, Completion& c) override { inner_.poll(fd, events, c); }
  void accept(int fd, Completion& c) override { inner_.accept(fd, c); }
  Result<std::unique_ptr<BufferRing>> buffer_ring(const BufferRingOptions& o) override {
    return inner_.buffer_ring(o);
  }
  void recv_multishot(int fd, BufferRing& r, MultishotCompletion& c) override {
    inner_.recv_multishot(fd, r, c);
  }
  void close(int fd) override { inner_.close(fd); }
  void read_small_file(std::string path, size_t limit, FileText done) override {
    inner_.read_small_file(std::move(path), limit, std::move(done));
  }
  void cancel(Completion& c) override { inner_.cancel(c); }
  void cancel(MultishotCompletion& c) override { inner_.cancel(c); }
  uint64_t writes = 0;
  uint64_t exit_waits = 0;

 private:
  IoPort& inner_;
};

}  // namespace cellos::base
