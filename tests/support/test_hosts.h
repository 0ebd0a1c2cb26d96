// Test hosts for network tests: network namespaces the test creates, each joined to the root
// namespace by a veth pair with addresses the test assigns (172.30-31.x.0/24, never the cell
// subnet), and greeters on them. Traffic in tests goes only to these and to loopback.
#pragma once

#include <atomic>
#include <string>
#include <thread>
#include <vector>

#include "base/fd.h"

namespace cellos::test {

// Listening sockets and one thread answering them: a TCP connection gets "hello" and is
// closed; a UDP datagram gets "pong" back. Stops and joins on destruction.
class Greeter {
 public:
  Greeter() = default;
  ~Greeter();
  // Opens a socket in the calling thread's namespace; port 0 lets the kernel pick. Returns
  // the port. Call before start().
  int listen_tcp(const std::string& ip, int port = 0);
  int listen_udp(const std::string& ip, int port = 0);
  void start();

 private:
  void serve();
  std::vector<base::Fd> tcp_, udp_;
  base::Pipe stop_;
  std::thread thread_;
};

class TestHost {
 public:
  // `octet2` 30 or 31: the host is 172.<octet2>.<pid % 250>.2, its root-side peer .1.
  explicit TestHost(int octet2);
  ~TestHost();
  TestHost(const TestHost&) = delete;
  TestHost& operator=(const TestHost&) = delete;

  const std::string& ip() const { return ip_; }
  const std::string& root_ip() const { return root_ip_; }  // an address of the host itself
  const std::string& veth() const { return veth_; }
  // Listeners inside the host's namespace.
  int tcp(int port = 0);
  int udp(int port = 0);
  void start() { greeter_.start(); }

 private:
  std::string ip_, root_ip_, veth_;
  base::Fd netns_, home_;
  Greeter greeter_;
};

// True when this machine can build test hosts (root, veth, netns).
bool can_build_test_hosts(std::string* why);

}  // namespace cellos::test
