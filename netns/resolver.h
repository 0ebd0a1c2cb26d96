// Resolver: hostname lookups on the reactor's ring, never on a blocking call.
//
// c-ares (a well-kept asynchronous resolver, Debian's libc-ares) does the DNS protocol; this
// class only drives it: each socket c-ares opens is polled through the IoPort, and one ring
// timeout stands for c-ares's next retransmission or deadline. A dead or silent DNS server
// therefore costs the reactor nothing but a pending request, which ends with a timeout error.
//
// Servers: [network] resolvers when given ("ip", "ip:port", "[v6]:port"), else the host's
// /etc/resolv.conf (read once, at create()).
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "base/io.h"
#include "base/result.h"

namespace cellos::netns {

struct ResolverOptions {
  std::vector<std::string> servers;  // empty: /etc/resolv.conf
  // Per query try; c-ares retries once more on another server (or the same) before it fails.
  std::chrono::milliseconds timeout{2500};
  int tries = 2;
};

class Resolver {
 public:
  using Done = std::function<void(base::Result<std::vector<std::string>>)>;

  static base::Result<std::unique_ptr<Resolver>> create(base::IoPort& io, ResolverOptions o);
  // Pending lookups end with ECANCELED (their callbacks run from here).
  ~Resolver();
  Resolver(const Resolver&) = delete;
  Resolver& operator=(const Resolver&) = delete;

  // The A and AAAA addresses of `name` (text, no duplicates, in the order c-ares gives them).
  // `done` runs exactly once, from a completion (never from inside resolve()).
  void resolve(const std::string& name, Done done);
  size_t pending() const;

 private:
  struct Impl;
  explicit Resolver(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace cellos::netns
