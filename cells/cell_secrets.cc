// The Cell's part in secret delivery and workload identity: minting the token, opening the
// broker before launch, closing it when the command exits.
#include <time.h>

#include "cells/cell.h"

namespace cellos::cells {

base::Result<void> Cell::prepare_delivery() {
  const Spec& spec = opts_.spec;
  std::optional<Token> token;
  if (spec.identity) {
    // Admission refuses such a spec on a host without the key; a Spec built in code may not
    // have been through admission.
    if (!host_.identity)
      return base::value_error("spec.identity", "this host has no identity signing key");
    timespec now{};
    clock_gettime(CLOCK_REALTIME, &now);
    // exp at the cell's deadline: the token dies with the cell, rounded up to a second.
    const uint64_t life_ms = static_cast<uint64_t>(effective_deadline().count());
    auto t = host_.identity->mint(
        {spec.id, spec.identity->audience, opts_.run_id, now.tv_sec, (life_ms + 999) / 1000});
    if (!t) return std::move(t).error().context("spec.identity");
    token = std::move(*t);
    emit(sinks::IdentityIssuedData{spec.id, opts_.run_id, host_.identity->issuer(), spec.id,
                                   spec.identity->audience, host_.identity->key_id(), token->jti,
                                   spec.run.secret_delivery, token->issued_at,
                                   token->expires_at});
  }
  if (!spec.runtime_delivery()) {
    if (token) opts_.env.push_back(std::string(kIdentityTokenName) + "=" + token->jwt);
    return base::ok();
  }
  if (spec.secret_refs.empty() && !token) return base::ok();
  SecretBrokerOptions o;
  o.io = host_.io;
  o.emit = [this](sinks::EventData d) { emit(std::move(d)); };
  o.cell_id = spec.id;
  o.run_id = opts_.run_id;
  o.delivery = spec.run.secret_delivery;
  o.state_dir = host_.config->host.state_dir;
  o.uid = uid_->uid();
  o.gid = uid_->gid();
  o.secrets = std::move(opts_.brokered_secrets);
  o.on_idle = [this] { maybe_finish(); };
  auto b = SecretBroker::open(std::move(o));
  if (!b) return std::move(b).error().context("secret broker");
  broker_ = std::move(*b);
  if (token) broker_->add(kIdentityTokenName, std::move(token->jwt));
  return base::ok();
}

bool Cell::close_broker() {
  if (!broker_) return true;
  if (!broker_->closed()) {
    if (launched_ && !exit_.reaped) return true;  // the command still runs: keep serving
    broker_->close(launched_ ? "command_exited" : "cell_ended");
  }
  return broker_->idle();
}

}  // namespace cellos::cells
