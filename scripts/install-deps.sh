#!/usr/bin/env bash
# Installs what cellos-reactor needs to build, test and benchmark on Debian 12 (run as root).
# The one list of packages: README's commands and .ci/run both call this.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
packages=(
  build-essential cmake pkg-config git
  nats-server libnats-dev   # fleets on NATS JetStream: the companion links libnats, tests run a server
  liburing-dev libseccomp-dev libbpf-dev libnftnl-dev libmnl-dev
  libc-ares-dev   # hostname lookups on the ring (netns/resolver.h)
  libldns-dev     # the DNS wire format of the cells' DNS proxy (netns/dns_message.h)
  clang llvm bpftool libelf-dev zlib1g-dev  # the eBPF probes: clang -target bpf, llvm-strip,
                                            # bpftool skeletons; libbpf.a needs libelf.a, libz.a
  libclang-rt-14-dev   # libFuzzer and the sanitizer runtimes for clang (scripts/fuzz.sh)
  capnproto libcapnp-dev libssl-dev
  libcurl4-openssl-dev   # artifact export over HTTP(S): the export helper links libcurl
  libtomlplusplus-dev libcli11-dev nlohmann-json3-dev libfmt-dev
  catch2
  bubblewrap   # the peer the spawn benchmark compares against
  nftables     # `nft`, the peer the nft benchmark compares against (the reactor never runs it)
  dnsmasq-base # a real DNS server on loopback for the resolver tests
  gnuplot-nox  # the benchmark figures (PNG and SVG): bench-flows and bench-report
  python3      # bench/report.py, the bench-report target's driver
  nodejs       # the CloudEvents interop test runs the official JavaScript SDK
  runsc        # gVisor: the [cells] backend = "gvisor" cells (cells/gvisor_backend.h)
)
# npm: Debian's package, unless the nodejs installed already brings its own (NodeSource's does,
# and Debian's npm would conflict with it).
command -v npm >/dev/null 2>&1 || packages+=(npm)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# The official CloudEvents JavaScript SDK, at a fixed prefix the interop test looks in
# (tests/integration/event_log_test.cc). Without network this fails and the test reports
# SKIPPED with the reason; it never passes without the SDK.
sdk_prefix=/opt/cellos-test/node
if [[ ! -f $sdk_prefix/node_modules/cloudevents/package.json ]]; then
  mkdir -p "$sdk_prefix"
  npm install --prefix "$sdk_prefix" --no-audit --no-fund --loglevel=error cloudevents@8.0.3 >/dev/null ||
    echo "install-deps: npm install cloudevents failed; the CloudEvents interop test will be skipped" >&2
fi

# jose, a widely used JWT library, at the same prefix: the workload identity interop test
# (tests/integration/identity_test.cc) verifies real cells' tokens with it, and skips with the
# reason when it is absent.
if [[ ! -f $sdk_prefix/node_modules/jose/package.json ]]; then
  mkdir -p "$sdk_prefix"
  npm install --prefix "$sdk_prefix" --no-audit --no-fund --loglevel=error jose@5.9.6 >/dev/null ||
    echo "install-deps: npm install jose failed; the identity interop test will be skipped" >&2
fi
