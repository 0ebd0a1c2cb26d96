// The Cell's part in running a nested cell (nested_backend.h): what its reactor is told of the
// cell's authority and log, and the seal of that reactor's log into this one at the cell's end.
#include <sys/stat.h>

#include "cells/cell.h"

namespace cellos::cells {

void Cell::describe_for_nested(StartRequest& req) const {
  for (const auto& rule : opts_.spec.egress_rules) {
    const bool v6 = rule.host.find(':') != std::string::npos;
    req.egress.push_back((v6 ? "[" + rule.host + "]" : rule.host) + ":" + std::to_string(rule.port) +
                         (rule.protocol ? "/" + *rule.protocol : ""));
  }
  // Only a log that is a file can hold a nested cell's seal; a nested cell beside another log
  // ("-", /dev/null) keeps its sub-log in <state_dir>/nested and its seal says it failed.
  if (const std::string log = events_path(); log != "-") {
    struct stat st{};
    const size_t slash = log.rfind('/');
    if (::stat(log.c_str(), &st) == 0 && S_ISREG(st.st_mode))
      req.log_dir = slash == std::string::npos ? "." : slash == 0 ? "/" : log.substr(0, slash);
  }
}

std::string Cell::events_path() const {
  return host_.events_path.empty() ? host_.config->events_path() : host_.events_path;
}

bool Cell::finish_nested_seal() {
  if (seal_done_) return true;
  if (seal_) return false;  // running: its end re-enters maybe_finish
  const NestedCellFiles* files = backend_cell_ ? backend_cell_->nested_files() : nullptr;
  if (!files) {
    seal_done_ = true;
    return true;
  }
  // The leaf is empty (removed just before): nothing below writes the sub-log any more.
  sinks::SublogSealJobOptions o;
  o.io = host_.io;
  o.seal.log_path = events_path();
  o.seal.sublog_path = files->event_log;
  o.seal.public_key = files->public_key_raw;
  o.seal.cell_id = opts_.spec.id;
  o.seal.nesting_path = host_.config->host.id + "/" + opts_.spec.id;
  // The helper is a cellos-reactor (`seal-sublog`): this binary, or the one the nested cells
  // run when this is not one (a bench driving the reactor in-process).
  if (!host_.config->policy.nested.reactor_binary.empty())
    o.helper = host_.config->policy.nested.reactor_binary;
  const sinks::SublogSealOptions seal = o.seal;
  o.on_done = [this](sinks::NestedSealedData d) {
    emit(std::move(d));
    seal_done_ = true;
    after(defer_, std::chrono::nanoseconds(0), nullptr);
  };
  auto job = sinks::SublogSealJob::start(std::move(o));
  if (!job) {
    emit(sinks::failed_seal(seal, "seal: " + job.error().message()));
    seal_done_ = true;
    return true;
  }
  seal_ = std::move(*job);
  return false;
}

}  // namespace cellos::cells
