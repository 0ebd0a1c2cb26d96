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
