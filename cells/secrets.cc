#include "cells/secrets.h"

#include <fcntl.h>
#include <sys/stat.h>

#include "base/text.h"

namespace cellos::cells {
namespace {

// A secret is a token or a key, not a file to stream; anything larger is a mistake.
constexpr size_t kMaxSecretBytes = 64 * 1024;

base::Result<std::string> read_secret(const SecretsConfig& secrets, const std::string& key,
                                      size_t index) {
  const std::string field = "spec.authority.secretRefs[" + std::to_string(index) + "]";
  // Names come from the spec (any length): messages quote them clipped.
  const std::string name = base::clip(key);
  if (secrets.dir.empty())
    return base::value_error(field, name + " is declared but no [secrets] dir is configured");
  const std::string path = secrets.dir + "/" + name;
  const std::string real_path = secrets.dir + "/" + key;
  // open_regular: a symlink planted in the secrets dir must not redirect the read, and a FIFO
  // planted there must not block the reactor thread.
  auto fd = base::open_regular(AT_FDCWD, real_path);
  if (!fd) {
    auto e = std::move(fd).error();
    if (e.detail == "not a regular file")
      return base::value_error(field, "secret " + name + " is not a regular file (" + path + ")");
    return base::Error{e.err, field, {}, "secret " + name + " unavailable (" + path + ")", {}};
  }
  auto value = base::read_fd(fd->get(), path, kMaxSecretBytes);
  if (!value) {
    auto e = std::move(value).error();
    return base::Error{e.err, field, {}, "secret " + name + " unreadable (" + path + ")", {}};
  }
  std::string v = std::move(*value);
  if (!v.empty() && v.back() == '\n') v.pop_back();
  if (!v.empty() && v.back() == '\r') v.pop_back();
  if (v.find('\0') != std::string::npos)
    return base::value_error(field, "secret " + name + " contains a NUL byte (" + path + ")");
  return v;
}

}  // namespace

base::Result<std::vector<std::string>> build_environment(const Spec& spec,
                                                         const SecretsConfig& secrets) {
  std::vector<std::string> env;
  bool own_path = false;
  for (const auto& [k, v] : spec.run.env) own_path = own_path || k == "PATH";
  if (!own_path) env.emplace_back(kDefaultPath);
  for (const auto& [k, v] : spec.run.env) env.push_back(k + "=" + v);
  if (spec.runtime_delivery()) {
    if (!spec.secret_refs.empty() || spec.identity)
      env.push_back(std::string(kBrokerEnvName) + "=" + kBrokerSocketInCell);
    return env;
  }
  for (size_t i = 0; i < spec.secret_refs.size(); ++i) {
    const std::string& key = spec.secret_refs[i];
    auto value = read_secret(secrets, key, i);
    if (!value) return std::move(value).error();
    env.push_back(key + "=" + *value);
  }
  return env;
}

base::Result<BrokeredSecrets> read_brokered_secrets(const Spec& spec,
                                                    const SecretsConfig& secrets) {
  BrokeredSecrets out;
  if (!spec.runtime_delivery()) return out;
  for (size_t i = 0; i < spec.secret_refs.size(); ++i) {
    auto value = read_secret(secrets, spec.secret_refs[i], i);
    if (!value) return std::move(value).error();
    out.emplace_back(spec.secret_refs[i], std::move(*value));
  }
  return out;
}

}  // namespace cellos::cells
