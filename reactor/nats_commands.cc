#include "reactor/nats_commands.h"

#include <sys/mman.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <vector>

#include "reactor/companion.h"

namespace cellos::reactor {
namespace {

int exec_companion(std::vector<std::string> args) {
  const std::string bin = Companion::beside_self();
  args.insert(args.begin(), bin);
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  char* envp[] = {nullptr};
  ::execve(bin.c_str(), argv.data(), envp);
  std::fprintf(stderr, "cellos-reactor: execve(\"%s\"): %s (it is built beside cellos-reactor)\n",
               bin.c_str(), std::strerror(errno));
  return 125;
}

}  // namespace

int exec_nats_publish(const std::string& url, const cells::IntakeNatsConfig& intake,
                      const std::string& spec_text, bool wait) {
  int fd = ::memfd_create("cellos-spec", 0);
  if (fd < 0) {
    std::fprintf(stderr, "cellos-reactor: memfd_create: %s\n", std::strerror(errno));
    return 125;
  }
  size_t done = 0;
  while (done < spec_text.size()) {
    ssize_t n = ::write(fd, spec_text.data() + done, spec_text.size() - done);
    if (n <= 0) {
      std::fprintf(stderr, "cellos-reactor: write(memfd): %s\n", std::strerror(errno));
      return 125;
    }
    done += static_cast<size_t>(n);
  }
  if (::lseek(fd, 0, SEEK_SET) != 0 || ::dup2(fd, STDIN_FILENO) < 0) {
    std::fprintf(stderr, "cellos-reactor: memfd as stdin: %s\n", std::strerror(errno));
    return 125;
  }
  ::close(fd);
  std::vector<std::string> args{"publish", "--url", url, "--stream", intake.stream, "--subject",
                                intake.subject};
  if (wait) {
    args.push_back("--wait-bucket");
    args.push_back(intake.completions_bucket);
  }
  return exec_companion(std::move(args));
}

void add_events_fetch_command(CLI::App& events, std::optional<int>& exit_code) {
  struct Flags {
    std::string url, stream = cells::EventsNatsConfig{}.prefix, subject;
  };
  auto f = std::make_shared<Flags>();
  auto* fetch = events.add_subcommand("fetch", "print the batches a host published to NATS JetStream");
  fetch->add_option("--nats", f->url, "NATS server URL")->required();
  fetch->add_option("--stream", f->stream, "the [events.nats] prefix (default CELLOS_EVENTS)");
  fetch->add_option("--subject", f->subject, "<prefix>.<host id>")->required();
  fetch->callback([&exit_code, f] {
    exit_code = exec_companion({"fetch-events", "--url", f->url, "--stream", f->stream, "--subject", f->subject});
  });
}

}  // namespace cellos::reactor
