// Result<T> and Error: how every layer below the CLI reports failure.
//
// C++20 has no std::expected, and exceptions are reserved for startup configuration, so the hot
// path returns Result<T>. An Error names the call that failed, the object it was applied to and
// the errno, so a message reads like `mkdirat(cgroup "cellos/h1/build-42"): File exists`.
#pragma once

#include <cerrno>
#include <string>
#include <string_view>
#include <utility>
#include <variant>

namespace cellos::base {

struct Error {
  int err = 0;           // errno, or 0 when the failure is not a syscall's (a bad value)
  std::string call;      // "mkdirat", "clone3", "spec.run.argv", ...
  std::string object;    // what the call was applied to, already quoted as the reader needs it
  std::string detail;    // free text when errno alone does not say why

  // One line, never containing secret values: callers put only names and paths in here.
  std::string message() const;

  // Prefix context on the way up: Error{...}.context("cell build-42") reads
  // "cell build-42: mkdirat(...): ...". Keeps the errno of the innermost failure.
  Error context(std::string_view what) &&;

  std::string prefix;  // context accumulated on the way up
};

// A syscall error from the current errno.
Error sys_error(std::string call, std::string object, int err = errno);
// A validation or protocol error that has no errno.
Error value_error(std::string where, std::string detail);

template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}            // NOLINT: implicit on purpose
  Result(Error error) : v_(std::move(error)) {}         // NOLINT

  bool ok() const { return v_.index() == 0; }
  explicit operator bool() const { return ok(); }

  T& value() & { return std::get<0>(v_); }
  T&& value() && { return std::get<0>(std::move(v_)); }
  const T& value() const& { return std::get<0>(v_); }
  T* operator->() { return &std::get<0>(v_); }
  const T* operator->() const { return &std::get<0>(v_); }
  T& operator*() & { return std::get<0>(v_); }
  const T& operator*() const& { return std::get<0>(v_); }

  const Error& error() const& { return std::get<1>(v_); }
  Error&& error() && { return std::get<1>(std::move(v_)); }

 private:
  std::variant<T, Error> v_;
};

template <>
class [[nodiscard]] Result<void> {
 public:
  Result() = default;
  Result(Error error) : err_(std::move(error)), ok_(false) {}  // NOLINT

  bool ok() const { return ok_; }
  explicit operator bool() const { return ok_; }
  const Error& error() const& { return err_; }
  Error&& error() && { return std::move(err_); }

 private:
  Error err_;
  bool ok_ = true;
};

inline Result<void> ok() { return {}; }

}  // namespace cellos::base

// Propagate an error from an expression returning Result<...>; evaluates to nothing.
#define CELLOS_TRY(expr)                                    \
  do {                                                      \
    auto cellos_try_r_ = (expr);                            \
    if (!cellos_try_r_.ok()) return std::move(cellos_try_r_).error(); \
  } while (0)
