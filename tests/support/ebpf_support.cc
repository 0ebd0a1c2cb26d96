#include "tests/support/ebpf_support.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <linux/if_ether.h>
#include <linux/if_packet.h>
#include <netinet/ip.h>
#include <sched.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <stdexcept>
#include <thread>

#include "netns/loopback.h"

namespace cellos::test {
namespace {

void check(bool ok, const std::string& what) {
  if (!ok) throw std::runtime_error(what + ": " + std::strerror(errno));
}

}  // namespace

std::string ebpf_unavailable() {
  if (::geteuid() != 0) return "eBPF tests need root (BPF, cgroups, netns)";
  struct stat st {};
  if (::stat("/sys/kernel/btf/vmlinux", &st) != 0) return "no kernel BTF (/sys/kernel/btf/vmlinux)";
  if (::stat((std::string(kCgroup2Root) + "/cgroup.procs").c_str(), &st) != 0)
    return std::string("no cgroup2 hierarchy at ") + kCgroup2Root;
  return "";
}

TestCgroup::TestCgroup() {
  static std::atomic<int> n{0};
  path_ = std::string(kCgroup2Root) + "/cellos-ebpf-test-" + std::to_string(::getpid()) + "-" +
          std::to_string(n++);
  check(::mkdir(path_.c_str(), 0755) == 0, "mkdir " + path_);
  fd_ = base::Fd(::open(path_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  check(fd_.valid(), "open " + path_);
}

TestCgroup::~TestCgroup() {
  // cgroup.kill (5.14+) ends any member a failed test left behind; rmdir needs it empty.
  int k = ::openat(fd_.get(), "cgroup.kill", O_WRONLY | O_CLOEXEC);
  if (k >= 0) {
    (void)!::write(k, "1", 1);
    ::close(k);
  }
  fd_.reset();
  for (int i = 0; i < 200 && ::rmdir(path_.c_str()) != 0 && errno == EBUSY; i++)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
}

TestNetns::TestNetns() {
  home_ = base::Fd(::open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC));
  check(home_.valid(), "open home netns");
  check(::unshare(CLONE_NEWNET) == 0, "unshare(CLONE_NEWNET)");
  ns_ = base::Fd(::open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC));
  const int lo = netns::bring_up_loopback();
  check(::setns(home_.get(), CLONE_NEWNET) == 0, "setns home");
  check(ns_.valid(), "open test netns");
  errno = lo;
  check(lo == 0, "lo up");
}

void TestNetns::inside(const std::function<void()>& f) const {
  check(::setns(ns_.get(), CLONE_NEWNET) == 0, "setns test netns");
  try {
    f();
  } catch (...) {
    (void)::setns(home_.get(), CLONE_NEWNET);
    throw;
  }
  check(::setns(home_.get(), CLONE_NEWNET) == 0, "setns home");
}

pid_t spawn_in_cell(const TestCgroup& cg, const TestNetns& ns, const std::function<int()>& body) {
  const std::string procs = cg.path() + "/cgroup.procs";
  pid_t pid = ::fork();
  check(pid >= 0, "fork");
  if (pid == 0) {
    ::alarm(15);  // a hung child must not hang the test
    if (::setns(ns.fd(), CLONE_NEWNET) != 0) ::_exit(101);
    int p = ::open(procs.c_str(), O_WRONLY | O_CLOEXEC);
    // "0" moves the writer: the child is in the cell before it makes any socket (a socket
    // belongs to the cgroup of the task that created it).
    if (p < 0 || ::write(p, "0", 1) != 1) ::_exit(102);
    ::close(p);
    int rc = 103;
    try {
      rc = body();
    } catch (...) {
    }
    ::_exit(rc);
  }
  return pid;
}

int wait_child(pid_t pid, int timeout_s) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(timeout_s);
  int status = 0;
  for (;;) {
    pid_t r = ::waitpid(pid, &status, WNOHANG);
    if (r == pid) break;
    if (r < 0) return -1;
    if (std::chrono::steady_clock::now() > deadline) {
      ::kill(pid, SIGKILL);
      ::waitpid(pid, &status, 0);
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

PacketCapture::PacketCapture(const TestNetns& ns) {
  ns.inside([&] {
    // SOCK_DGRAM: the link-layer header is removed, the data starts at the IP header.
    fd_ = base::Fd(::socket(AF_PACKET, SOCK_DGRAM | SOCK_CLOEXEC, htons(ETH_P_ALL)));
    check(fd_.valid(), "socket(AF_PACKET)");
    int big = 4 << 20;
    (void)::setsockopt(fd_.get(), SOL_SOCKET, SO_RCVBUFFORCE, &big, sizeof big);
    sockaddr_ll a{};
    a.sll_family = AF_PACKET;
    a.sll_protocol = htons(ETH_P_ALL);
    a.sll_ifindex = 1;  // lo
    check(::bind(fd_.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) == 0, "bind AF_PACKET lo");
  });
}

std::vector<Captured> PacketCapture::take() {
  std::vector<Captured> out;
  unsigned char buf[70000];
  for (;;) {
    sockaddr_ll from{};
    socklen_t len = sizeof from;
    ssize_t n = ::recvfrom(fd_.get(), buf, sizeof buf, MSG_DONTWAIT,
                           reinterpret_cast<sockaddr*>(&from), &len);
    if (n < 0) break;
    // A loopback packet shows up twice, leaving (OUTGOING) and arriving (HOST): keep one.
    if (from.sll_pkttype != PACKET_OUTGOING || from.sll_protocol != htons(ETH_P_IP)) continue;
    if (n < static_cast<ssize_t>(sizeof(iphdr))) continue;
    iphdr ip;
    std::memcpy(&ip, buf, sizeof ip);
    Captured c;
    c.l4proto = ip.protocol;
    c.saddr = ip.saddr;
    c.daddr = ip.daddr;
    c.length = ntohs(ip.tot_len);
    const size_t l4 = ip.ihl * 4u;
    if (static_cast<size_t>(n) >= l4 + 4) {
      c.sport = static_cast<uint16_t>(buf[l4] << 8 | buf[l4 + 1]);
      c.dport = static_cast<uint16_t>(buf[l4 + 2] << 8 | buf[l4 + 3]);
    }
    out.push_back(c);
  }
  return out;
}

}  // namespace cellos::test
