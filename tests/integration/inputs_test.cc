// spec.inputs on real cells: two jobs whose checkouts sit side by side under one granted
// directory each see their own, read-only, and nothing of the other's; a path outside the
// grant, a `..` and a symlink are refused naming the field, running nothing.
#include <sys/stat.h>
#include <unistd.h>

#include <catch2/catch.hpp>

#include "tests/support/test_support.h"

namespace cellos::test {
namespace {

using Catch::Contains;

// A granted directory holding two checkouts, a/ and b/, writable by any uid on the host: only
// the read-only bind can stop a cell's writes.
struct Checkouts {
  TempDir root;
  std::string a, b;
  Checkouts() {
    a = root.path() + "/a";
    b = root.path() + "/b";
    for (const auto& [dir, text] : {std::pair{a, std::string("checkout A\n")}, {b, "checkout B\n"}}) {
      ::mkdir(dir.c_str(), 0777);
      ::chmod(dir.c_str(), 0777);
      write_text(dir + "/README", text);
      ::chmod((dir + "/README").c_str(), 0666);
    }
  }
  std::string grant(const std::string& glob) const {
    return "[policy.input_grants]\n\"" + root.path() + "\" = [\"" + glob + "\"]\n";
  }
};

nlohmann::json with_input(nlohmann::json spec, const std::string& host, const std::string& at) {
  spec["spec"]["inputs"].push_back({{"hostPath", host}, {"path", at}});
  return spec;
}

TEST_CASE("each cell sees its own input, read-only, and not its neighbour's", "[inputs]") {
  Checkouts co;
  Fleet fleet(co.grant("inp-*"));
  // Links inside checkout A to its neighbour: bound as they are, they resolve in the cell's
  // view, where B does not exist.
  ::symlink("../b/README", (co.a + "/sibling").c_str());
  ::symlink((co.b + "/README").c_str(), (co.a + "/absolute").c_str());
  // What the cell reports: its checkout, whether either host path exists in its view, and
  // whether a write into its checkout (or a new file in it) succeeds.
  auto probe = [&](const std::string& at) {
    return "cat " + at + "/README; "
           "for p in " + co.a + " " + co.b + " " + co.root.path() + "; do "
           "  test -e $p && echo \"visible $p\"; done; "
           "(echo x > " + at + "/README) 2>&1 | grep -q 'Read-only file system' && echo readonly; "
           "touch " + at + "/new 2>/dev/null && echo created; "
           "cat " + at + "/sibling " + at + "/absolute 2>/dev/null && echo leaked; "
           "echo done";
  };
  // A below the workspace, B at a path of the cell's own root.
  auto a = with_input(make_spec(unique_id("inp-a"), {"/bin/sh", "-c", probe("/work/src")}), co.a,
                      "/work/src");
  auto b = with_input(make_spec(unique_id("inp-b"), {"/bin/sh", "-c", probe("/src")}), co.b, "/src");
  auto ra = fleet.run(a.dump());
  INFO(ra.err);
  CHECK(ra.status == 0);
  CHECK(ra.out == "checkout A\nreadonly\ndone\n");
  auto rb = fleet.run(b.dump());
  INFO(rb.err);
  CHECK(rb.status == 0);
  CHECK(rb.out == "checkout B\nreadonly\ndone\n");
  // The host's files are as they were.
  CHECK(read_text(co.a + "/README") == "checkout A\n");
  CHECK_FALSE(path_exists(co.a + "/new"));

  // A single file binds too; the workspace stays writable around the inputs.
  auto f = with_input(make_spec(unique_id("inp-f"), {"/bin/sh", "-c",
                                "cat /work/README.txt; echo w > /work/out && echo ws-writable"}),
                      co.b + "/README", "/work/README.txt");
  auto rf = fleet.run(f.dump());
  INFO(rf.err);
  CHECK(rf.status == 0);
  CHECK(rf.out == "checkout B\nws-writable\n");
}

TEST_CASE("inputs outside policy, with .. or through a symlink are rejected", "[inputs]") {
  Checkouts co;
  Fleet fleet(co.grant("inp-*"));
  const std::string trace = fleet.dir() + "/ran";
  ::symlink(co.b.c_str(), (co.root.path() + "/link-to-b").c_str());
  ::symlink("/etc", (co.a + "/etc-link").c_str());
  struct Case {
    std::string id, host, at, field, why;
  };
  const std::vector<Case> cases = {
      {"inp-x", fleet.dir(), "/work/src", "spec.inputs[0].hostPath", "is not below a directory granted"},
      {"other", co.a, "/work/src", "spec.inputs[0].hostPath", "is not below a directory granted"},
      {"inp-x", co.root.path(), "/work/src", "spec.inputs[0].hostPath", "is not below"},
      {"inp-x", co.a + "/../b", "/work/src", "spec.inputs[0].hostPath", "normalized absolute"},
      {"inp-x", co.root.path() + "/link-to-b", "/work/src", "spec.inputs[0].hostPath",
       "a component is a symlink"},
      {"inp-x", co.a + "/etc-link/passwd", "/work/src", "spec.inputs[0].hostPath",
       "a component is a symlink"},
      {"inp-x", co.a, "/work/../etc", "spec.inputs[0].path", "normalized absolute"},
      {"inp-x", co.a, "/usr/src", "spec.inputs[0].path", "read-only host path"},
      {"inp-x", co.a, "/work", "spec.inputs[0].path", "working directory itself"},
      {"inp-x", co.a, "/proc/x", "spec.inputs[0].path", "must not be in /proc"},
      {"inp-x", co.a + "/missing", "/work/src", "spec.inputs[0].hostPath", "No such file"},
  };
  for (const auto& c : cases) {
    auto spec = with_input(make_spec(unique_id(c.id), {"/bin/sh", "-c", "touch " + trace}), c.host, c.at);
    auto r = fleet.run(spec.dump());
    INFO(c.host << " -> " << c.at << ": " << r.err);
    CHECK(r.status == 125);
    CHECK_THAT(r.err, Contains(c.field + ": "));
    CHECK_THAT(r.err, Contains(c.why));
  }
  // Two inputs at overlapping paths.
  auto spec = with_input(with_input(make_spec(unique_id("inp-x"), {"/bin/true"}), co.a, "/work/src"),
                         co.b, "/work/src/b");
  auto r = fleet.run(spec.dump());
  CHECK(r.status == 125);
  CHECK_THAT(r.err, Contains("spec.inputs[1].path: \"/work/src/b\" overlaps spec.inputs[0].path"));
  CHECK_FALSE(path_exists(trace));
}

TEST_CASE("fleet.toml refuses a granted directory every cell could see", "[inputs]") {
  Checkouts co;
  Fleet fleet("[policy.input_grants]\n\"/usr/share\" = [\"*\"]\n");
  auto r = fleet.run(make_spec(unique_id("inp"), {"/bin/true"}).dump());
  CHECK(r.status != 0);
  CHECK_THAT(r.err, Contains("policy.input_grants[\"/usr/share\"]: overlaps /usr"));
}

}  // namespace
}  // namespace cellos::test
