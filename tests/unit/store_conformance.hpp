#pragma once

// The store conformance suite: what every Store (memory, LMDB, Redis) must do, written
// once. A backend joins it with one line in its own test file:
//
//   INSTANTIATE_TEST_SUITE_P(Memory, StoreConformanceTest,
//                            ::testing::Values(idem::testing::StoreFactory{
//                                "memory", [](std::shared_ptr<idem::ManualClock> clock) {
//                                  return idem::make_memory_store({.clock = clock});
//                                }}),
//                            idem::testing::StoreFactory::name_of);
//
// The tests themselves live in store_conformance_test.cpp, compiled once per binary (a
// header holding TEST_P bodies could not be included by two backends' test files). Time is
// the ManualClock handed to the factory: a store must take expiry from it, so no test
// sleeps. Every call goes through await(), so stores that answer on their own threads use
// the suite unchanged.

#include <gtest/gtest.h>

#include <array>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

#include "idem/clock.hpp"
#include "idem/digest.hpp"
#include "idem/store.hpp"

namespace idem::testing {

/// Builds a fresh, empty store that takes its time from `clock`.
struct StoreFactory {
  std::string name;
  std::function<std::shared_ptr<Store>(std::shared_ptr<ManualClock> clock)> make;

  /// For the last argument of INSTANTIATE_TEST_SUITE_P.
  static std::string name_of(const ::testing::TestParamInfo<StoreFactory>& info) {
    return info.param.name;
  }
};

/// How long a store may take to call back before a test fails instead of hanging.
inline constexpr std::chrono::seconds kCallbackTimeout{10};

/// Runs `op` with a callback and waits (bounded) for it to be called, on whatever thread.
/// Returns nullopt on timeout. The callback stays valid after a timeout.
template <class T, class Op>
std::optional<Result<T>> await(Op&& op, std::chrono::milliseconds timeout = kCallbackTimeout) {
  struct Slot {
    std::mutex mutex;
    std::condition_variable cv;
    std::optional<Result<T>> result;
  };
  auto slot = std::make_shared<Slot>();
  op([slot](Result<T> r) {
    std::lock_guard lock(slot->mutex);
    slot->result.emplace(std::move(r));
    slot->cv.notify_all();
  });
  std::unique_lock lock(slot->mutex);
  slot->cv.wait_for(lock, timeout, [&] { return slot->result.has_value(); });
  return std::move(slot->result);
}

/// Counts the calls of a watch callback and lets a test wait for them.
class CallCounter {
 public:
  std::function<void()> callback() {
    return [state = state_] {
      std::lock_guard lock(state->mutex);
      ++state->calls;
      state->cv.notify_all();
    };
  }
  /// Waits (bounded) until at least `n` calls happened; returns the count.
  int wait_for(int n, std::chrono::milliseconds timeout = kCallbackTimeout) const {
    std::unique_lock lock(state_->mutex);
    state_->cv.wait_for(lock, timeout, [&] { return state_->calls >= n; });
    return state_->calls;
  }
  int calls() const {
    std::lock_guard lock(state_->mutex);
    return state_->calls;
  }

 private:
  struct State {
    std::mutex mutex;
    std::condition_variable cv;
    int calls = 0;
  };
  std::shared_ptr<State> state_ = std::make_shared<State>();
};

/// A 32-byte digest named by a short string: distinct names give distinct digests.
inline Digest digest_of(std::string_view name, std::uint8_t salt = 0) {
  std::array<std::uint8_t, 32> bytes{};
  bytes[0] = salt;
  for (std::size_t i = 0; i < name.size() && i + 1 < bytes.size(); ++i) {
    bytes[i + 1] = static_cast<std::uint8_t>(name[i]);
  }
  return Digest(bytes);
}

/// The fixture: a fresh store and clock per test, and one synchronous helper per operation.
/// Helpers fail the test (and return an error value) when the store does not answer.
class StoreConformanceTest : public ::testing::TestWithParam<StoreFactory> {
 protected:
  void SetUp() override {
    clock_ = std::make_shared<ManualClock>();
    store_ = GetParam().make(clock_);
    ASSERT_NE(store_, nullptr);
  }

  static RecordId id(std::string_view name) { return digest_of(name, 0x1d); }
  static Digest fingerprint(std::string_view name) { return digest_of(name, 0xf9); }

  static ClaimRequest request(std::string_view key, std::string_view fp = "fp",
                              Duration lease = std::chrono::seconds(30),
                              Duration ttl = std::chrono::hours(24), bool take_over = true) {
    ClaimRequest r;
    r.id = id(key);
    r.fingerprint = fingerprint(fp);
    r.owner = "gw-1";
    r.lease = lease;
    r.ttl = ttl;
    r.take_over_expired = take_over;
    return r;
  }

  static StoredResponse response(int status = 201, std::string body = "{\"id\":1}") {
    StoredResponse r;
    r.status = status;
    r.headers = {{"Content-Type", "application/json"}, {"X-Request-Id", "abc"}};
    r.body = std::move(body);
    return r;
  }

  Result<ClaimOutcome> claim(ClaimRequest r) {
    return unwrap(await<ClaimOutcome>([&](auto cb) { store_->claim(std::move(r), cb); }));
  }
  /// Claims and expects to acquire; returns the fencing token (0 on failure).
  std::uint64_t acquire(ClaimRequest r) {
    auto out = claim(std::move(r));
    EXPECT_TRUE(out.has_value()) << (out ? "" : out.error().message);
    if (!out) return 0;
    EXPECT_TRUE(out->acquired);
    return out->acquired ? out->fencing_token : 0;
  }
  Result<TokenCheck> complete(std::string_view key, std::uint64_t token,
                              StoredResponse r = response(),
                              Duration ttl = std::chrono::hours(24)) {
    return unwrap(await<TokenCheck>(
        [&](auto cb) { store_->complete(id(key), token, std::move(r), ttl, cb); }));
  }
  Result<TokenCheck> release(std::string_view key, std::uint64_t token) {
    return unwrap(await<TokenCheck>([&](auto cb) { store_->release(id(key), token, cb); }));
  }
  Result<TokenCheck> renew(std::string_view key, std::uint64_t token, Duration lease) {
    return unwrap(await<TokenCheck>([&](auto cb) { store_->renew(id(key), token, lease, cb); }));
  }
  Result<std::optional<Record>> get(std::string_view key) {
    return unwrap(await<std::optional<Record>>([&](auto cb) { store_->get(id(key), cb); }));
  }
  Result<bool> erase(std::string_view key) {
    return unwrap(await<bool>([&](auto cb) { store_->erase(id(key), cb); }));
  }

  std::shared_ptr<ManualClock> clock_;
  std::shared_ptr<Store> store_;

 private:
  template <class T>
  static Result<T> unwrap(std::optional<Result<T>> r) {
    if (r) return std::move(*r);
    ADD_FAILURE() << "the store did not call back within " << kCallbackTimeout.count() << " s";
    return Error{Errc::timeout, "no callback"};
  }
};

}  // namespace idem::testing
