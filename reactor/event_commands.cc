#include "reactor/event_commands.h"

namespace cellos::reactor {

void add_event_commands(CLI::App&, std::optional<int>&) {}

}  // namespace cellos::reactor
