#!/usr/bin/env bash
# Installs what cellos-reactor needs to build, test and benchmark on Debian 12 (run as root).
# The one list of packages: README's commands and .ci/run both call this.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
packages=(
  build-essential cmake pkg-config git
  liburing-dev libseccomp-dev libbpf-dev libnftnl-dev libmnl-dev
  capnproto libcapnp-dev libssl-dev
  libtomlplusplus-dev libcli11-dev nlohmann-json3-dev libfmt-dev
  catch2
  bubblewrap   # the peer the spawn benchmark compares against
  nftables     # `nft`, the peer the nft benchmark compares against (the reactor never runs it)
)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
