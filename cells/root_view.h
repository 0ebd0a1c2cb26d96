// The root view: what of the host filesystem a cell sees.
//
// A cell's root is a fresh tmpfs, not the host's root made read-only: a read-only mount still
// lets connect(2) reach every pathname socket under it (D-Bus, journald, anything a host
// service leaves in /run, /var/lib or /var/tmp), and lists every file name on the host. So the
// view is built from an allow-list: the host paths below, each bind-mounted read-only, nosuid
// and nodev, and nothing else of the host. The cell adds its own /proc, a minimal /dev, a tmpfs
// /tmp and workspace, sysfs mounted in its own network namespace, and its own cgroup at
// /sys/fs/cgroup (a cgroup namespace rooted at its leaf). The child builds it
// (child_setup.cc); this file only decides which host paths it holds.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "cells/config.h"

namespace cellos::cells {

// The host paths a cell's view holds, in the order they are mounted: policy.host_paths (its
// default is what a build needs: /usr, /bin, /sbin, /lib*, /etc, /opt; entries absent on a host
// are skipped when the view is built), then
// every argv0_allow_prefixes entry (a program the policy lets a cell run must be visible to
// it), sorted, each once, and none inside another (the outer bind already holds it).
std::vector<std::string> root_view_paths(const PolicyConfig& policy);

// The reactor's own files that lie inside the view: its state dir, event log, secrets dir and
// signing key, when fleet.toml puts them under an allowed path (/etc/cellos/host.key). The cell
// gets an empty, read-only tmpfs over each such directory and /dev/null over each such file.
std::vector<std::string> masked_paths(const Config& config);

// Where a host path may not go: the places a cell gets its own (/proc, /dev, /sys, /tmp),
// which would hide the host's copy anyway, and "/" (the whole host again). Empty when `path`
// may be in the view, else the reason.
std::string host_path_refusal(std::string_view path);

// True when `inner` is `outer` or lies below it (whole components: /usr/lib is under /usr,
// /usrx is not).
bool path_within(std::string_view inner, std::string_view outer);

}  // namespace cellos::cells
