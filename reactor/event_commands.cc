#include "reactor/event_commands.h"

#include <fcntl.h>
#include <sys/file.h>

#include <cerrno>
#include <cstdio>
#include <string>
#include <unistd.h>

#include "reactor/nats_commands.h"
#include "reactor/seal_sublog_command.h"
#include "sinks/signing.h"
#include "sinks/sublog_seal.h"
#include "sinks/verify.h"

namespace cellos::reactor {
namespace {

// Whether a live process holds the log's writer lock (an exclusive flock, event_log.cc): a
// shared probe that would block says so. The probe is released at once.
bool held_by_writer(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  const bool held = ::flock(fd, LOCK_SH | LOCK_NB) != 0 && errno == EWOULDBLOCK;
  ::close(fd);
  return held;
}

int fail(const std::string& line) {
  std::fprintf(stderr, "cellos-reactor: %s\n", line.c_str());
  return 1;
}

}  // namespace

void add_event_commands(CLI::App& app, std::optional<int>& exit_code) {
  auto* keygen = app.add_subcommand(
      "keygen", "write DIR/NAME.key (PKCS#8 PEM, 0600) and DIR/NAME.pub (NAME: host by default)");
  auto out_dir = std::make_shared<std::string>();
  auto name = std::make_shared<std::string>("host");
  keygen->add_option("--out", *out_dir, "directory for the key pair")->required();
  // "identity" for [identity] signing_key: a key of its own, so the event log's key never
  // signs tokens a relying party accepts, and either can be rotated alone.
  keygen->add_option("--name", *name, "file stem of the pair: host (event log), identity (tokens)");
  keygen->callback([&exit_code, out_dir, name] {
    if (name->empty() || name->size() > 64 ||
        name->find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-") !=
            std::string::npos) {
      exit_code = fail("keygen: --name: must be 1..64 characters of [A-Za-z0-9_-]");
      return;
    }
    auto id = sinks::write_key_pair(*out_dir, *name);
    if (!id) {
      exit_code = fail("keygen: " + id.error().message());
      return;
    }
    std::printf("wrote %s/%s.key and %s/%s.pub (key id %s)\n", out_dir->c_str(), name->c_str(),
                out_dir->c_str(), name->c_str(), id->c_str());
    exit_code = 0;
  });

  auto* verify = app.add_subcommand("verify", "check an event log's chain, Merkle roots and signatures");
  auto file = std::make_shared<std::string>();
  auto pub = std::make_shared<std::string>();
  verify->add_option("file", *file, "event log (JSONL or packed Cap'n Proto)")->required();
  verify->add_option("--public-key", *pub, "host.pub of the writer (without it: integrity only)");
  auto no_nested = std::make_shared<bool>(false);
  verify->add_flag("--no-nested", *no_nested,
                   "do not follow the sealed logs of nested cells (docs/nested.md)");
  verify->callback([&exit_code, file, pub, no_nested] {
    sinks::TrailOptions o;
    o.top.path = *file;
    if (!pub->empty()) o.top.public_key_path = *pub;
    o.follow_nested = !*no_nested;
    // A live log (its writer holds the lock, event_log.cc) may end in a batch not sealed yet:
    // what is sealed is verified; the end is said to be pending, not called tampering.
    o.top_live = held_by_writer(*file);
    auto t = sinks::verify_trail(o);
    if (!t) {
      exit_code = fail(t.error().message());  // already "verify: ..."
      return;
    }
    const sinks::VerifyReport* r = &t->top;
    if (!r->ok && !(r->tail_pending && o.top_live)) {
      exit_code = fail("verify: " + *file + ": " + r->summary());
      return;
    }
    std::printf("%s: %s\n", file->c_str(), (r->ok ? r->summary() : r->live_summary()).c_str());
    // Every nested depth it vouches for, one line each, then the first problem below it.
    for (const auto& l : t->logs)
      std::printf("%s: depth %u (%s), sealed at line %llu: %s: %s\n", file->c_str(), l.depth,
                  l.nesting.c_str(), static_cast<unsigned long long>(l.sealed_line), l.path.c_str(),
                  l.summary.c_str());
    if (!t->ok) {
      exit_code = fail("verify: " + *file + ": the log is intact, but not its nested trail: " +
                       t->problem);
      return;
    }
    if (t->seals_not_followed)
      std::printf("%s: %llu sealed sub-log(s) of nested cells not followed (--no-nested)\n",
                  file->c_str(), static_cast<unsigned long long>(t->seals_not_followed));
    else if (!t->logs.empty())
      std::printf("%s: nested trail intact: %zu sub-log(s) at depths 1..%u\n", file->c_str(),
                  t->logs.size(), t->deepest);
    exit_code = 0;
  });

  auto* events = app.add_subcommand("events", "read event logs");
  events->require_subcommand(1);
  auto* cat = events->add_subcommand("cat", "print any event log as CloudEvents JSON lines");
  auto cat_file = std::make_shared<std::string>();
  cat->add_option("file", *cat_file, "event log (JSONL or packed Cap'n Proto)")->required();
  cat->callback([&exit_code, cat_file] {
    auto text = sinks::cat_log(*cat_file);
    if (!text) {
      exit_code = fail(text.error().message());
      return;
    }
    size_t done = 0;
    while (done < text->size()) {
      ssize_t n = ::write(STDOUT_FILENO, text->data() + done, text->size() - done);
      if (n <= 0) {
        exit_code = fail("events cat: write to stdout failed");
        return;
      }
      done += static_cast<size_t>(n);
    }
    exit_code = 0;
  });

  add_events_fetch_command(*events, exit_code);
  add_seal_sublog_command(app, exit_code);
}

}  // namespace cellos::reactor
