#include "cells/nested_policy.h"

#include <algorithm>

#include "cells/config.h"
#include "cells/spec.h"

namespace cellos::cells {

base::Result<void> check_nested_policy(const Config& c) {
  const NestedPolicy& n = c.policy.nested;
  const auto& allowed = c.policy.allowed_backends;
  const bool listed = std::find(allowed.begin(), allowed.end(), "nested") != allowed.end();
  if (listed && n.max_depth == 0)
    return base::value_error("policy.allowed_backends",
                             "\"nested\" needs policy.nested.max_depth >= 1 (it is 0: no nesting "
                             "left on this reactor)");
  if (!listed) return base::ok();
  if (nested_block_count(n) < n.max_cells)
    return base::value_error("policy.nested.uid_range",
                             std::to_string(n.uid_first) + "-" + std::to_string(n.uid_last) +
                                 " holds " + std::to_string(nested_block_count(n)) +
                                 " blocks of policy.nested.uid_block_size " +
                                 std::to_string(n.uid_block_size) + ", fewer than max_cells " +
                                 std::to_string(n.max_cells));
  if (n.uid_first <= c.policy.uid_last && c.policy.uid_first <= n.uid_last)
    return base::value_error("policy.nested.uid_range",
                             "overlaps policy.uid_range: a nested cell's uids must be its own");
  return base::ok();
}

base::Result<void> check_nested_spec(const Spec& spec, const Config& c) {
  if (spec.run.backend.value_or(c.cells.backend) != "nested") return base::ok();
  if (c.policy.nested.max_depth == 0)
    return base::value_error("spec.run.backend",
                             "\"nested\": this reactor has no nesting depth left "
                             "(policy.nested.max_depth is 0)");
  // What the nested backend does not serve yet, refused rather than silently dropped.
  const char* field = spec.dns_authority ? "spec.authority.dnsAuthority"
                      : spec.runtime_delivery()         ? "spec.run.secretDelivery"
                      : !spec.inputs.empty()            ? "spec.inputs"
                      : !spec.export_artifacts.empty()  ? "spec.export"
                      : spec.identity                   ? "spec.identity"
                                                        : nullptr;
  if (field)
    return base::value_error(field,
                             std::string("not supported by the nested backend yet") +
                                 (field == std::string("spec.authority.dnsAuthority")
                                      ? " (the parent's DNS proxy listens in the namespace in "
                                        "front of the nested cell's, which it cannot reach)"
                                      : ""));
  return base::ok();
}

}  // namespace cellos::cells
