// dnsmasq (Debian's dnsmasq-base) as a real DNS server for tests: on 127.0.0.1:<free port>,
// answering only the records it is given (--address, --txt-record, ...), nothing upstream, and
// logging every query it receives, so a test can count what reached it.
#pragma once

#include <sys/types.h>

#include <string>
#include <vector>

namespace cellos::test {

class Dnsmasq {
 public:
  // `options`: more dnsmasq flags. Answers carry TTL `ttl` (--local-ttl).
  explicit Dnsmasq(const std::vector<std::string>& options, int ttl = 300);
  ~Dnsmasq();
  Dnsmasq(const Dnsmasq&) = delete;
  Dnsmasq& operator=(const Dnsmasq&) = delete;

  // Empty when it runs; else why it cannot run here (the test skips).
  const std::string& why() const { return why_; }
  int port() const { return port_; }
  std::string upstream() const { return "127.0.0.1:" + std::to_string(port_); }
  // Queries for `name` the server received (its log: "query[TYPE] name from ...").
  int queries_for(const std::string& name) const;

 private:
  pid_t pid_ = -1;
  int port_ = 0;
  std::string dir_, log_, why_;
};

}  // namespace cellos::test
