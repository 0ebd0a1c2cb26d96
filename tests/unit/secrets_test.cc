// build_environment: a cell's environment is exactly PATH, run.env and its declared secrets, in
// that order; a secret that cannot be read safely is an error naming the secretRef, and no error
// ever carries a secret value.
#include "cells/secrets.h"

#include <sys/stat.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <string>
#include <vector>

#include "tests/support/test_support.h"

namespace cellos::cells {
namespace {

using Catch::Contains;
using Env = std::vector<std::string>;

Spec spec_with(std::vector<std::pair<std::string, std::string>> env,
               std::vector<std::string> secret_refs = {}) {
  Spec s;
  s.id = "build-42";
  s.run.argv = {"/bin/true"};
  s.run.env = std::move(env);
  s.secret_refs = std::move(secret_refs);
  return s;
}

Env env_of(const Spec& spec, const SecretsConfig& secrets = {}) {
  auto r = build_environment(spec, secrets);
  INFO((r.ok() ? std::string() : r.error().message()));
  REQUIRE(r.ok());
  return *r;
}

std::string error_of(const Spec& spec, const SecretsConfig& secrets) {
  auto r = build_environment(spec, secrets);
  return r.ok() ? std::string("<accepted>") : r.error().message();
}

// A secrets dir: one file per key.
struct SecretsDir {
  test::TempDir tmp;
  SecretsConfig config{tmp.path()};
  void put(const std::string& key, const std::string& value) const {
    test::write_text(tmp.path() + "/" + key, value);
  }
};

TEST_CASE("secrets: with no run.env the environment is the default PATH alone", "[secrets]") {
  CHECK(env_of(spec_with({})) == Env{kDefaultPath});
  CHECK(std::string(kDefaultPath) == "PATH=/usr/local/bin:/usr/bin:/bin");
}

TEST_CASE("secrets: PATH comes first, then run.env in declaration order", "[secrets]") {
  Spec s = spec_with({{"CI", "true"}, {"ZED", "z"}, {"ALPHA", "a=b"}, {"EMPTY", ""}});
  CHECK(env_of(s) == Env{kDefaultPath, "CI=true", "ZED=z", "ALPHA=a=b", "EMPTY="});
}

TEST_CASE("secrets: a PATH in run.env replaces the default, in its declared place", "[secrets]") {
  Spec s = spec_with({{"CI", "1"}, {"PATH", "/opt/tools/bin"}});
  CHECK(env_of(s) == Env{"CI=1", "PATH=/opt/tools/bin"});
}

TEST_CASE("secrets: secrets follow run.env in secretRefs order, one trailing newline stripped",
          "[secrets]") {
  SecretsDir dir;
  dir.put("NPM_TOKEN", "npm-abc123\n");
  dir.put("GH_TOKEN", "ghp_windows\r\n");
  dir.put("RAW", "no-newline");
  dir.put("MULTI", "line1\nline2\n\n");  // only the last newline goes
  dir.put("BLANK", "");
  Spec s = spec_with({{"CI", "true"}}, {"NPM_TOKEN", "GH_TOKEN", "RAW", "MULTI", "BLANK"});
  CHECK(env_of(s, dir.config) == Env{kDefaultPath, "CI=true", "NPM_TOKEN=npm-abc123",
                                     "GH_TOKEN=ghp_windows", "RAW=no-newline",
                                     "MULTI=line1\nline2\n", "BLANK="});
}

TEST_CASE("secrets: a missing secret file names its secretRef and key, and no secret value",
          "[secrets]") {
  SecretsDir dir;
  dir.put("FIRST", "s3cr3t-first-value\n");
  dir.put("THIRD", "s3cr3t-third-value\n");
  Spec s = spec_with({{"CI", "env-value-visible"}}, {"FIRST", "MISSING_KEY", "THIRD"});
  auto r = build_environment(s, dir.config);
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().err == ENOENT);
  const std::string msg = r.error().message();
  CHECK_THAT(msg, Contains("spec.authority.secretRefs[1]"));
  CHECK_THAT(msg, Contains("MISSING_KEY"));
  CHECK(msg.find('\n') == std::string::npos);
  CHECK(msg.find("s3cr3t") == std::string::npos);
}

TEST_CASE("secrets: a symlink in the secrets dir is refused, not followed", "[secrets]") {
  SecretsDir dir;
  test::TempDir elsewhere;
  test::write_text(elsewhere.path() + "/target", "s3cr3t-symlinked\n");
  REQUIRE(::symlink((elsewhere.path() + "/target").c_str(),
                    (dir.tmp.path() + "/LINKED").c_str()) == 0);
  Spec s = spec_with({}, {"LINKED"});
  auto r = build_environment(s, dir.config);
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().err == ELOOP);
  const std::string msg = r.error().message();
  CHECK_THAT(msg, Contains("spec.authority.secretRefs[0]"));
  CHECK_THAT(msg, Contains("LINKED"));
  CHECK(msg.find("s3cr3t") == std::string::npos);
}

TEST_CASE("secrets: secretRefs without a configured secrets dir is an error", "[secrets]") {
  Spec s = spec_with({}, {"NPM_TOKEN"});
  const std::string msg = error_of(s, SecretsConfig{});
  CHECK_THAT(msg, Contains("spec.authority.secretRefs[0]"));
  CHECK_THAT(msg, Contains("NPM_TOKEN"));
  CHECK_THAT(msg, Contains("no [secrets] dir"));
}

TEST_CASE("secrets: no secretRefs needs no secrets dir", "[secrets]") {
  CHECK(env_of(spec_with({{"A", "1"}}), SecretsConfig{}) == Env{kDefaultPath, "A=1"});
}

TEST_CASE("secrets: a secret containing a NUL byte is an error without the value", "[secrets]") {
  SecretsDir dir;
  dir.put("NUL_TOKEN", std::string("s3cr3t-before") + '\0' + "s3cr3t-after\n");
  Spec s = spec_with({}, {"NUL_TOKEN"});
  const std::string msg = error_of(s, dir.config);
  CHECK_THAT(msg, Contains("spec.authority.secretRefs[0]"));
  CHECK_THAT(msg, Contains("NUL_TOKEN"));
  CHECK_THAT(msg, Contains("NUL"));
  CHECK(msg.find("s3cr3t") == std::string::npos);
}

TEST_CASE("secrets: a secret that is a directory or too large is an error without a value",
          "[secrets]") {
  SecretsDir dir;
  REQUIRE(::mkdir((dir.tmp.path() + "/A_DIR").c_str(), 0700) == 0);
  std::string huge = "s3cr3t-";
  huge.resize(65 * 1024, 'x');
  dir.put("HUGE", huge);

  std::string msg = error_of(spec_with({}, {"A_DIR"}), dir.config);
  CHECK_THAT(msg, Contains("spec.authority.secretRefs[0]"));
  CHECK_THAT(msg, Contains("A_DIR"));

  msg = error_of(spec_with({}, {"HUGE"}), dir.config);
  CHECK_THAT(msg, Contains("spec.authority.secretRefs[0]"));
  CHECK_THAT(msg, Contains("HUGE"));
  CHECK(msg.find("s3cr3t") == std::string::npos);
}

}  // namespace
}  // namespace cellos::cells
