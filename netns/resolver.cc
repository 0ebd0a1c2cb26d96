#include "netns/resolver.h"

#include <arpa/inet.h>
#include <ares.h>
#include <netdb.h>
#include <poll.h>

#include <algorithm>
#include <deque>
#include <mutex>
#include <unordered_map>

#include "base/completion.h"

namespace cellos::netns {
namespace {

// ares_library_init is process-wide and not thread-safe: once, before the first channel.
int library_init() {
  static std::once_flag once;
  static int rc = ARES_SUCCESS;
  std::call_once(once, [] { rc = ares_library_init(ARES_LIB_INIT_ALL); });
  return rc;
}

// "ip", "ip:port", "[v6]:port" -> c-ares's "ip:port,[v6]:port" list (it takes the same forms).
std::string server_csv(const std::vector<std::string>& servers) {
  std::string out;
  for (const auto& s : servers) out += (out.empty() ? "" : ",") + s;
  return out;
}

}  // namespace

struct Resolver::Impl {
  struct Poller final : base::Completion {
    Impl* impl = nullptr;
    int fd = -1;
    short want = 0;      // what c-ares wants now
    short polling = 0;   // what the poll in flight asks for
    bool busy = false, retired = false;
    void arm() {
      busy = true;
      polling = want;
      impl->io.poll(fd, want, *this);
    }
    void complete(int res) override;
  };
  struct Ready {
    Done done;
    base::Result<std::vector<std::string>> result;
  };
  struct Query {
    Impl* impl;
    Done done;
    std::string name;
  };

  explicit Impl(base::IoPort& port) : io(port), timer(&port), flush(&port) {}
  ~Impl() {
    // Pending queries end now, with ARES_EDESTRUCTION (into ready), and are told so below.
    // Nothing touches the ring from here: its owner may have closed it already.
    closing = true;
    if (ch) ares_destroy(ch);
    for (auto& r : ready) r.done(std::move(r.result));
  }

  void sock_state(int fd, bool readable, bool writable) {
    if (closing) return;
    auto it = pollers.find(fd);
    if (!readable && !writable) {
      if (it == pollers.end()) return;
      std::unique_ptr<Poller> p = std::move(it->second);
      pollers.erase(it);
      if (!p->busy) return;
      // Its poll still points at it: keep it until that completes.
      p->retired = true;
      io.cancel(*p);
      retired.push_back(std::move(p));
      return;
    }
    if (it == pollers.end()) {
      auto p = std::make_unique<Poller>();
      p->impl = this;
      p->fd = fd;
      it = pollers.emplace(fd, std::move(p)).first;
    }
    Poller& p = *it->second;
    p.want = static_cast<short>((readable ? POLLIN : 0) | (writable ? POLLOUT : 0));
    if (!p.busy) p.arm();
    else if (p.want & ~p.polling) io.cancel(p);  // re-armed with the new mask on completion
  }

  void on_poll(Poller& p, int res) {
    if (res > 0 && !p.retired) {
      const bool rd = res & (POLLIN | POLLERR | POLLHUP), wr = res & (POLLOUT | POLLERR);
      ares_process_fd(ch, rd ? p.fd : ARES_SOCKET_BAD, wr ? p.fd : ARES_SOCKET_BAD);
    }
    if (p.retired) {
      retired.erase(std::remove_if(retired.begin(), retired.end(),
                                   [&](const auto& r) { return r.get() == &p; }),
                    retired.end());
    } else if (auto it = pollers.find(p.fd); it != pollers.end() && it->second.get() == &p) {
      p.arm();
    }
    arm_timer();
  }

  // One ring timeout for c-ares's next deadline (a retransmission or a query's end).
  void arm_timer() {
    if (closing) return;
    timeval tv{};
    if (!ares_timeout(ch, nullptr, &tv)) return;
    auto after = std::chrono::seconds(tv.tv_sec) + std::chrono::microseconds(tv.tv_usec);
    auto due = std::chrono::steady_clock::now() + after;
    if (timer.armed()) {
      if (due + std::chrono::milliseconds(1) >= timer_due) return;
      timer.cancel();  // too late for the new deadline: re-armed from its completion
      return;
    }
    timer_due = due;
    timer.start(after, [this](int res) {
      if (res == -ETIME) ares_process_fd(ch, ARES_SOCKET_BAD, ARES_SOCKET_BAD);
      arm_timer();
    });
  }

  void deliver(Done done, base::Result<std::vector<std::string>> result) {
    ready.push_back({std::move(done), std::move(result)});
    if (!closing && !flush.armed())
      flush.start(std::chrono::nanoseconds(0), [this](int) {
        auto batch = std::move(ready);
        ready.clear();
        for (auto& r : batch) r.done(std::move(r.result));
      });
  }

  static void on_result(void* arg, int status, int, ares_addrinfo* ai) {
    std::unique_ptr<Query> q(static_cast<Query*>(arg));
    Impl* self = q->impl;
    --self->pending;
    if (status != ARES_SUCCESS) {
      if (ai) ares_freeaddrinfo(ai);
      const int err = status == ARES_ETIMEOUT      ? ETIMEDOUT
                      : status == ARES_EDESTRUCTION ? ECANCELED
                      : status == ARES_ENOMEM       ? ENOMEM
                                                    : 0;
      return self->deliver(std::move(q->done),
                           base::Error{err, "resolve", "\"" + q->name + "\"", ares_strerror(status), {}});
    }
    std::vector<std::string> out;
    for (ares_addrinfo_node* n = ai ? ai->nodes : nullptr; n; n = n->ai_next) {
      char buf[INET6_ADDRSTRLEN] = {};
      if (n->ai_family == AF_INET)
        inet_ntop(AF_INET, &reinterpret_cast<sockaddr_in*>(n->ai_addr)->sin_addr, buf, sizeof buf);
      else if (n->ai_family == AF_INET6)
        inet_ntop(AF_INET6, &reinterpret_cast<sockaddr_in6*>(n->ai_addr)->sin6_addr, buf, sizeof buf);
      else
        continue;
      if (std::find(out.begin(), out.end(), buf) == out.end()) out.emplace_back(buf);
    }
    if (ai) ares_freeaddrinfo(ai);
    self->deliver(std::move(q->done), std::move(out));
  }

  base::IoPort& io;
  ares_channel ch = nullptr;
  std::unordered_map<int, std::unique_ptr<Poller>> pollers;  // by fd, as c-ares uses them
  std::vector<std::unique_ptr<Poller>> retired;              // closed, poll not yet completed
  base::Timer timer, flush;
  std::chrono::steady_clock::time_point timer_due{};
  std::deque<Ready> ready;
  size_t pending = 0;
  bool closing = false;
};

void Resolver::Impl::Poller::complete(int res) {
  busy = false;
  impl->on_poll(*this, res);
}

Resolver::Resolver(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Resolver::~Resolver() = default;

base::Result<std::unique_ptr<Resolver>> Resolver::create(base::IoPort& io, ResolverOptions o) {
  if (int rc = library_init(); rc != ARES_SUCCESS)
    return base::Error{0, "ares_library_init", "", ares_strerror(rc), {}};
  auto impl = std::make_unique<Impl>(io);
  ares_options opts{};
  int mask = ARES_OPT_SOCK_STATE_CB | ARES_OPT_TIMEOUTMS | ARES_OPT_TRIES;
  opts.sock_state_cb = [](void* data, ares_socket_t fd, int readable, int writable) {
    static_cast<Impl*>(data)->sock_state(fd, readable != 0, writable != 0);
  };
  opts.sock_state_cb_data = impl.get();
  opts.timeout = static_cast<int>(o.timeout.count());
  opts.tries = o.tries;
  if (int rc = ares_init_options(&impl->ch, &opts, mask); rc != ARES_SUCCESS)
    return base::Error{0, "ares_init_options", "", ares_strerror(rc), {}};
  if (!o.servers.empty()) {
    const std::string csv = server_csv(o.servers);
    if (int rc = ares_set_servers_ports_csv(impl->ch, csv.c_str()); rc != ARES_SUCCESS)
      return base::Error{0, "network.resolvers", "\"" + csv + "\"", ares_strerror(rc), {}};
  }
  return std::unique_ptr<Resolver>(new Resolver(std::move(impl)));
}

void Resolver::resolve(const std::string& name, Done done) {
  auto* q = new Impl::Query{impl_.get(), std::move(done), name};
  ++impl_->pending;
  ares_addrinfo_hints hints{};
  hints.ai_family = AF_UNSPEC;
  // May call on_result before it returns (an /etc/hosts name): on_result only queues.
  ares_getaddrinfo(impl_->ch, name.c_str(), nullptr, &hints, &Impl::on_result, q);
  impl_->arm_timer();
}

size_t Resolver::pending() const { return impl_->pending; }

}  // namespace cellos::netns
