#include "reactor/host.h"

#include "cells/rootless.h"
#include "reactor/event_log_config.h"

namespace cellos::reactor {

base::Result<std::unique_ptr<Host>> Host::create(HostOptions options) {
  std::unique_ptr<Host> h(new Host(std::move(options)));
  const cells::Config& config = *h->opts_.config;
  RingOptions ro;
  ro.entries = h->opts_.ring_entries;
  auto ring = Ring::create(ro);
  if (!ring) return std::move(ring).error();
  h->ring_ = std::move(*ring);
  auto sig = SignalWatcher::create(*h->ring_, [p = h.get()](int signo) { p->signalled(signo); });
  if (!sig) return std::move(sig).error();
  h->signals_ = std::move(*sig);
  auto events = open_event_log(config, *h->ring_, h->opts_.events_path);
  if (!events) return std::move(events).error();
  h->events_ = std::move(*events);

  if (auto r = cells::check_rootless_host(config); !r) return std::move(r).error();
  auto roots = cells::detect_cgroup_roots();
  if (!roots) return std::move(roots).error();
  auto tree = cells::CgroupTree::prepare(std::move(*roots), h->opts_.cgroups.parent,
                                         h->opts_.cgroups.delegated);
  if (!tree) return std::move(tree).error();
  h->tree_.emplace(std::move(*tree));
  // Each backend checks it can run cells here before any cell is admitted: the host default
  // and every other one a spec may choose (policy.allowed_backends).
  auto backend = cells::make_backend(config.cells.backend, config);
  if (!backend) return std::move(backend).error().context("cells.backend");
  h->backend_ = std::move(*backend);
  for (const auto& name : config.policy.allowed_backends) {
    if (name == config.cells.backend) continue;
    auto other = cells::make_backend(name, config);
    if (!other) return std::move(other).error().context("policy.allowed_backends: " + name);
    h->other_backends_.push_back(std::move(*other));
  }

  if (h->opts_.uplink && config.network.uplink == "nat") {
    // Made at start (after removing what a crashed predecessor left), removed at exit.
    auto u = netns::HostUplink::create({config.host.id, config.host.state_dir,
                                         config.network.subnet});
    if (!u) return std::move(u).error().context("network.uplink");
    h->uplink_ = std::move(*u);
  }
  h->flows_ = flows::FlowMonitor::create({&config, h->ring_.get(), h->events_.get()});
  netns::ResolverOptions dns;
  dns.servers = config.network.resolvers;
  dns.timeout = std::chrono::milliseconds(config.network.resolve_timeout_ms);
  auto resolver = netns::Resolver::create(*h->ring_, std::move(dns));
  if (!resolver) return std::move(resolver).error();
  h->resolver_ = std::move(*resolver);
  // Loaded once: a key that cannot be read fails the start, not the first cell that asks.
  if (!config.identity.signing_key.empty()) {
    auto issuer = cells::IdentityIssuer::load(config);
    if (!issuer) return std::move(issuer).error();
    h->identity_ = std::move(*issuer);
  }
  return h;
}

Host::~Host() {
  // The ring first: it cancels every operation without dispatching a completion, so none can
  // reach the services below (or whatever the host's owner built on the ring) once freed.
  if (ring_) ring_->close();
  resolver_.reset();
  flows_.reset();
  uplink_.reset();
  events_.reset();
  signals_.reset();
}

cells::CellHost Host::cell_host() {
  std::vector<cells::Backend*> backends{backend_.get()};
  for (auto& b : other_backends_) backends.push_back(b.get());
  return cells::CellHost{.io = ring_.get(),
                         .config = opts_.config,
                         .events = events_.get(),
                         .cgroups = &*tree_,
                         .uplink = uplink_.get(),
                         .backend = backend_.get(),
                         .backends = std::move(backends),
                         .flows = flows_.get(),
                         .identity = identity_.get(),
                         .events_path = opts_.events_path.value_or(opts_.config->events_path()),
                         .pool = pool_,
                         .leaf_stock = leaf_stock_};
}

void Host::signalled(int signo) {
  stop_signal_ = signo;
  if (on_signal_) on_signal_(signo);
}

base::Result<void> Host::drain_events() {
  events_->flush();
  while (!events_->drained()) {
    auto n = ring_->run_once();
    if (!n) return std::move(n).error();
  }
  return base::ok();
}

}  // namespace cellos::reactor
