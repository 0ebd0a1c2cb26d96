// The companion's end of the socketpair: frames out from any thread (one send per frame,
// serialised), frames in on the main thread. When the daemon is gone, the companion goes too.
#pragma once

#include <mutex>
#include <optional>
#include <vector>

#include "reactor/nats/frames.h"

namespace cellos::reactor::nats {

class Channel {
 public:
  explicit Channel(int fd);
  // Exits the process if the daemon's end is closed: nobody is left to serve.
  void send(const Frame& f);
  void note(const std::string& line) { send(Frame{Kind::kNote, 0, 0, {}, {}, line, {}}); }
  // Blocks for the next frame; nullopt when the daemon closed its end.
  std::optional<Frame> receive();

 private:
  int fd_;
  std::mutex send_mu_;
  std::vector<std::byte> buf_;
};

}  // namespace cellos::reactor::nats
