#!/bin/sh
# Fuzz the parsers of untrusted input for longer than CTest's corpus run.
#
#   scripts/fuzz.sh [TARGET] [SECONDS]      TARGET: spec | config | log | nflog (default: all)
#
# Builds the libFuzzer targets with clang, ASan and UBSan in build-fuzz/ (a build directory of
# its own: CELLOS_FUZZ instruments every library), then runs each target for SECONDS (default
# 300) on a scratch copy of its checked-in corpus (tests/fuzz/corpus/TARGET), with -max_len at
# the input caps (1 MiB specs and fleet.toml; 64 KiB log and nflog inputs keep it fast).
# New inputs land in build-fuzz/fuzz/corpus-TARGET; crashes as build-fuzz/fuzz/crash-*. A new
# input worth keeping (it found a bug, or covers a new branch) is copied into
# tests/fuzz/corpus/TARGET by hand, small: the checked-in corpus is replayed by every CI run
# (`ctest -R fuzz`, GCC builds replay it without libFuzzer).
#
# Reproduce a crash: build-fuzz/fuzz/TARGET_fuzz build-fuzz/fuzz/crash-<hash>
# or without clang: build/fuzz/TARGET_replay build-fuzz/fuzz/crash-<hash>
#
# Found by these targets so far (each input kept in the corpus, each fixed): toml++ 3.3.0
# reaching __builtin_unreachable on non-ASCII input (fleet.toml is now held to printable ASCII);
# an NFLOG message length of 2^32-1 that stopped the datagram walk advancing; a kernel
# timestamp overflowing the clock; attributes read past an unaligned last message.
set -eu
cd "$(dirname "$0")/.."
targets=${1:-"spec config log nflog"}
seconds=${2:-300}
cmake -S . -B build-fuzz -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ \
  -DCELLOS_FUZZ=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DCMAKE_CXX_COMPILER_LAUNCHER=ccache -DCMAKE_C_COMPILER_LAUNCHER=ccache
for t in $targets; do
  cmake --build build-fuzz -j2 --target "${t}_fuzz"
done
for t in $targets; do
  case $t in spec|config) max_len=1048576 ;; *) max_len=65536 ;; esac
  work=build-fuzz/fuzz/corpus-$t
  mkdir -p "$work"
  cp -n tests/fuzz/corpus/"$t"/* "$work"/ 2>/dev/null || true
  echo "== fuzzing $t for ${seconds}s"
  (cd build-fuzz/fuzz && ./"${t}_fuzz" -max_total_time="$seconds" -max_len="$max_len" \
     -timeout=10 -rss_limit_mb=4096 "corpus-$t")
done
