// libFuzzer target: any bytes as one datagram from an NFLOG socket. scan_nflog_datagram walks
// netlink headers and attributes the kernel wrote; a length field that lies must never make it
// read past the datagram.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <span>

#include "netns/nflog.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  // The kernel's buffers are aligned; the fuzzer's are not. An exact-size heap copy keeps the
  // alignment and lets ASan see any read past the end.
  std::unique_ptr<std::byte[]> buf(new std::byte[size ? size : 1]);
  if (size) std::memcpy(buf.get(), data, size);
  unsigned seen = 0;
  (void)cellos::netns::scan_nflog_datagram(std::span<const std::byte>(buf.get(), size),
                                           std::chrono::system_clock::now(),
                                           [&](const cellos::netns::DenyRecord&) { ++seen; });
  return 0;
}
