// What the eBPF probe tests share: a throwaway cgroup2 directory, a network namespace the test
// creates (loopback only), a child process that joins both, and a packet capture on that
// namespace's lo that counts what really crossed it (the independent method the probes'
// counters are checked against).
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "base/fd.h"

namespace cellos::test {

constexpr const char* kCgroup2Root = "/sys/fs/cgroup/unified";

// Why the eBPF tests cannot run here, or "" when they can (root, BTF, cgroup2 mounted).
std::string ebpf_unavailable();

// <kCgroup2Root>/cellos-ebpf-test-<pid>-<n>; on destruction its members are killed and it is
// removed.
class TestCgroup {
 public:
  TestCgroup();
  ~TestCgroup();
  TestCgroup(const TestCgroup&) = delete;
  TestCgroup& operator=(const TestCgroup&) = delete;
  const std::string& path() const { return path_; }
  int fd() const { return fd_.get(); }

 private:
  std::string path_;
  base::Fd fd_;
};

// A new network namespace with lo up. The test process stays in its own namespace; inside()
// runs a function in this one (sockets made there stay there).
class TestNetns {
 public:
  TestNetns();
  void inside(const std::function<void()>& f) const;
  int fd() const { return ns_.get(); }

 private:
  base::Fd ns_, home_;
};

// A forked child that enters `ns`, joins `cg` (cgroup.procs), runs `body` and exits with its
// return value. The body must not return into Catch2: it runs in the child only.
pid_t spawn_in_cell(const TestCgroup& cg, const TestNetns& ns, const std::function<int()>& body);
// waitpid with a deadline (SIGKILL after it); the exit status, or 128+signal.
int wait_child(pid_t pid, int timeout_s = 20);

// One IPv4 packet seen leaving lo (PACKET_OUTGOING, so each loopback packet once).
struct Captured {
  uint8_t l4proto = 0;
  uint32_t saddr = 0, daddr = 0;  // network byte order
  uint16_t sport = 0, dport = 0;  // host byte order
  uint32_t length = 0;            // the IP total length
};

class PacketCapture {
 public:
  explicit PacketCapture(const TestNetns& ns);  // AF_PACKET on the namespace's lo
  std::vector<Captured> take();                 // what arrived since the last take()

 private:
  base::Fd fd_;
};

}  // namespace cellos::test
