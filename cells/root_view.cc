#include "cells/root_view.h"

#include <algorithm>

namespace cellos::cells {

bool path_within(std::string_view inner, std::string_view outer) {
  if (outer == "/") return true;
  if (!inner.starts_with(outer)) return false;
  return inner.size() == outer.size() || inner[outer.size()] == '/';
}

std::string host_path_refusal(std::string_view path) {
  if (path == "/") return "must not be \"/\" (that is the whole host again)";
  for (std::string_view own : {"/proc", "/dev", "/sys", "/tmp"})
    if (path_within(path, own))
      return std::string("must not be under ") + std::string(own) + ", which each cell gets of its own";
  return {};
}

std::vector<std::string> root_view_paths(const PolicyConfig& policy) {
  std::vector<std::string> all = policy.host_paths;
  // A prefix that cannot be in the view (validation refuses such host_paths; an argv0 prefix
  // may still name one) is left out: the cell's own /tmp or /dev would cover it anyway.
  for (const auto& p : policy.argv0_allow_prefixes)
    if (host_path_refusal(p).empty()) all.push_back(p);
  // Sorted, an entry comes before everything inside it; a handful of entries, so each is
  // checked against every one kept ("/usr-x" sorts between "/usr" and "/usr/lib").
  std::sort(all.begin(), all.end());
  std::vector<std::string> out;
  for (auto& p : all)
    if (std::none_of(out.begin(), out.end(), [&](const std::string& o) { return path_within(p, o); }))
      out.push_back(std::move(p));
  return out;
}

std::vector<std::string> masked_paths(const Config& config) {
  std::vector<std::string> own{config.host.state_dir};
  if (config.events.jsonl != "-") own.push_back(config.events_path());
  if (!config.secrets.dir.empty()) own.push_back(config.secrets.dir);
  if (!config.events.signing_key.empty()) own.push_back(config.events.signing_key);
  if (!config.identity.signing_key.empty()) own.push_back(config.identity.signing_key);
  const auto view = root_view_paths(config.policy);
  std::vector<std::string> out;
  for (auto& p : own)
    if (std::any_of(view.begin(), view.end(), [&](const std::string& v) { return path_within(p, v); }))
      out.push_back(std::move(p));
  return out;
}

}  // namespace cellos::cells
