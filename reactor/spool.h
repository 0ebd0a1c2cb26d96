// The spool: the daemon's local intake. A spec file renamed into <state_dir>/spool/ is
// admitted; the daemon moves it to active/<cellId>.json when its cell starts (so it never runs
// twice, and a daemon that dies mid-run knows which cells it lost), or to rejected/ with a
// sibling .error file. Specs waiting for a slot stay in the spool, so a restart loses none.
//
// Names starting with '.' are ignored: they are files still being written (submit writes
// ".<name>.tmp" and renames it in).
#pragma once

#include <sys/inotify.h>

#include <array>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "base/fd.h"
#include "base/io.h"
#include "base/result.h"

namespace cellos::reactor {

struct StateDirs {
  std::string state, spool, active, rejected, logs;
  explicit StateDirs(const std::string& state_dir);
  base::Result<void> make() const;
};

// Spool entries present now, oldest first (mtime, then name: submit's names sort by time).
std::vector<std::string> scan_spool(const StateDirs& dirs);

// The spec text of a spool entry: a regular file (no symlink followed), at most
// base::kMaxSpecBytes (1 MiB, the cap of every intake).
// With `io`, its descriptor is closed through that port (the daemon's ring) rather than here.
base::Result<std::string> read_spool_entry(const StateDirs& dirs, const std::string& name,
                                           base::IoPort* io = nullptr);

// spool/<name> -> active/<cellId>.json
base::Result<std::string> move_to_active(const StateDirs& dirs, const std::string& name,
                                         const std::string& cell_id);

// spool/<name> -> rejected/<name>, and rejected/<name>.error holding `reason` on one line of at
// most base::kMaxMessageBytes. An entry larger than a spec may be is deleted, not kept (its
// .error says why). Then prunes rejected/ to its bounds.
base::Result<void> move_to_rejected(const StateDirs& dirs, const std::string& name,
                                    const std::string& reason);

// rejected/ is bounded: at most max_entries rejected specs (each a copy and its .error). Past the
// bound the oldest rejections (by the newer mtime of the pair) are removed first, down to three
// quarters of it, so the directory is rescanned once per many rejections rather than at each.
// Bytes are bounded with the count: a copy is kept only up to base::kMaxSpecBytes and an .error
// is one line of at most base::kMaxMessageBytes, so 128 entries hold at most ~128 MiB. A hostile
// submitter can push out older rejections, but can never fill the state dir's disk.
struct RejectedBounds {
  size_t max_entries = 128;
};

// Returns how many rejections were removed.
size_t prune_rejected(const StateDirs& dirs, const RejectedBounds& bounds = {});

// Writes a spec into the spool the way intake expects: a dot temp file renamed in. Returns
// the entry's path. Names sort by submission time.
base::Result<std::string> submit_to_spool(const StateDirs& dirs, const std::string& cell_id,
                                          const std::string& spec_text);

// The first half of submit_to_spool for `run --via-daemon`: the spec written under its hidden
// temp name (".<entry>.tmp", which no intake reads) and left there; the daemon moves it in
// itself once it has registered the client's wait (status.h, `hand`), or the client does
// (an older daemon). `staged` and `entry` are full paths.
struct StagedSpec {
  std::string staged, entry;
};
base::Result<StagedSpec> stage_in_spool(const StateDirs& dirs, const std::string& cell_id,
                                        const std::string& spec_text);
// The entry name a staged name (".<entry>.tmp", one path component) moves to, or empty when
// `staged` is not such a name.
std::string staged_entry_name(std::string_view staged);

// inotify on the spool, read through the ring. Reports names as they are renamed or written
// in; reports an overflow of the kernel's event queue as a request to rescan.
class SpoolWatcher final : public base::Completion {
 public:
  struct Handlers {
    std::function<void(std::string name)> on_entry;
    std::function<void()> on_overflow;
  };
  static base::Result<std::unique_ptr<SpoolWatcher>> create(base::IoPort& io,
                                                            const std::string& dir, Handlers h);
  // Stops reporting; the read in flight is cancelled and the watcher stays inert.
  void stop();
  bool in_flight() const { return in_flight_; }
  void complete(int res) override;

 private:
  SpoolWatcher(base::IoPort& io, base::Fd fd, Handlers h)
      : io_(io), fd_(std::move(fd)), h_(std::move(h)) {}
  void arm();

  base::IoPort& io_;
  base::Fd fd_;
  Handlers h_;
  bool in_flight_ = false, stopped_ = false;
  alignas(inotify_event) std::array<std::byte, 16 * 1024> buf_;
};

}  // namespace cellos::reactor
