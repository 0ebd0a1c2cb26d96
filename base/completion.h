// Ready-made Completions (base/io.h), so owners do not hand-write an adapter per operation.
//
// Every operation handed to an IoPort needs a Completion that outlives it, whose owner can tell
// whether it is still in flight (an owner may be destroyed only when none is). Two shapes cover
// what the reactor does:
//
//   MemberOp<&Owner::on_x>  calls one member function of its owner: the long-lived operations
//                           (a log's write, a monitor's poll) whose handler never changes
//   Timer                   a one-shot timeout (or any one-off operation) that calls a function
//                           set when it is armed: retries, grace periods, metrics ticks
#pragma once

#include <chrono>
#include <functional>

#include "base/io.h"

namespace cellos::base {

template <auto Method>
class MemberOp;

template <class Owner, void (Owner::*Method)(int)>
class MemberOp<Method> final : public Completion {
 public:
  explicit MemberOp(Owner* owner) : owner_(owner) {}
  MemberOp(const MemberOp&) = delete;
  MemberOp& operator=(const MemberOp&) = delete;

  bool busy() const { return busy_; }
  // Marks it in flight; hand the result straight to the IoPort: `io.read(fd, buf, op.arm())`.
  MemberOp& arm() {
    busy_ = true;
    return *this;
  }
  void complete(int res) override {
    busy_ = false;
    (owner_->*Method)(res);
  }

 private:
  Owner* owner_;
  bool busy_ = false;
};

// A Completion calling whatever function it was armed with, once.
class Callback final : public Completion {
 public:
  Callback() = default;
  Callback(const Callback&) = delete;
  Callback& operator=(const Callback&) = delete;

  bool busy() const { return busy_; }
  Callback& arm(std::function<void(int)> fn) {
    fn_ = std::move(fn);
    busy_ = true;
    return *this;
  }
  void complete(int res) override {
    busy_ = false;
    // Moved out first: the function may arm this Callback again.
    auto fn = std::move(fn_);
    fn_ = nullptr;
    if (fn) fn(res);
  }

 private:
  std::function<void(int)> fn_;
  bool busy_ = false;
};

// A one-shot timer: fn(-ETIME) when the time has passed, fn(-ECANCELED) after cancel().
class Timer {
 public:
  explicit Timer(IoPort* io = nullptr) : io_(io) {}
  void bind(IoPort& io) { io_ = &io; }
  bool armed() const { return cb_.busy(); }
  // Arms the timer; it must not be armed already.
  void start(std::chrono::nanoseconds after, std::function<void(int)> fn) {
    io_->timeout(after, cb_.arm(std::move(fn)));
  }
  // Asks the kernel to cancel it; fn still runs, with -ECANCELED (or -ETIME if it was due).
  void cancel() {
    if (cb_.busy()) io_->cancel(cb_);
  }

 private:
  IoPort* io_;
  Callback cb_;
};

}  // namespace cellos::base
