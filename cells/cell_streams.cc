// A cell's stdout and stderr pumps: read from the cell's pipe through the ring, written to
// the cell's log file (made on the first bytes) up to logs.max_bytes_per_stream; and the
// setup failure noted at the end of its stderr log.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <string>

#include "cells/cell.h"

namespace cellos::cells {

void Cell::StreamPump::arm() {
  in_flight = true;
  if (writing) {
    cell->host_.io->write(to, std::span(buf).subspan(written, len - written), *this);
  } else {
    cell->host_.io->read(from.get(), std::span(buf), *this);
  }
}

void Cell::StreamPump::complete(int res) {
  in_flight = false;
  if (!writing) {
    if (res <= 0) {  // EOF, or the pipe failed: either way nothing more will come
      eof = true;
      // Closed through the ring, in the submission the reactor makes anyway.
      cell->host_.io->close(from.release());
      cell->host_.io->close(owned.release());
      return cell->maybe_finish();
    }
    accept(static_cast<size_t>(res));
    return arm();
  }
  if (res <= 0) {
    if (res != -EINTR && res != -EAGAIN) sink_broken = true;
  } else {
    written += static_cast<size_t>(res);
  }
  if (sink_broken || written >= len) writing = false;
  arm();
}

namespace {

// A cell's log file for appending, created with its directory when either is missing (the
// daemon makes neither for a cell nobody follows: cell.h).
base::Result<base::Fd> open_log(const std::string& path) {
  auto fd = base::open_at(AT_FDCWD, path, O_WRONLY | O_CREAT | O_APPEND, 0640);
  if (fd || fd.error().err != ENOENT) return fd;
  const std::string dir = path.substr(0, path.rfind('/'));
  if (::mkdir(dir.c_str(), 0750) != 0 && errno != EEXIST)
    return base::sys_error("mkdir", "\"" + dir + "\"");
  return base::open_at(AT_FDCWD, path, O_WRONLY | O_CREAT | O_APPEND, 0640);
}

}  // namespace

bool Cell::StreamPump::open_sink() {
  auto fd = open_log(*path);
  if (!fd) {
    std::fprintf(stderr, "cellos-reactor: cell %s: %s: %s; dropping its output\n",
                 cell->id().c_str(), name, fd.error().message().c_str());
    return false;
  }
  owned = std::move(*fd);
  to = owned.get();
  return true;
}

// A chunk just read: pass on what fits under the cap; at the cap, write the cut notice once
// in its place. Output whose destination is gone, or past the cap, is drained and dropped so
// the cell never blocks on a full pipe.
void Cell::StreamPump::accept(size_t n) {
  written = 0;
  len = 0;
  if (to < 0 && !sink_broken && !(path && open_sink())) sink_broken = true;
  if (!truncated && cap != 0 && copied + n > cap) {
    size_t keep = static_cast<size_t>(cap - copied);
    truncated = true;
    const std::string marker = "\n[cellos-reactor: " + std::string(name) + " cut at " + std::to_string(cap) +
             " bytes (logs.max_bytes_per_stream); the rest was discarded]\n";
    // The kept head and the notice go out as one write, so the notice overwrites the last
    // few bytes of the head when the chunk filled the buffer: the file holds at most `cap`
    // bytes of the stream, then the notice.
    keep = std::min(keep, buf.size() - marker.size());
    std::memcpy(buf.data() + keep, marker.data(), marker.size());
    len = keep + marker.size();
    copied = cap;
  } else if (!truncated) {
    len = n;
    copied += n;
  }
  writing = !sink_broken && len > 0;
}


// A cell whose logs go to files (the daemon): the setup failure is the last line of its stderr
// log too, where a user reading the job's output looks first. One short append on a rare
// path, so a plain write rather than the ring; the pump has closed the file by now.
void Cell::note_setup_failure() {
  if (opts_.stderr_path.empty()) return;
  auto fd = open_log(opts_.stderr_path);
  if (!fd) return;
  const std::string line = "[cellos-reactor: setup failed, the command did not run (exit status " +
                           std::to_string(outcome_.exit_status()) + "): " + outcome_.error + "]\n";
  (void)!::write(fd->get(), line.data(), line.size());
}

}  // namespace cellos::cells
