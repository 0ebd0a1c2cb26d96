// fleet.toml's [pool] (cells/warm_pool.h): its documented defaults, its keys, one-line errors.
#include <catch2/catch.hpp>
#include <string>

#include "cells/config.h"

namespace cellos::cells {
namespace {

std::string error_of(const std::string& toml) {
  try {
    parse_config(toml, "fleet.toml");
  } catch (const ConfigError& e) {
    return e.what();
  }
  return "<accepted>";
}

TEST_CASE("[pool] is off by default, sized 2 up to 8", "[config][pool]") {
  const Config c = parse_config("", "fleet.toml");
  CHECK_FALSE(c.pool.enabled);
  CHECK(c.pool.size == 2);
  CHECK(c.pool.max_size == 8);
}

TEST_CASE("[pool] keys land in Config, and a default size follows a smaller max_size", "[config][pool]") {
  const Config c = parse_config("[pool]\nenabled = true\nsize = 3\nmax_size = 5\n", "fleet.toml");
  CHECK(c.pool.enabled);
  CHECK(c.pool.size == 3);
  CHECK(c.pool.max_size == 5);
  const Config small = parse_config("[pool]\nenabled = true\nmax_size = 1\n", "fleet.toml");
  CHECK(small.pool.size == 1);
  CHECK(small.pool.max_size == 1);
}

TEST_CASE("bad [pool] values are refused in one line naming the key", "[config][pool]") {
  CHECK_THAT(error_of("[pool]\nsize = 5\nmax_size = 4\n"),
             Catch::Contains("fleet.toml: pool.size: must be <= pool.max_size"));
  CHECK_THAT(error_of("[pool]\nmax_size = 2000\n"), Catch::Contains("pool.max_size"));
  CHECK_THAT(error_of("[pool]\nsize = -1\n"), Catch::Contains("pool.size"));
  CHECK_THAT(error_of("[pool]\nenabled = 1\n"), Catch::Contains("pool.enabled"));
  CHECK_THAT(error_of("[pool]\nwarm = true\n"), Catch::Contains("pool"));
  CHECK(error_of("[pool]\nsize = 5\nmax_size = 4\n").find('\n') == std::string::npos);
}

}  // namespace
}  // namespace cellos::cells
