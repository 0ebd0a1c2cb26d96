// The cell's environment: exactly the fixed PATH, run.env and the declared secrets.
//
// Secret values are read from [secrets] dir (one file per key) at admission and go only into
// the environment block handed to execve. Errors name the key and the file, never the value.
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "base/fd.h"
#include "cells/config.h"
#include "cells/spec.h"

namespace cellos::cells {

inline constexpr const char* kDefaultPath = "PATH=/usr/local/bin:/usr/bin:/bin";

// Where the broker socket is in a cell with runtime delivery (cells/secret_broker.h).
inline constexpr const char* kBrokerDirInCell = "/run/cellos";
inline constexpr const char* kBrokerSocketInCell = "/run/cellos/secrets.sock";

// "KEY=value" strings in this order: PATH (unless run.env sets its own), run.env as declared,
// then each secretRef. Fails naming the secretRef when its file is missing or unreadable.
// With runtime delivery no secret is in it: CELLOS_SECRET_BROKER names the socket instead.
base::Result<std::vector<std::string>> build_environment(const Spec& spec,
                                                         const SecretsConfig& secrets);

// Name and value of each secretRef, for the broker of a runtime-delivery cell; empty for env
// delivery. Fails like build_environment. The values stay in the reactor's memory only.
using BrokeredSecrets = std::vector<std::pair<std::string, std::string>>;
base::Result<BrokeredSecrets> read_brokered_secrets(const Spec& spec, const SecretsConfig& secrets);

}  // namespace cellos::cells
