// SecretBroker: runtime secret delivery. A cell whose spec says secretDelivery runtimeBroker
// (or runtimeLeasedBroker) gets no secret in its environment; it asks this broker for each one
// by name, on a unix socket the reactor serves on the ring (accept, read and write are ring
// operations: no thread, no blocking call).
//
// Where: the socket is <state_dir>/broker/<cell id>/secrets.sock on the host, a directory owned
// by the cell's uid (mode 0500, the socket 0600); the cell's view holds that directory, read-
// only, at /run/cellos, and CELLOS_SECRET_BROKER names /run/cellos/secrets.sock. No other cell's
// view holds it.
//
// Protocol (one request per line, as many lines per connection as the client likes):
//   GET NAME\n  ─►  OK <bytes>\n<value>\n                   the value, exactly <bytes> long
//               ─►  ERR <reasonCode> <one line of text>\n   refused
// reasonCodes: not_declared (not a secretRef of this spec, nor the identity token),
// lease_consumed (runtimeLeasedBroker: each name is served once per run), peer_not_in_cell
// (SO_PEERCRED: the peer is not a process of this cell: another uid, or another pid namespace),
// malformed_request. Every request is a secrets.v1.access_decision event naming the secret,
// never its value.
//
// close() ends it when the command exits: the listener and every connection are cancelled, the
// socket and its directory unlinked, the values wiped from memory, and a secrets.v1.revoked
// event says what it held and served. The values were read from [secrets] dir into memory at
// admission and never touch another file.
#pragma once

#include <sys/types.h>

#include <array>
#include <cstdint>
#include <functional>
#include <list>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "base/fd.h"
#include "base/io.h"
#include "base/result.h"
#include "sinks/events.h"

namespace cellos::cells {

struct SecretBrokerOptions {
  base::IoPort* io = nullptr;
  // Emits one of the cell's events (the cell's own emit: its correlation id included).
  std::function<void(sinks::EventData)> emit;
  std::string cell_id, run_id;
  std::string delivery;  // kSecretDeliveryBroker | kSecretDeliveryLeased
  std::string state_dir;
  uid_t uid = 65534;  // the cell's: the only peer uid served, and the socket's owner
  gid_t gid = 65534;
  std::vector<std::pair<std::string, std::string>> secrets;  // name, value
  std::function<void()> on_idle;  // after close(), once nothing is in flight
};

class SecretBroker {
 public:
  // Makes the directory, binds and listens, and starts accepting.
  static base::Result<std::unique_ptr<SecretBroker>> open(SecretBrokerOptions options);
  ~SecretBroker();
  SecretBroker(const SecretBroker&) = delete;
  SecretBroker& operator=(const SecretBroker&) = delete;

  // The host directory the cell's view holds at /run/cellos.
  const std::string& host_dir() const { return dir_path_; }
  // One more name to serve (the identity token, minted at the cell's start).
  void add(std::string name, std::string value);
  // The cell's init runs as `init_pid` (host pid namespace): peers must share its pid namespace.
  void set_cell_pid(pid_t init_pid);
  // Idempotent. `reason` goes into the revoked event. Never calls on_idle itself: the caller
  // checks idle() after it.
  void close(const std::string& reason);
  bool closed() const { return closed_; }
  // Closed and nothing in flight: the owner may destroy it.
  bool idle() const;

 private:
  struct Conn;
  struct Acceptor final : base::Completion {
    SecretBroker* broker = nullptr;
    bool in_flight = false;
    void complete(int res) override;
  };

  explicit SecretBroker(SecretBrokerOptions o);
  base::Result<void> listen();
  void arm_accept();
  void on_accept(int fd);
  // The peer of a new connection is one of the cell's processes: its uid and pid namespace.
  bool peer_in_cell(int fd, int64_t& pid, uint32_t& uid) const;
  // The reply to one request line; records the decision.
  std::string answer(std::string_view line, const Conn& c);
  void decide(const std::string& name, bool allowed, const char* reason, const Conn& c);
  void done(Conn* c);
  void maybe_idle();

  SecretBrokerOptions o_;
  std::string dir_path_;
  base::Fd dir_;
  base::Fd listener_;
  Acceptor acceptor_;
  std::list<std::unique_ptr<Conn>> conns_;
  std::vector<bool> served_once_;  // per secret, for the leased mode
  uint64_t served_ = 0, refused_ = 0;
  ino_t pidns_ = 0;  // the cell's pid namespace (0: not yet known: no peer is served)
  dev_t pidns_dev_ = 0;
  bool closed_ = false, idle_reported_ = false;
};

}  // namespace cellos::cells
