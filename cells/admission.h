// Admission: the one path from a spec's text to a spec a cell may run, shared by every intake
// (`run`, `submit`, the daemon's spool and its NATS work queue). Text in; an admitted spec, or
// one refusal naming the field and the reason, out.
//
//   parse (structure, types, ranges) ─► fleet policy ─► id free here
//
// Hostnames in egress rules are looked up afterwards, on the ring (egress.h resolve_egress), by
// whoever runs the spec: `submit` leaves them to the daemon, whose resolver is the one that
// counts.
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <string_view>

#include "base/result.h"
#include "cells/config.h"
#include "cells/spec.h"

namespace cellos::cells {

struct AdmissionOptions {
  const Config* config = nullptr;
  // Whether an id is taken here (running or waiting): the reason, or nullopt when it is free.
  std::function<std::optional<std::string>(const std::string& id)> id_taken;
};

struct Admission {
  std::optional<Spec> spec;            // set when admitted
  std::optional<std::string> cell_id;  // the spec's id when it parsed far enough to have one
  base::Error refusal;                 // why not, when not admitted

  bool admitted() const { return spec.has_value(); }
};

Admission admit(std::string_view text, const AdmissionOptions& options);

}  // namespace cellos::cells
