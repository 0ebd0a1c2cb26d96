#include "reactor/identity_commands.h"

#include <cstdio>
#include <memory>
#include <string>

#include "cells/config.h"
#include "cells/identity.h"

namespace cellos::reactor {

void add_identity_commands(CLI::App& app, std::optional<int>& exit_code) {
  auto* jwks = app.add_subcommand(
      "jwks", "print the JWKS (OKP/Ed25519) of [identity] signing_key for relying parties");
  auto config_path = std::make_shared<std::string>();
  jwks->add_option("--config", *config_path, "fleet.toml with an [identity] table")->required();
  jwks->callback([&exit_code, config_path] {
    try {
      cells::Config config = cells::load_config(*config_path);
      auto issuer = cells::IdentityIssuer::load(config);
      if (!issuer) {
        std::fprintf(stderr, "cellos-reactor: jwks: %s: %s\n", config_path->c_str(),
                     issuer.error().message().c_str());
        exit_code = 1;
        return;
      }
      std::printf("%s\n", (*issuer)->jwks().c_str());
      exit_code = 0;
    } catch (const cells::ConfigError& e) {
      std::fprintf(stderr, "cellos-reactor: jwks: %s\n", e.what());
      exit_code = 1;
    }
  });
}

}  // namespace cellos::reactor
