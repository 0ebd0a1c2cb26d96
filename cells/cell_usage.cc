// The cell's cgroup counters at its end, read through the host's IoPort (the reactor's ring:
// three linked SQEs per file, no syscall of the reactor thread's own; base/io.h).
#include "cells/cell.h"

namespace cellos::cells {

bool Cell::read_usage() {
  if (usage_ || !leaf_) return true;
  if (usage_pending_ > 0) return false;
  const auto files = leaf_->usage_files();
  // Held at one while the reads are queued: a port that answers at once (no ring) must not
  // see the count reach zero before the last read is asked for.
  usage_pending_ = 1;
  for (size_t i = 0; i < files.size(); ++i) {
    if (files[i].empty()) continue;
    ++usage_pending_;
    host_.io->read_small_file(files[i], 4096, [this, i](base::Result<std::string> r) {
      if (r) usage_texts_[i] = std::move(*r);
      if (--usage_pending_ > 0) return;
      usage_ = leaf_->parse_usage(usage_texts_);
      maybe_finish();
    });
  }
  if (--usage_pending_ > 0) return false;
  usage_ = leaf_->parse_usage(usage_texts_);
  return true;
}

}  // namespace cellos::cells
