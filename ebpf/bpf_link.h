// BpfLink: the one owner of a libbpf `struct bpf_link` (one program attached to one hook).
// Destroying it detaches the program: the kernel drops a cgroup attachment when the last link
// fd closes, so no detach call is needed and a crashed reactor leaves nothing attached.
#pragma once

#include <utility>

struct bpf_link;

namespace cellos::ebpf {

class BpfLink {
 public:
  BpfLink() = default;
  explicit BpfLink(bpf_link* l) : link_(l) {}
  BpfLink(const BpfLink&) = delete;
  BpfLink& operator=(const BpfLink&) = delete;
  BpfLink(BpfLink&& o) noexcept : link_(std::exchange(o.link_, nullptr)) {}
  BpfLink& operator=(BpfLink&& o) noexcept {
    if (this != &o) {
      reset();
      link_ = std::exchange(o.link_, nullptr);
    }
    return *this;
  }
  ~BpfLink() { reset(); }

  bool valid() const { return link_ != nullptr; }
  void reset();

 private:
  bpf_link* link_ = nullptr;
};

}  // namespace cellos::ebpf
