// The embedders' hooks on Policy (key_validator, scope_resolver, fingerprint_strategy), a
// custom EventSink, and the admin conveniences Engine::has / Engine::flush by scope and key.

#include <gtest/gtest.h>

#include <atomic>

#include "idem/engine.hpp"
#include "idem/memory_store.hpp"
#include "unit/engine_test_support.hpp"

namespace idem {
namespace {

using testing::decide;
using testing::TestRequest;
using Action = Decision::Action;

class EngineHooksTest : public ::testing::Test {
 protected:
  void SetUp() override { build(); }

  void build() {
    store_ = make_memory_store({.clock = clock_});
    EngineOptions o;
    o.policies = policies_;
    o.store = store_;
    o.secret = std::string(32, 's');
    o.clock = clock_;
    o.events = events_;
    engine_ = Engine::create(std::move(o));
  }

  Decision must_decide(const TestRequest& r) {
    auto d = decide(*engine_, r);
    EXPECT_TRUE(d.has_value()) << "the decision callback did not run";
    return d ? std::move(*d) : Decision{};
  }

  void finish(Decision& d) {
    ASSERT_EQ(d.action, Action::proceed);
    Response r;
    r.status = 201;
    r.body = R"({"id":"ch_1"})";
    bool done = false;
    engine_->complete(std::move(*d.ticket), r, true, [&](Result<Completion> c) {
      done = true;
      EXPECT_TRUE(c && *c == Completion::stored);
    });
    EXPECT_TRUE(done);
  }

  static TestRequest charge(std::string key = "k1", std::string body = R"({"amount":100})") {
    TestRequest r;
    r.key(std::move(key)).json(std::move(body)).with("Authorization", "Bearer tok_1");
    return r;
  }

  /// Engine::has, answered inline by the memory store.
  bool has(std::string_view scope, std::string_view key, std::string_view method = "POST",
           std::string_view path = "/") {
    std::optional<Result<bool>> out;
    engine_->has(
        scope, key, [&](Result<bool> r) { out.emplace(std::move(r)); }, method, path);
    EXPECT_TRUE(out && out->has_value());
    return out && *out && **out;
  }

  bool flush(std::string_view scope, std::string_view key, std::string_view method = "POST",
             std::string_view path = "/") {
    std::optional<Result<bool>> out;
    engine_->flush(
        scope, key, [&](Result<bool> r) { out.emplace(std::move(r)); }, method, path);
    EXPECT_TRUE(out && out->has_value());
    return out && *out && **out;
  }

  PolicySet policies_;
  std::shared_ptr<ManualClock> clock_ = std::make_shared<ManualClock>();
  std::shared_ptr<testing::RecordingSink> events_ = std::make_shared<testing::RecordingSink>();
  std::shared_ptr<Store> store_;
  std::shared_ptr<Engine> engine_;
};

TEST_F(EngineHooksTest, KeyValidatorRejectsBeforeTheStoreAfterKeyFormat) {
  std::atomic<int> calls = 0;
  policies_.defaults.key_format = KeyFormat::parse("^order-[0-9]+$");
  policies_.defaults.key_validator = [&calls](std::string_view key) {
    ++calls;
    return key.size() % 2 == 0;  // stands in for a checksum digit
  };
  build();
  auto odd = must_decide(charge("order-123"));
  EXPECT_EQ(odd.outcome, Outcome::invalid_key);
  EXPECT_EQ(odd.response.status, 400);
  EXPECT_NE(odd.response.body.find("urn:idem:problem:invalid-key"), std::string::npos);
  EXPECT_EQ(calls, 1);
  // key_format is checked first: the validator never sees a key the format refuses.
  EXPECT_EQ(must_decide(charge("nope")).outcome, Outcome::invalid_key);
  EXPECT_EQ(calls, 1);
  EXPECT_EQ(store_->stats().records, 0u);
  // The validator sees the unquoted key.
  auto quoted = must_decide(charge("\"order-1234\""));
  EXPECT_EQ(quoted.action, Action::proceed);
  EXPECT_EQ(calls, 2);
}

TEST_F(EngineHooksTest, KeyValidatorIsPerRoute) {
  Route open;
  open.path = PathPattern("/open");
  policies_.routes = {open};
  policies_.defaults.key_validator = [](std::string_view) { return false; };
  build();
  EXPECT_EQ(must_decide(charge()).outcome, Outcome::invalid_key);
  auto r = charge();
  r.target = "/open";
  EXPECT_EQ(must_decide(r).action, Action::proceed);
}

TEST_F(EngineHooksTest, ScopeResolverPartitionsRecordsByItsValue) {
  policies_.defaults.scope_resolver = [](const RequestView& r) {
    return std::string(r.header("X-Tenant").value_or("public"));
  };
  build();
  auto t1 = charge();
  t1.with("X-Tenant", "t1");
  auto first = must_decide(t1);
  finish(first);
  // Same tenant, another Authorization: the resolver, not identity, decides.
  auto same_tenant = charge();
  same_tenant.headers.pop_back();
  same_tenant.with("Authorization", "Bearer tok_2").with("X-Tenant", "t1");
  EXPECT_EQ(must_decide(same_tenant).outcome, Outcome::replayed);
  auto other_tenant = charge();
  other_tenant.with("X-Tenant", "t2");
  EXPECT_EQ(must_decide(other_tenant).action, Action::proceed);
  // The resolved value names the record for the admin API.
  EXPECT_TRUE(has("t1", "k1"));
  EXPECT_FALSE(has("public", "k1"));
}

TEST_F(EngineHooksTest, ResolvedScopesNeverMeetBuiltInScopes) {
  // A resolver returning exactly the identity value must still name other records than
  // the identity scope does.
  auto identity = must_decide(charge());
  ASSERT_EQ(identity.action, Action::proceed);
  RecordId by_identity = engine_->record_id("Bearer tok_1", "k1");
  EXPECT_EQ(identity.ticket->record(), by_identity);

  policies_.defaults.scope_resolver = [](const RequestView& r) {
    return std::string(r.header("Authorization").value_or(""));
  };
  build();
  auto resolved = must_decide(charge());
  ASSERT_EQ(resolved.action, Action::proceed);
  EXPECT_NE(resolved.ticket->record(), by_identity);
  EXPECT_EQ(resolved.ticket->record(), engine_->record_id("Bearer tok_1", "k1"));
}

/// Fingerprints the method and path only, e.g. for an API whose bodies carry a fresh
/// signature on every retry.
class PathOnlyFingerprint final : public FingerprintStrategy {
 public:
  Digest fingerprint(const RequestView& request) const override {
    ++calls;
    std::string text = std::string(request.method) + ' ' + std::string(request.path());
    std::array<std::uint8_t, 16> bytes{};
    for (std::size_t i = 0; i < text.size(); ++i) bytes[i % bytes.size()] ^= text[i];
    return Digest(bytes);
  }
  mutable std::atomic<int> calls = 0;
};

TEST_F(EngineHooksTest, FingerprintStrategyReplacesTheBuiltInFingerprint) {
  auto strategy = std::make_shared<PathOnlyFingerprint>();
  policies_.defaults.fingerprint_strategy = strategy;
  build();
  auto first = must_decide(charge("k1", R"({"amount":100,"sig":"a"})"));
  finish(first);
  EXPECT_EQ(must_decide(charge("k1", R"({"amount":100,"sig":"b"})")).outcome, Outcome::replayed);
  auto elsewhere = charge();
  elsewhere.target = "/refunds";
  EXPECT_EQ(must_decide(elsewhere).outcome, Outcome::mismatch);
  EXPECT_EQ(strategy->calls, 3);
}

TEST_F(EngineHooksTest, WithoutAStrategyTheBodyStillCounts) {
  auto first = must_decide(charge("k1", R"({"amount":100,"sig":"a"})"));
  finish(first);
  EXPECT_EQ(must_decide(charge("k1", R"({"amount":100,"sig":"b"})")).outcome, Outcome::mismatch);
}

/// An application's own sink: counts what it is told, as a metrics client would.
class CountingSink final : public EventSink {
 public:
  void publish(const Event& event) noexcept override {
    if (event.kind == EventKind::mismatch) ++mismatches;
    if (event.kind == EventKind::conflict) ++conflicts;
  }
  std::atomic<int> mismatches = 0;
  std::atomic<int> conflicts = 0;
};

TEST_F(EngineHooksTest, CustomEventSinkHearsMismatchesAndConflicts) {
  auto sink = std::make_shared<CountingSink>();
  EngineOptions o;
  o.policies = policies_;
  o.store = make_memory_store({.clock = clock_});
  o.secret = std::string(32, 's');
  o.clock = clock_;
  o.events = sink;
  auto engine = Engine::create(std::move(o));
  auto first = decide(*engine, charge());
  ASSERT_TRUE(first && first->action == Action::proceed);
  EXPECT_EQ(decide(*engine, charge())->outcome, Outcome::conflict);
  EXPECT_EQ(decide(*engine, charge("k1", "{}"))->outcome, Outcome::mismatch);
  EXPECT_EQ(sink->conflicts, 1);
  EXPECT_EQ(sink->mismatches, 1);
}

TEST_F(EngineHooksTest, HasSeesInFlightAndCompletedRecordsAndFlushRemovesThem) {
  EXPECT_FALSE(has("Bearer tok_1", "k1"));
  auto first = must_decide(charge());
  EXPECT_TRUE(has("Bearer tok_1", "k1"));
  EXPECT_FALSE(has("Bearer tok_2", "k1"));  // another scope
  finish(first);
  EXPECT_TRUE(has("Bearer tok_1", "k1"));
  EXPECT_EQ(must_decide(charge()).outcome, Outcome::replayed);

  EXPECT_FALSE(flush("Bearer tok_2", "k1"));
  EXPECT_TRUE(flush("Bearer tok_1", "k1"));
  EXPECT_FALSE(has("Bearer tok_1", "k1"));
  EXPECT_FALSE(flush("Bearer tok_1", "k1"));
  // Flushed: the same key executes afresh, even with another body.
  EXPECT_EQ(must_decide(charge("k1", R"({"amount":5})")).action, Action::proceed);
}

TEST_F(EngineHooksTest, HasAndFlushFollowRoutesForRouteScopes) {
  Route payments;
  payments.path = PathPattern("/payments");
  payments.policy.scope = ScopeRule::parse("identity+route");
  policies_.routes = {payments};
  build();
  auto first = must_decide(charge());
  finish(first);
  EXPECT_FALSE(has("Bearer tok_1", "k1"));  // the defaults' route is not /payments
  EXPECT_TRUE(has("Bearer tok_1", "k1", "POST", "/payments"));
  EXPECT_TRUE(flush("Bearer tok_1", "k1", "POST", "/payments"));
  EXPECT_EQ(must_decide(charge()).action, Action::proceed);
}

TEST_F(EngineHooksTest, HasIsFalseOnceTheTtlPassed) {
  auto first = must_decide(charge());
  finish(first);
  clock_->advance(std::chrono::hours(25));  // past the ttl: the record is gone
  EXPECT_FALSE(has("Bearer tok_1", "k1"));
}

}  // namespace
}  // namespace idem
