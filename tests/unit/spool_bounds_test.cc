// The spool under hostile input: rejections write one bounded line, an entry over the spec cap
// is not kept, and rejected/ never grows past its bound (oldest removed first).
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <filesystem>
#include <string>

#include "base/input_limits.h"
#include "base/text.h"
#include "reactor/spool.h"
#include "tests/support/test_support.h"

namespace cellos::reactor {
namespace {

using test::read_text;
using test::TempDir;
using test::write_text;
namespace fs = std::filesystem;

size_t count(const std::string& dir, bool errors) {
  size_t n = 0;
  for (const auto& e : fs::directory_iterator(dir))
    if (e.path().filename().string().ends_with(".error") == errors) ++n;
  return n;
}

TEST_CASE("spool: a rejection's .error is one line of bounded length", "[spool][limits]") {
  TempDir t;
  StateDirs dirs(t.path());
  REQUIRE(dirs.make().ok());
  write_text(dirs.spool + "/a.json", "{}");
  // 1.2 MB of reason (a message quoting a hostile spec): before, written whole.
  std::string reason = "spec.x: " + std::string(1200000, 'r') + "\nsecond line";
  REQUIRE(move_to_rejected(dirs, "a.json", reason).ok());
  std::string text = read_text(dirs.rejected + "/a.json.error");
  CHECK(text.size() <= base::kMaxMessageBytes + 4);
  CHECK(text.find('\n') == text.size() - 1);
  CHECK(fs::exists(dirs.rejected + "/a.json"));
}

TEST_CASE("spool: an entry over the spec cap is refused unread and not kept", "[spool][limits]") {
  TempDir t;
  StateDirs dirs(t.path());
  REQUIRE(dirs.make().ok());
  write_text(dirs.spool + "/big.json", std::string(base::kMaxSpecBytes + 1, ' '));
  auto r = read_spool_entry(dirs, "big.json");
  REQUIRE_FALSE(r.ok());
  CHECK_THAT(r.error().message(), Catch::Contains("over the 1 MiB a spec may have"));
  REQUIRE(move_to_rejected(dirs, "big.json", r.error().message()).ok());
  CHECK_FALSE(fs::exists(dirs.spool + "/big.json"));
  CHECK_FALSE(fs::exists(dirs.rejected + "/big.json"));
  CHECK(fs::exists(dirs.rejected + "/big.json.error"));
}

TEST_CASE("spool: rejected/ keeps at most its bound, removing the oldest first", "[spool][limits]") {
  TempDir t;
  StateDirs dirs(t.path());
  REQUIRE(dirs.make().ok());
  const size_t bound = RejectedBounds{}.max_entries;
  for (size_t i = 0; i < bound + 40; ++i) {
    char name[32];
    std::snprintf(name, sizeof name, "s%04zu.json", i);
    write_text(dirs.spool + "/" + name, "{}");
    REQUIRE(move_to_rejected(dirs, name, "bad").ok());
    // Ages by name order: s0000 the oldest.
    timespec times[2] = {{static_cast<time_t>(1000 + i), 0}, {static_cast<time_t>(1000 + i), 0}};
    for (const std::string& f : {dirs.rejected + "/" + name, dirs.rejected + "/" + name + ".error"})
      REQUIRE(::utimensat(AT_FDCWD, f.c_str(), times, 0) == 0);
    CHECK(count(dirs.rejected, false) <= bound);
  }
  const size_t kept = count(dirs.rejected, false);
  CHECK(kept >= bound - bound / 4);
  CHECK(count(dirs.rejected, true) == kept);  // a copy and its .error go together
  CHECK_FALSE(fs::exists(dirs.rejected + "/s0000.json"));
  char newest[32];
  std::snprintf(newest, sizeof newest, "s%04zu.json", bound + 39);
  CHECK(fs::exists(dirs.rejected + "/" + newest));
}

}  // namespace
}  // namespace cellos::reactor
