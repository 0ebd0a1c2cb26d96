// `cellos-reactor submit`: admission as the daemon would do it, then the spool or the fleet's
// NATS work queue.
#include <cstdio>

#include "cells/admission.h"
#include "cells/secrets.h"
#include "reactor/daemon.h"
#include "reactor/nats/frames.h"
#include "reactor/nats_commands.h"
#include "reactor/run_command.h"
#include "reactor/spool.h"
#include "reactor/submit_wait.h"

namespace cellos::reactor {
namespace {

constexpr int kSetupFailed = 125;

int complain(const std::string& line) { return say_setup_failed(line); }

}  // namespace

int submit_command(const SubmitArgs& args) {
  std::optional<cells::Config> loaded;
  if (!args.config_path.empty() || args.nats_url.empty()) {
    loaded = load_config_or_say(args.config_path);
    if (!loaded) return kSetupFailed;
  } else {
    loaded = cells::default_config();
  }
  const cells::Config& config = *loaded;
  // A fleet fed by [intake.nats] takes its specs from the work queue: its spool only on request.
  const std::string url = !args.nats_url.empty() ? args.nats_url
                          : config.intake.nats.enabled && !args.spool ? config.intake.nats.url
                                                                       : "";
  auto text = read_spec_text(args.spec_path);
  if (!text) return complain(text.error().message());
  // The same limit the daemons' companions enforce: a spec they would reject is never queued.
  if (!url.empty() && text->size() > nats::kMaxSpecBytes)
    return complain("spec: " + std::to_string(text->size()) +
                    " bytes: over the 1 MiB a spec may have on the NATS work queue");
  // Hostnames are left to the daemon that runs the spec: its resolver is the one that counts.
  cells::Admission a = cells::admit(*text, cells::AdmissionOptions{&config, {}});
  const StateDirs dirs(config.host.state_dir);
  if (!a.admitted()) return complain(a.refusal.message());
  if (!url.empty()) return exec_nats_publish(url, config.intake.nats, *text, args.wait);
  // The secrets it names must be there now, as the daemon will read them at its start: a
  // missing file is refused here rather than moments later by the daemon.
  if (auto env = cells::build_environment(*a.spec, config.secrets); !env)
    return complain(env.error().message());
  if (args.wait)
    return submit_and_wait({&dirs, a.spec->id, std::move(*text)});
  auto path = submit_to_spool(dirs, a.spec->id, *text);
  if (!path) return complain(path.error().message());
  std::printf("%s\n", path->c_str());
  return 0;
}

}  // namespace cellos::reactor
