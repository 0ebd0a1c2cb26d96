#include "cells/seccomp.h"

namespace cellos::cells {
namespace {

// Generated at build time by seccomp_gen (see cells/CMakeLists.txt): defines kDefaultFilter.
#include "default_seccomp.inc"

}  // namespace

const base::Result<SeccompProgram>& default_seccomp_program() {
  static const base::Result<SeccompProgram> program =
      SeccompProgram(std::vector<sock_filter>(std::begin(kDefaultFilter), std::end(kDefaultFilter)));
  return program;
}

const base::Result<SeccompProgram>& nested_seccomp_program() {
  static const base::Result<SeccompProgram> program =
      SeccompProgram(std::vector<sock_filter>(std::begin(kNestedFilter), std::end(kNestedFilter)));
  return program;
}

}  // namespace cellos::cells
