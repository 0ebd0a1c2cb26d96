// The examples run as examples/README.md shows them: each command, its exit status and the line
// the table names. `run` without --config would write under /var/lib/cellos-reactor; the test
// gives it a throwaway state dir through --config with the built-in defaults otherwise.
#include <catch2/catch.hpp>

#include "tests/support/test_support.h"

using namespace cellos::test;
using Catch::Matchers::Contains;

namespace {

struct Example {
  const char* spec;
  int status;
  const char* line;
};

}  // namespace

TEST_CASE("examples: every example runs as examples/README.md shows", "[examples]") {
  const std::string readme = read_text(std::string(CELLOS_SOURCE_DIR) + "/examples/README.md");
  TempDir dir;
  const std::string config = dir.path() + "/fleet.toml";
  write_text(config, "[host]\nstate_dir = \"" + dir.path() + "/state\"\nid = \"examples-" +
                         std::to_string(::getpid()) + "\"\n");
  const Example examples[] = {
      {"01-hello.json", 0, "my shell is pid 2 in its own pid namespace"},
      {"02-readonly-host.json", 0, "host is read-only: writing /etc/motd failed"},
      {"03-no-network.json", 0, "interfaces: lo"},
      {"04-memory-limit.json", 137, "filling 256 MiB"},
      {"05-timeout.json", 124, "left a daemon behind"},
  };
  for (const Example& e : examples) {
    INFO(e.spec);
    // The README names the command and the status this test checks.
    CHECK_THAT(readme, Contains(std::string("build/cellos-reactor run examples/") + e.spec));
    CHECK_THAT(readme, Contains(std::string(e.spec) + "` | `build/cellos-reactor run examples/" +
                                e.spec + "` | " + std::to_string(e.status) + " |"));
    auto r = run_process({CELLOS_REACTOR_BIN, "run",
                          std::string(CELLOS_SOURCE_DIR) + "/examples/" + e.spec, "--config",
                          config});
    CHECK(r.status == e.status);
    CHECK_THAT(r.out, Contains(e.line));
  }
  for (const char* h : {"unified", "memory", "pids", "cpu"})
    ::rmdir((std::string("/sys/fs/cgroup/") + h + "/cellos/examples-" + std::to_string(::getpid()))
                .c_str());
}

TEST_CASE("examples: the demo runs every spec, the secret reaches only its command, and the "
          "log verifies",
          "[examples]") {
  const std::string demo = std::string(CELLOS_SOURCE_DIR) + "/examples/demo.sh";
  ::setenv("CELLOS_REACTOR", CELLOS_REACTOR_BIN, 1);
  auto r = run_process({"/bin/bash", demo}, "", 120);
  INFO(r.out << r.err);
  CHECK(r.status == 0);
  CHECK_THAT(r.out, Contains("DEMO_TOKEN is set (17 characters)"));
  CHECK_THAT(r.out, Contains("the secret's value appears in no event and no log"));
  CHECK_THAT(r.out, Contains("daemon exit status: 0"));
  CHECK_THAT(r.out + r.err, Contains("verified"));
}
