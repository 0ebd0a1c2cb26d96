#include "cells/admission.h"

#include "cells/cell_export.h"
#include "cells/inputs.h"
#include "cells/nested_policy.h"
#include "cells/program_path.h"


namespace cellos::cells {

Admission admit(std::string_view text, const AdmissionOptions& o) {
  Admission a;
  auto spec = parse_spec(text);
  if (!spec) {
    a.refusal = std::move(spec).error();
    return a;
  }
  a.cell_id = spec->id;
  // A bare argv[0]: the program the cell's PATH names in its view, checked by policy below.
  if (is_bare_program(spec->run.argv[0]))
    spec->run.program = resolve_program(*spec, *o.config).value_or("");
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
  // What the gVisor backend cannot give a cell yet: its sandbox does not bind the broker's
  // socket, the inputs, the held workspace the export reads, or the DNS proxy's resolv.conf.
  if (spec->run.backend.value_or(o.config->cells.backend) == "gvisor") {
    const char* field = spec->runtime_delivery()       ? "spec.run.secretDelivery"
                        : !spec->inputs.empty()          ? "spec.inputs"
                        : !spec->export_artifacts.empty() ? "spec.export"
                        : spec->dns_authority             ? "spec.authority.dnsAuthority"
                                                          : nullptr;
    if (field) {
      a.refusal = base::value_error(field, "not supported by the gvisor backend (use the native "
                                           "backend, spec.run.backend \"native\")");
      return a;
    }
  }
  if (auto r = check_nested_spec(*spec, *o.config); !r) {
    a.refusal = std::move(r).error();
    return a;
  }
  if (auto r = check_export(*spec, *o.config); !r) {
    a.refusal = std::move(r).error();
    return a;
  }
  if (auto r = check_inputs(*spec, *o.config); !r) {
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
