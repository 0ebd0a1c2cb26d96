#include "cells/secret_broker.h"

#include <fcntl.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <span>

#include "base/text.h"
#include "cells/spec.h"

namespace cellos::cells {
namespace {

constexpr const char* kSocketName = "secrets.sock";
// A request is "GET " and an environment variable name: anything longer is not one.
constexpr size_t kMaxLine = 512;
// Connections one cell may hold open at once; more are refused at accept (a cell could
// otherwise hold the reactor's descriptors hostage).
constexpr size_t kMaxConns = 64;

void wipe(std::string& s) {
  if (!s.empty()) ::explicit_bzero(s.data(), s.size());
  s.clear();
}

}  // namespace

// One accepted connection: at most one ring operation in flight (a read, or the write of a
// reply), the unanswered bytes of the request stream, and the reply being written.
struct SecretBroker::Conn final : base::Completion {
  SecretBroker* broker = nullptr;
  base::Fd fd;
  int64_t peer_pid = 0;
  uint32_t peer_uid = 0;
  bool refused = false;  // not a process of the cell: told so, then closed
  bool in_flight = false, writing = false, finished = false;
  std::string in, out;
  size_t out_off = 0;
  std::array<char, kMaxLine> buf{};

  void arm() {
    in_flight = true;
    if (writing)
      broker->o_.io->write(fd.get(), std::as_bytes(std::span(out)).subspan(out_off), *this);
    else
      broker->o_.io->read(fd.get(), std::as_writable_bytes(std::span(buf)), *this);
  }

  // Answers every complete line already read, then writes, or reads for more.
  void next() {
    if (broker->closed_ || finished) return broker->done(this);
    size_t nl = in.find('\n');
    if (nl == std::string::npos) {
      if (in.size() > kMaxLine) {
        out = broker->answer({}, *this);
        finished = true;
        writing = true;
        return arm();
      }
      writing = false;
      return arm();
    }
    std::string line = in.substr(0, nl);
    in.erase(0, nl + 1);
    wipe(out);
    out = broker->answer(line, *this);
    out_off = 0;
    writing = true;
    arm();
  }

  void complete(int res) override {
    in_flight = false;
    if (broker->closed_ || res < 0) return broker->done(this);
    if (writing) {
      out_off += static_cast<size_t>(res);
      if (res == 0) return broker->done(this);
      if (out_off < out.size()) return arm();
      wipe(out);
      writing = false;
      if (finished) return broker->done(this);
      return next();
    }
    if (res == 0) return broker->done(this);  // the client closed its end
    in.append(buf.data(), static_cast<size_t>(res));
    next();
  }
};

SecretBroker::SecretBroker(SecretBrokerOptions o) : o_(std::move(o)) {
  acceptor_.broker = this;
  served_once_.assign(o_.secrets.size(), false);
}

SecretBroker::~SecretBroker() {
  // Never closed (open() failed half way, or the cell was dropped): nothing left on the host.
  if (dir_) {
    ::unlinkat(dir_.get(), kSocketName, 0);
    ::unlinkat(dir_.get(), (std::string(kSocketName) + ".new").c_str(), 0);
    dir_.reset();
    ::rmdir(dir_path_.c_str());
  }
  for (auto& [name, value] : o_.secrets) wipe(value);
  for (auto& c : conns_) wipe(c->out);
}

base::Result<std::unique_ptr<SecretBroker>> SecretBroker::open(SecretBrokerOptions options) {
  std::unique_ptr<SecretBroker> b(new SecretBroker(std::move(options)));
  CELLOS_TRY(b->listen());
  b->arm_accept();
  return b;
}

base::Result<void> SecretBroker::listen() {
  const std::string parent = o_.state_dir + "/broker";
  CELLOS_TRY(base::make_dirs(parent, 0711));
  dir_path_ = parent + "/" + o_.cell_id;
  // A directory left by a reactor that died with the cell running: its socket is dead.
  ::unlink((dir_path_ + "/" + kSocketName).c_str());
  if (::mkdir(dir_path_.c_str(), 0700) != 0 && errno != EEXIST)
    return base::sys_error("mkdir", "\"" + dir_path_ + "\"");
  auto dir = base::open_at(AT_FDCWD, dir_path_, O_PATH | O_DIRECTORY | O_NOFOLLOW);
  if (!dir) return std::move(dir).error();
  dir_ = std::move(*dir);
  // The cell's uid may enter and list it, not create in it; no other uid may enter it.
  if (::fchownat(dir_.get(), "", o_.uid, o_.gid, AT_EMPTY_PATH) != 0)
    return base::sys_error("chown", "\"" + dir_path_ + "\"");
  if (::chmod(("/proc/self/fd/" + std::to_string(dir_.get())).c_str(), 0500) != 0)
    return base::sys_error("chmod", "\"" + dir_path_ + "\"");

  listener_ = base::Fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!listener_) return base::sys_error("socket", "AF_UNIX");
  // Bound through the directory's descriptor: sun_path holds 108 bytes, a state dir and a
  // 128-character cell id do not fit. Made under a temporary name, owned, listening, then
  // renamed: whoever finds secrets.sock finds it ready.
  const std::string tmp = std::string(kSocketName) + ".new";
  ::unlinkat(dir_.get(), tmp.c_str(), 0);
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  const std::string at = "/proc/self/fd/" + std::to_string(dir_.get()) + "/" + tmp;
  std::memcpy(a.sun_path, at.c_str(), at.size() + 1);
  const std::string where = "\"" + dir_path_ + "/" + kSocketName + "\"";
  if (::bind(listener_.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) != 0)
    return base::sys_error("bind", where);
  if (::fchownat(dir_.get(), tmp.c_str(), o_.uid, o_.gid, AT_SYMLINK_NOFOLLOW) != 0 ||
      ::fchmodat(dir_.get(), tmp.c_str(), 0600, 0) != 0)
    return base::sys_error("chown", where);
  if (::listen(listener_.get(), 16) != 0) return base::sys_error("listen", where);
  if (::renameat(dir_.get(), tmp.c_str(), dir_.get(), kSocketName) != 0)
    return base::sys_error("rename", where);
  return base::ok();
}

void SecretBroker::add(std::string name, std::string value) {
  o_.secrets.emplace_back(std::move(name), std::move(value));
  served_once_.push_back(false);
}

void SecretBroker::set_cell_pid(pid_t init_pid) {
  struct stat st{};
  if (::stat(("/proc/" + std::to_string(init_pid) + "/ns/pid").c_str(), &st) == 0) {
    pidns_ = st.st_ino;
    pidns_dev_ = st.st_dev;
  }
}

void SecretBroker::arm_accept() {
  acceptor_.in_flight = true;
  o_.io->accept(listener_.get(), acceptor_);
}

void SecretBroker::Acceptor::complete(int res) {
  in_flight = false;
  SecretBroker* b = broker;
  if (b->closed_) {
    if (res >= 0) ::close(res);
    b->listener_.reset();
    return b->maybe_idle();
  }
  if (res >= 0) {
    b->on_accept(res);
  } else if (res != -EINTR && res != -EAGAIN && res != -ECONNABORTED) {
    // Out of descriptors or memory: this cell's broker stops answering rather than spin.
    std::fprintf(stderr, "cellos-reactor: cell %s: secret broker: accept: %s\n",
                 b->o_.cell_id.c_str(), std::strerror(-res));
    return;
  }
  b->arm_accept();
}

bool SecretBroker::peer_in_cell(int fd, int64_t& pid, uint32_t& uid) const {
  ucred cred{};
  socklen_t len = sizeof cred;
  if (::getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) return false;
  pid = cred.pid;
  uid = cred.uid;
  if (cred.uid != o_.uid || cred.pid <= 0 || pidns_ == 0) return false;
  // The uid is the cell's alone (uid_pool.h); the pid namespace makes sure it is this run's.
  struct stat st{};
  if (::stat(("/proc/" + std::to_string(cred.pid) + "/ns/pid").c_str(), &st) != 0) return false;
  return st.st_ino == pidns_ && st.st_dev == pidns_dev_;
}

void SecretBroker::on_accept(int fd) {
  auto c = std::make_unique<Conn>();
  c->broker = this;
  c->fd = base::Fd(fd);
  Conn& conn = *c;
  conns_.push_back(std::move(c));
  if (conns_.size() > kMaxConns) {
    conn.finished = true;
    conn.out = "ERR malformed_request too many connections\n";
    ++refused_;
  } else if (!peer_in_cell(fd, conn.peer_pid, conn.peer_uid)) {
    conn.refused = true;
    conn.finished = true;
    conn.out = "ERR peer_not_in_cell only the cell's own processes are served\n";
    decide("", false, "peer_not_in_cell", conn);
  } else {
    return conn.next();
  }
  conn.writing = true;
  conn.arm();
}

void SecretBroker::decide(const std::string& name, bool allowed, const char* reason,
                          const Conn& c) {
  if (allowed) ++served_;
  else ++refused_;
  o_.emit(sinks::SecretAccessData{o_.cell_id, o_.run_id, base::clip(name, 256), allowed, reason,
                                  o_.delivery, c.peer_pid, c.peer_uid});
}

std::string SecretBroker::answer(std::string_view line, const Conn& c) {
  if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
  std::string name;
  if (line.size() > 4 && line.substr(0, 4) == "GET ") name = std::string(line.substr(4));
  if (name.empty() || name.size() > 256 || !is_env_name(name)) {
    decide(name.empty() ? std::string(line.substr(0, 64)) : name, false, "malformed_request", c);
    return "ERR malformed_request expected \"GET NAME\"\n";
  }
  for (size_t i = 0; i < o_.secrets.size(); ++i) {
    if (o_.secrets[i].first != name) continue;
    if (o_.delivery == kSecretDeliveryLeased && served_once_[i]) {
      decide(name, false, "lease_consumed", c);
      return "ERR lease_consumed " + name + " was already read in this run (runtimeLeasedBroker)\n";
    }
    served_once_[i] = true;
    decide(name, true, "granted", c);
    const std::string& v = o_.secrets[i].second;
    std::string out = "OK " + std::to_string(v.size()) + "\n";
    out.reserve(out.size() + v.size() + 1);
    out += v;
    out += '\n';
    return out;
  }
  decide(name, false, "not_declared", c);
  return "ERR not_declared " + name + " is not declared by this cell's spec\n";
}

void SecretBroker::done(Conn* c) {
  if (c->in_flight) {
    // close() asked: the cancel completes it, and this runs again then.
    return;
  }
  for (auto it = conns_.begin(); it != conns_.end(); ++it) {
    if (it->get() != c) continue;
    wipe((*it)->out);
    conns_.erase(it);
    break;
  }
  maybe_idle();
}

void SecretBroker::close(const std::string& reason) {
  if (closed_) return;
  closed_ = true;
  if (acceptor_.in_flight) o_.io->cancel(acceptor_);
  else listener_.reset();
  for (auto& c : conns_)
    if (c->in_flight) o_.io->cancel(*c);
  // Gone from the host now: nothing can connect again, whatever is still in flight.
  if (dir_) {
    ::unlinkat(dir_.get(), kSocketName, 0);
    dir_.reset();
    ::rmdir(dir_path_.c_str());
  }
  sinks::SecretsRevokedData d{o_.cell_id, o_.run_id, o_.delivery, {}, served_, refused_, reason};
  for (auto& [name, value] : o_.secrets) {
    d.secret_names.push_back(name);
    wipe(value);
  }
  o_.emit(std::move(d));
  // Connections with nothing in flight go now; the rest when their cancel completes.
  for (auto it = conns_.begin(); it != conns_.end();) {
    if ((*it)->in_flight) {
      ++it;
    } else {
      wipe((*it)->out);
      it = conns_.erase(it);
    }
  }
  // The caller checks idle() itself: on_idle is only for completions that come later.
  if (idle()) idle_reported_ = true;
}

bool SecretBroker::idle() const { return closed_ && !acceptor_.in_flight && conns_.empty(); }

void SecretBroker::maybe_idle() {
  if (!idle() || idle_reported_) return;
  idle_reported_ = true;
  // A copy: the owner may destroy this broker from inside the call.
  if (auto fn = o_.on_idle) fn();
}

}  // namespace cellos::cells
