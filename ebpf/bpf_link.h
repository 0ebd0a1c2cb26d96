// BpfLink: the one owner of one BPF link (one program attached to one hook), held as the
// link's file descriptor (BPF_LINK_CREATE). Destroying it detaches the program: the kernel
// drops a cgroup attachment when the last link fd closes, so no detach call is needed and a
// crashed reactor leaves nothing attached (which is also what makes reusing a pinned object
// safe: probe_pins.h).
#pragma once

#include <utility>

#include "base/fd.h"

namespace cellos::ebpf {

class BpfLink {
 public:
  BpfLink() = default;
  explicit BpfLink(int fd) : fd_(fd) {}
  BpfLink(BpfLink&&) noexcept = default;
  BpfLink& operator=(BpfLink&&) noexcept = default;

  bool valid() const { return fd_.valid(); }
  void reset() { fd_.reset(); }

 private:
  base::Fd fd_;
};

}  // namespace cellos::ebpf
