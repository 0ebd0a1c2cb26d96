#include "reactor/run_fast_args.h"

#include <string_view>

namespace cellos::reactor {

std::optional<RunArgs> match_run_via_daemon(int argc, const char* const* argv) {
  if (argc < 4 || std::string_view(argv[1]) != "run") return std::nullopt;
  RunArgs a;
  bool spec = false, config = false;
  for (int i = 2; i < argc; ++i) {
    const std::string_view arg(argv[i]);
    if (arg == "--via-daemon") {
      if (a.via_daemon) return std::nullopt;  // CLI11 refuses a flag given twice
      a.via_daemon = true;
    } else if (arg == "--config" || arg.starts_with("--config=")) {
      if (config) return std::nullopt;
      std::string_view value;
      if (arg == "--config") {
        if (i + 1 >= argc) return std::nullopt;
        value = argv[++i];
        // CLI11 would not take a flag-looking word as the value: leave it the odd cases.
        if (value.starts_with("-")) return std::nullopt;
      } else {
        value = arg.substr(9);
      }
      if (value.empty()) return std::nullopt;
      a.config_path = std::string(value);
      config = true;
    } else if (arg == "-" || !arg.starts_with("-")) {
      if (spec || arg.empty()) return std::nullopt;
      a.spec_path = std::string(arg);
      spec = true;
    } else {
      return std::nullopt;  // --events, --help, -h, "--", anything else: CLI11 decides
    }
  }
  if (!spec || !a.via_daemon) return std::nullopt;
  return a;
}

}  // namespace cellos::reactor
