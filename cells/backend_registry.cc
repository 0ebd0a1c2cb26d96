// The one list of backends. A new backend is its own files plus one line here (and its
// sources in cells/CMakeLists.txt).
#include <array>

#include "cells/backend.h"
#include "cells/gvisor_backend.h"
#include "cells/native_backend.h"
#include "cells/nested_backend.h"

namespace cellos::cells {
namespace {

struct Registered {
  std::string_view name;
  base::Result<std::unique_ptr<Backend>> (*make)(const Config&);
};

constexpr std::array kBackends{
    Registered{"native", &make_native_backend},
    Registered{"gvisor", &make_gvisor_backend},
    Registered{"nested", &make_nested_backend},
};

}  // namespace

base::Result<std::unique_ptr<Backend>> make_backend(std::string_view name, const Config& config) {
  for (const auto& b : kBackends)
    if (b.name == name) return b.make(config);
  std::string known;
  for (const auto& b : kBackends) known += (known.empty() ? "" : ", ") + std::string(b.name);
  return base::value_error("backend", "\"" + std::string(name) + "\" is not one of: " + known);
}

std::vector<std::string_view> backend_names() {
  std::vector<std::string_view> out;
  for (const auto& b : kBackends) out.push_back(b.name);
  return out;
}

}  // namespace cellos::cells
