#include "cells/admission.h"


namespace cellos::cells {

Admission admit(std::string_view text, const AdmissionOptions& o) {
  Admission a;
  auto spec = parse_spec(text);
  if (!spec) {
    a.refusal = std::move(spec).error();
    return a;
  }
  a.cell_id = spec->id;
  if (auto r = check_policy(*spec, o.config->policy); !r) {
    a.refusal = std::move(r).error();
    return a;
  }
  // The token is signed at the cell's start: a host without the key refuses the spec now, not
  // as a setup failure later.
  if (spec->identity && o.config->identity.signing_key.empty()) {
    a.refusal = base::value_error("spec.identity",
                                  "this host has no identity signing key (fleet.toml [identity] "
                                  "signing_key; `cellos-reactor keygen --name identity` makes one)");
    return a;
  }
  if (o.id_taken) {
    if (auto why = o.id_taken(spec->id)) {
      a.refusal = base::value_error("spec.id", "cell " + spec->id + " " + *why);
      return a;
    }
  }
  a.spec = std::move(*spec);
  return a;
}

}  // namespace cellos::cells
