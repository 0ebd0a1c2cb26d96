// The one translation unit that holds Catch2's main (catch.hpp is slow to compile).
#define CATCH_CONFIG_MAIN
#include <catch2/catch.hpp>
