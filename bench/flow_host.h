// The server side of flow_bench: a network namespace joined to the root namespace by a veth
// pair (addresses we assign in 172.30.K.0/24, like tests/support/test_hosts), and the sink
// (`flow_bench --serve`) running in it. The cells' NAT uplink routes to it like to any host
// beyond the machine: cell -> bridge -> forward -> masquerade out of our veth -> the sink.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <string>

#include "base/fd.h"

namespace cellos::flowbench {

struct ServerCounts {
  uint64_t conns = 0, bytes = 0, datagrams = 0, udp_bytes = 0;
};

// Third octets free on this machine for the server (172.30.K) and the cells' subnet (172.31.K):
// starts from pid % 250 and skips any /24 an interface already holds (a test run's host).
int free_octet();

class ServerHost {
 public:
  // Throws std::runtime_error naming the call that failed.
  ServerHost(const std::string& self_exe, int octet);
  ~ServerHost();
  ServerHost(const ServerHost&) = delete;
  ServerHost& operator=(const ServerHost&) = delete;

  const std::string& ip() const { return ip_; }
  int tcp_port() const { return tcp_port_; }
  int udp_port() const { return udp_port_; }
  // The sink's counts since the previous call; false if it is gone.
  bool counts(ServerCounts& out);

 private:
  std::string read_line(int timeout_ms);
  std::string ip_, root_ip_, veth_;
  base::Fd netns_;
  base::Fd to_server_, from_server_;
  pid_t pid_ = -1;
  int tcp_port_ = 0, udp_port_ = 0;
  std::string pending_;
};

}  // namespace cellos::flowbench
