#include "idem/engine.hpp"

#include <gtest/gtest.h>

#include "idem/memory_store.hpp"
#include "unit/engine_test_support.hpp"

namespace idem {
namespace {

using testing::decide;
using testing::header_of;
using testing::TestRequest;
using Action = Decision::Action;
using namespace std::chrono_literals;

class EngineTest : public ::testing::Test {
 protected:
  void SetUp() override { rebuild(); }

  void rebuild() {
    store_ = make_memory_store({.clock = clock_});
    build_engine();
  }
  void build_engine() {
    EngineOptions o;
    o.policies = policies_;
    o.store = store_;
    o.secret = std::string(32, 'x');
    o.clock = clock_;
    o.events = events_;
    o.scheduler = scheduler_;
    o.instance_id = "test-gateway";
    engine_ = Engine::create(std::move(o));
  }
  Policy& defaults() { return policies_.defaults; }

  Decision must_decide(const TestRequest& r) {
    auto d = decide(*engine_, r);
    EXPECT_TRUE(d.has_value()) << "the decision callback did not run";
    return d ? std::move(*d) : Decision{};
  }

  Completion finish(Decision& d, Response response, bool body_complete = true) {
    EXPECT_EQ(d.action, Action::proceed);
    std::optional<Result<Completion>> out;
    engine_->complete(std::move(*d.ticket), response, body_complete,
                      [&](Result<Completion> r) { out.emplace(std::move(r)); });
    EXPECT_TRUE(out && out->has_value());
    return out && *out ? **out : Completion::lease_lost;
  }

  static Response created(std::string body = R"({"id":"ch_1"})") {
    Response r;
    r.status = 201;
    r.headers = {{"Content-Type", "application/json"}, {"Location", "/payments/ch_1"},
                 {"Set-Cookie", "session=1"},          {"Date", "Mon, 01 Jan 2024 00:00:00 GMT"},
                 {"Connection", "keep-alive, X-Hop"},  {"X-Hop", "1"},
                 {"Transfer-Encoding", "chunked"},     {"Content-Length", "13"}};
    r.body = std::move(body);
    return r;
  }

  static std::string problem_type(const Decision& d) {
    auto pos = d.response.body.find("\"type\":\"");
    if (pos == std::string::npos) return {};
    auto start = pos + 8;
    return d.response.body.substr(start, d.response.body.find('"', start) - start);
  }

  TestRequest charge(std::string key = "k1", std::string body = R"({"amount":100})") {
    TestRequest r;
    r.key(std::move(key)).json(std::move(body)).with("Authorization", "Bearer tok_1");
    return r;
  }

  PolicySet policies_;
  std::shared_ptr<ManualClock> clock_ = std::make_shared<ManualClock>();
  std::shared_ptr<testing::ManualScheduler> scheduler_ =
      std::make_shared<testing::ManualScheduler>();
  std::shared_ptr<testing::RecordingSink> events_ = std::make_shared<testing::RecordingSink>();
  std::shared_ptr<Store> store_;
  std::shared_ptr<Engine> engine_;
};

TEST_F(EngineTest, UncoveredMethodsPassThroughEvenWithAKey) {
  for (auto method : {"GET", "PUT", "DELETE", "HEAD", "OPTIONS"}) {
    auto r = charge();
    r.method = method;
    auto d = must_decide(r);
    EXPECT_EQ(d.action, Action::pass_through) << method;
    EXPECT_EQ(d.outcome, Outcome::passthrough);
  }
}

TEST_F(EngineTest, MethodsSettingChoosesCoveredMethods) {
  defaults().methods = {"PUT"};
  build_engine();
  auto r = charge();
  EXPECT_EQ(must_decide(r).action, Action::pass_through);
  r.method = "PUT";
  EXPECT_EQ(must_decide(r).action, Action::proceed);
}

TEST_F(EngineTest, NoKeyPassesThroughUnlessRequired) {
  TestRequest r;
  r.json("{}");
  EXPECT_EQ(must_decide(r).action, Action::pass_through);
  defaults().require_key = true;
  build_engine();
  auto d = must_decide(r);
  EXPECT_EQ(d.action, Action::respond);
  EXPECT_EQ(d.outcome, Outcome::missing_key);
  EXPECT_EQ(d.response.status, 400);
  EXPECT_EQ(problem_type(d), "urn:idem:problem:missing-key");
}

TEST_F(EngineTest, InvalidKeysAreRejectedBeforeTheStore) {
  for (std::string bad :
       {std::string("a b"), std::string(256, 'k'), std::string("\"unterminated")}) {
    auto d = must_decide(charge(bad));
    EXPECT_EQ(d.response.status, 400) << bad;
    EXPECT_EQ(d.outcome, Outcome::invalid_key);
    EXPECT_EQ(problem_type(d), "urn:idem:problem:invalid-key");
  }
  auto two = charge("k1");
  two.key("k1");
  EXPECT_EQ(must_decide(two).outcome, Outcome::invalid_key);
  defaults().key_format = KeyFormat::parse("uuid");
  build_engine();
  EXPECT_EQ(must_decide(charge("not-a-uuid")).outcome, Outcome::invalid_key);
  EXPECT_EQ(store_->stats().records, 0u);
  auto valid = must_decide(charge("123e4567-e89b-12d3-a456-426614174000"));
  EXPECT_EQ(valid.action, Action::proceed);
  EXPECT_EQ(store_->stats().records, 1u);
}

TEST_F(EngineTest, BodyOverTheLimitIs413) {
  defaults().max_request_bytes = 8;
  build_engine();
  auto d = must_decide(charge("k1", R"({"amount":1000})"));
  EXPECT_EQ(d.response.status, 413);
  EXPECT_EQ(d.outcome, Outcome::too_large);
  EXPECT_EQ(problem_type(d), "urn:idem:problem:body-too-large");
}

TEST_F(EngineTest, FirstRequestProceedsAndItsRetryIsReplayed) {
  auto first = must_decide(charge());
  ASSERT_EQ(first.action, Action::proceed);
  EXPECT_EQ(first.outcome, Outcome::original);
  EXPECT_EQ(finish(first, created()), Completion::stored);

  auto retry = must_decide(charge("k1", R"({ "amount" : 100.0 })"));
  ASSERT_EQ(retry.action, Action::respond);
  EXPECT_EQ(retry.outcome, Outcome::replayed);
  EXPECT_EQ(retry.response.status, 201);
  EXPECT_EQ(retry.response.body, R"({"id":"ch_1"})");
  EXPECT_EQ(header_of(retry.response, "Idempotent-Replayed"), "true");
  int marks = 0;  // the upstream's own replay header is not stored: exactly one mark
  for (const auto& h : retry.response.headers) marks += iequals(h.first, "Idempotent-Replayed");
  EXPECT_EQ(marks, 1);
  EXPECT_EQ(header_of(retry.response, "Location"), "/payments/ch_1");
  EXPECT_EQ(header_of(retry.response, "Content-Type"), "application/json");
  // Hop-by-hop headers, the ones Connection names, Date, framing and Set-Cookie are not replayed.
  for (auto gone :
       {"Set-Cookie", "Date", "Connection", "X-Hop", "Transfer-Encoding", "Content-Length"}) {
    EXPECT_EQ(header_of(retry.response, gone), "") << gone;
  }
}

TEST_F(EngineTest, ReplayHeaderAndExcludedHeadersAreSettings) {
  defaults().replay_header = "X-Replayed";
  defaults().header = "X-Request-Key";
  defaults().replay_exclude_headers = {"location"};
  build_engine();
  TestRequest r;
  r.with("X-Request-Key", "k").json("{}");
  auto first = must_decide(r);
  finish(first, created());
  auto retry = must_decide(r);
  EXPECT_EQ(header_of(retry.response, "X-Replayed"), "true");
  EXPECT_EQ(header_of(retry.response, "Idempotent-Replayed"), "");
  EXPECT_EQ(header_of(retry.response, "Location"), "");
  EXPECT_EQ(header_of(retry.response, "Set-Cookie"), "session=1");  // the list was replaced
}

TEST_F(EngineTest, SameKeyDifferentRequestIs422EvenWhileInFlight) {
  auto first = must_decide(charge());
  auto in_flight = must_decide(charge("k1", R"({"amount":200})"));
  EXPECT_EQ(in_flight.response.status, 422);
  EXPECT_EQ(in_flight.outcome, Outcome::mismatch);
  EXPECT_EQ(problem_type(in_flight), "urn:idem:problem:key-reused");
  finish(first, created());
  auto other_path = charge();
  other_path.target = "/refunds";
  EXPECT_EQ(must_decide(other_path).response.status, 422);
  auto other_query = charge();
  other_query.target = "/payments?x=1";
  EXPECT_EQ(must_decide(other_query).response.status, 422);
  EXPECT_GE(events_->count(EventKind::mismatch), 1u);
}

TEST_F(EngineTest, NoProblemEchoesTheBodyOrTheStoredResponse) {
  auto first = must_decide(charge("k1", R"({"card":"4242424242424242"})"));
  finish(first, created(R"({"secret":"ch_secret"})"));
  auto d = must_decide(charge("k1", R"({"card":"5555555555554444"})"));
  EXPECT_EQ(d.response.body.find("4242"), std::string::npos);
  EXPECT_EQ(d.response.body.find("5555"), std::string::npos);
  EXPECT_EQ(d.response.body.find("ch_secret"), std::string::npos);
}

TEST_F(EngineTest, OnDuplicateRejectAnswers409WithoutReplay) {
  defaults().on_duplicate = OnDuplicate::reject;
  build_engine();
  auto first = must_decide(charge());
  finish(first, created());
  auto d = must_decide(charge());
  EXPECT_EQ(d.response.status, 409);
  EXPECT_EQ(d.outcome, Outcome::duplicate);
  EXPECT_EQ(problem_type(d), "urn:idem:problem:duplicate-request");
  EXPECT_EQ(header_of(d.response, "Idempotent-Replayed"), "");
  EXPECT_EQ(header_of(d.response, "Retry-After"), "");
}

TEST_F(EngineTest, DuplicateWhileInFlightIs409WithRetryAfter) {
  auto first = must_decide(charge());
  auto d = must_decide(charge());
  EXPECT_EQ(d.response.status, 409);
  EXPECT_EQ(d.outcome, Outcome::conflict);
  EXPECT_EQ(problem_type(d), "urn:idem:problem:request-in-flight");
  EXPECT_FALSE(header_of(d.response, "Retry-After").empty());
  EXPECT_EQ(events_->count(EventKind::conflict), 1u);
}

TEST_F(EngineTest, WaitingDuplicateGetsTheReplayWhenTheFirstCompletes) {
  defaults().concurrency = Concurrency::wait;
  build_engine();
  auto first = must_decide(charge());
  std::optional<Decision> waiter;
  charge().visit(
      [&](const RequestView& v) { engine_->begin(v, [&](Decision d) { waiter = std::move(d); }); });
  EXPECT_FALSE(waiter.has_value());
  finish(first, created());
  // Woken by the store's notification, not by a timer.
  ASSERT_TRUE(waiter.has_value());
  EXPECT_EQ(waiter->outcome, Outcome::replayed);
  EXPECT_EQ(waiter->response.status, 201);
  EXPECT_EQ(scheduler_->pending(), 0u);
}

TEST_F(EngineTest, WaitingDuplicateGets409AtTheDeadline) {
  defaults().concurrency = Concurrency::wait;
  defaults().wait_timeout = 2s;
  build_engine();
  auto first = must_decide(charge());
  std::optional<Decision> waiter;
  charge().visit(
      [&](const RequestView& v) { engine_->begin(v, [&](Decision d) { waiter = std::move(d); }); });
  scheduler_->fire_all();  // a fallback re-check before the deadline keeps waiting
  EXPECT_FALSE(waiter.has_value());
  clock_->advance(2s);
  scheduler_->fire_all();
  ASSERT_TRUE(waiter.has_value());
  EXPECT_EQ(waiter->response.status, 409);
  EXPECT_EQ(problem_type(*waiter), "urn:idem:problem:request-in-flight");
}

TEST_F(EngineTest, WaitingDuplicateExecutesWhenTheFirstIsNotStored) {
  defaults().concurrency = Concurrency::wait;
  build_engine();
  auto first = must_decide(charge());
  std::optional<Decision> waiter;
  charge().visit(
      [&](const RequestView& v) { engine_->begin(v, [&](Decision d) { waiter = std::move(d); }); });
  Response failed;
  failed.status = 503;
  EXPECT_EQ(finish(first, failed), Completion::released);
  ASSERT_TRUE(waiter.has_value());
  EXPECT_EQ(waiter->action, Action::proceed);
}

TEST_F(EngineTest, OnlyStoreStatusResponsesAreStored) {
  for (int status : {500, 502, 503, 408, 409, 425, 429}) {
    std::string key = "s" + std::to_string(status);
    auto first = must_decide(charge(key));
    Response r;
    r.status = status;
    EXPECT_EQ(finish(first, r), Completion::released) << status;
    EXPECT_EQ(must_decide(charge(key)).action, Action::proceed) << status;
  }
  for (int status : {200, 204, 302, 400, 404, 422}) {
    std::string key = "s" + std::to_string(status);
    auto first = must_decide(charge(key));
    Response r;
    r.status = status;
    EXPECT_EQ(finish(first, r), Completion::stored) << status;
    auto retry = must_decide(charge(key));
    EXPECT_EQ(retry.outcome, Outcome::replayed);
    EXPECT_EQ(retry.response.status, status);
  }
  defaults().store_status = StatusSet::parse("2xx");
  build_engine();
  auto first = must_decide(charge("custom"));
  Response r;
  r.status = 404;
  EXPECT_EQ(finish(first, r), Completion::released);
}

TEST_F(EngineTest, OversizeResponseIsNeverRunAgainAndReplaysAs502) {
  defaults().max_response_bytes = 4;
  build_engine();
  auto first = must_decide(charge());
  EXPECT_EQ(finish(first, created("0123456789")), Completion::not_stored);
  auto retry = must_decide(charge());
  EXPECT_EQ(retry.response.status, 502);
  EXPECT_EQ(retry.outcome, Outcome::not_stored);
  EXPECT_EQ(problem_type(retry), "urn:idem:problem:response-not-stored");
  EXPECT_NE(retry.response.body.find("\"original_status\":201"), std::string::npos);
  EXPECT_EQ(events_->count(EventKind::oversize_response), 1u);
  // A body the adapter could not capture whole counts as oversize too.
  auto other = must_decide(charge("k2"));
  EXPECT_EQ(finish(other, created("ok"), false), Completion::not_stored);
}

TEST_F(EngineTest, AfterTheTtlTheSameKeyExecutesAfresh) {
  defaults().ttl = 60s;
  build_engine();
  auto first = must_decide(charge());
  finish(first, created());
  clock_->advance(59s);
  EXPECT_EQ(must_decide(charge()).outcome, Outcome::replayed);
  clock_->advance(2s);
  EXPECT_EQ(must_decide(charge()).action, Action::proceed);
}

TEST_F(EngineTest, ExpiredLeaseIsTakenOverAndTheStaleCompletionIsDiscarded) {
  auto first = must_decide(charge());
  clock_->advance(31s);
  auto second = must_decide(charge());
  ASSERT_EQ(second.action, Action::proceed);
  EXPECT_GT(second.ticket->fencing_token(), first.ticket->fencing_token());
  EXPECT_EQ(events_->count(EventKind::lease_taken_over), 1u);
  // The first attempt finally answers: its token is stale, nothing is written.
  EXPECT_EQ(finish(first, created(R"({"id":"old"})")), Completion::lease_lost);
  EXPECT_EQ(events_->count(EventKind::lease_lost), 1u);
  EXPECT_EQ(must_decide(charge()).outcome, Outcome::conflict);  // second still in flight
  EXPECT_EQ(finish(second, created(R"({"id":"new"})")), Completion::stored);
  EXPECT_EQ(must_decide(charge()).response.body, R"({"id":"new"})");
}

TEST_F(EngineTest, ExpiredLeaseWithFailAnswersOutcomeUnknownUntilFlushed) {
  defaults().on_expired_lease = OnExpiredLease::fail;
  build_engine();
  auto first = must_decide(charge());
  clock_->advance(31s);
  auto d = must_decide(charge());
  EXPECT_EQ(d.response.status, 409);
  EXPECT_EQ(problem_type(d), "urn:idem:problem:outcome-unknown");
  EXPECT_EQ(events_->count(EventKind::outcome_unknown), 1u);
  std::optional<bool> flushed;
  engine_->flush(engine_->record_id("Bearer tok_1", "k1"),
                 [&](Result<bool> r) { flushed = r && *r; });
  EXPECT_EQ(flushed, true);
  EXPECT_EQ(must_decide(charge()).action, Action::proceed);
}

TEST_F(EngineTest, RenewalKeepsASlowRequestExclusive) {
  auto first = must_decide(charge());
  EXPECT_EQ(first.ticket->renew_interval(), 10s);
  for (int i = 0; i < 5; ++i) {
    clock_->advance(20s);
    std::optional<TokenCheck> renewed;
    engine_->renew(*first.ticket, [&](Result<TokenCheck> r) { renewed = *r; });
    EXPECT_EQ(renewed, TokenCheck::ok);
  }
  EXPECT_EQ(must_decide(charge()).outcome, Outcome::conflict);  // 100 s later, still held
  EXPECT_EQ(finish(first, created()), Completion::stored);
}

TEST_F(EngineTest, RenewalAfterTakeOverReportsStale) {
  auto first = must_decide(charge());
  clock_->advance(31s);
  auto second = must_decide(charge());
  std::optional<TokenCheck> renewed;
  engine_->renew(*first.ticket, [&](Result<TokenCheck> r) { renewed = *r; });
  EXPECT_EQ(renewed, TokenCheck::stale);
}

TEST_F(EngineTest, AbandonAndDroppedTicketsRemoveTheRecord) {
  auto first = must_decide(charge());
  engine_->abandon(std::move(*first.ticket));
  auto again = must_decide(charge());
  ASSERT_EQ(again.action, Action::proceed);
  again.ticket.reset();  // e.g. an adapter's handler threw
  EXPECT_EQ(must_decide(charge()).action, Action::proceed);
}

TEST_F(EngineTest, ScopesKeepIdentitiesApart) {
  auto a = must_decide(charge());
  finish(a, created());
  auto other = charge();
  other.headers.pop_back();
  other.with("Authorization", "Bearer tok_2");
  EXPECT_EQ(must_decide(other).action, Action::proceed);
  auto anon = charge();
  anon.headers.pop_back();
  EXPECT_EQ(must_decide(anon).action, Action::proceed);
  auto api_key = charge();
  api_key.headers.pop_back();
  api_key.with("X-Api-Key", "key_1");
  EXPECT_EQ(must_decide(api_key).action, Action::proceed);
  auto both = api_key;
  both.with("Authorization", "Bearer tok_1");
  EXPECT_EQ(must_decide(both).action, Action::proceed);
}

TEST_F(EngineTest, GlobalScopeSharesAcrossIdentities) {
  defaults().scope = ScopeRule::parse("global");
  build_engine();
  auto a = must_decide(charge());
  finish(a, created());
  auto other = charge();
  other.headers.pop_back();
  other.with("Authorization", "Bearer tok_2");
  EXPECT_EQ(must_decide(other).outcome, Outcome::replayed);
}

TEST_F(EngineTest, RouteRulesOverrideAndSwitchOff) {
  Route off;
  off.path = PathPattern("/webhooks/**");
  off.policy.enabled = false;
  Route strict;
  strict.path = PathPattern("/payments");
  strict.policy.require_key = true;
  policies_.routes = {off, strict};
  build_engine();
  auto hook = charge();
  hook.target = "/webhooks/stripe";
  EXPECT_EQ(must_decide(hook).action, Action::pass_through);
  TestRequest no_key;
  no_key.json("{}");
  EXPECT_EQ(must_decide(no_key).outcome, Outcome::missing_key);
  no_key.target = "/other";
  EXPECT_EQ(must_decide(no_key).action, Action::pass_through);
}

TEST_F(EngineTest, FingerprintIgnoreIsPerRoute) {
  defaults().fingerprint.ignore = {"/timestamp"};
  build_engine();
  auto first = must_decide(charge("k1", R"({"amount":1,"timestamp":1})"));
  finish(first, created());
  EXPECT_EQ(must_decide(charge("k1", R"({"timestamp":2,"amount":1})")).outcome, Outcome::replayed);
  EXPECT_EQ(must_decide(charge("k1", R"({"timestamp":2,"amount":2})")).outcome, Outcome::mismatch);
}

TEST_F(EngineTest, AdminRecordIdNamesTheRequestsRecord) {
  auto first = must_decide(charge());
  EXPECT_EQ(engine_->record_id("Bearer tok_1", "k1"), first.ticket->record());
  EXPECT_NE(engine_->record_id("", "k1"), first.ticket->record());
  std::optional<std::optional<Record>> found;
  engine_->lookup(first.ticket->record(), [&](Result<std::optional<Record>> r) { found = *r; });
  ASSERT_TRUE(found && *found);
  EXPECT_EQ((*found)->state, RecordState::in_flight);
  // The instance, and the attempt: 16 hex digits.
  EXPECT_EQ((*found)->lease_owner.substr(0, 13), "test-gateway/");
  EXPECT_EQ((*found)->lease_owner.size(), 13u + 16u);
}

/// A store whose every operation fails, as an unreachable server's would.
class UnreachableStore final : public Store {
 public:
  Error down() const { return Error{Errc::store_unavailable, "connection refused"}; }
  void claim(ClaimRequest, Callback<ClaimOutcome> done) override { done(down()); }
  void complete(const RecordId&, std::uint64_t, StoredResponse, Duration,
                Callback<TokenCheck> done) override {
    done(down());
  }
  void release(const RecordId&, std::uint64_t, Callback<TokenCheck> done) override { done(down()); }
  void renew(const RecordId&, std::uint64_t, Duration, Callback<TokenCheck> done) override {
    done(down());
  }
  void get(const RecordId&, Callback<std::optional<Record>> done) override { done(down()); }
  void erase(const RecordId&, Callback<bool> done) override { done(down()); }
  std::unique_ptr<Watch> watch(const RecordId&, std::function<void()>) override { return nullptr; }
  void ping(Callback<bool> done) override { done(down()); }
  StoreStats stats() const override { return {}; }
  std::string_view kind() const noexcept override { return "unreachable"; }
};

TEST_F(EngineTest, StoreFailureIs503OrPassesThroughWhenFailOpen) {
  store_ = std::make_shared<UnreachableStore>();
  build_engine();
  auto d = must_decide(charge());
  EXPECT_EQ(d.response.status, 503);
  EXPECT_EQ(d.outcome, Outcome::store_error);
  EXPECT_EQ(problem_type(d), "urn:idem:problem:store-unavailable");
  EXPECT_EQ(d.response.body.find("connection refused"), std::string::npos);
  EXPECT_EQ(events_->count(EventKind::store_error), 1u);
  defaults().fail_open = true;
  build_engine();
  auto open = must_decide(charge());
  EXPECT_EQ(open.action, Action::pass_through);
  EXPECT_EQ(open.outcome, Outcome::store_error);
}

TEST_F(EngineTest, AbandonTheStoreCannotCarryOutIsAStoreErrorEvent) {
  auto flaky = std::make_shared<testing::FlakyStore>(store_);
  store_ = flaky;
  build_engine();
  auto first = must_decide(charge());
  flaky->fail_writes = 1;  // the connection went between the claim and the release
  std::optional<Result<TokenCheck>> released;
  engine_->abandon(std::move(*first.ticket), [&](Result<TokenCheck> r) { released = r; });
  ASSERT_TRUE(released);
  EXPECT_FALSE(*released);
  EXPECT_EQ(events_->count(EventKind::store_error), 1u);
  {
    std::lock_guard lock(events_->mutex_);
    EXPECT_EQ(events_->events.back().store_error, Errc::store_unavailable) << "what the store said";
  }
  // Still in flight, until the release is tried again (engine_settle_test.cpp).
  EXPECT_EQ(must_decide(charge()).outcome, Outcome::conflict);
}

TEST_F(EngineTest, ProblemTypeBaseIsASetting) {
  defaults().problem_type_base = "https://errors.example.com/";
  defaults().require_key = true;
  build_engine();
  TestRequest r;
  EXPECT_EQ(problem_type(must_decide(r)), "https://errors.example.com/missing-key");
}

TEST(Outcome, NamesMatchTheMetricLabels) {
  EXPECT_EQ(outcome_name(Outcome::original), "original");
  EXPECT_EQ(outcome_name(Outcome::replayed), "replayed");
  EXPECT_EQ(outcome_name(Outcome::mismatch), "mismatch");
  EXPECT_EQ(outcome_name(Outcome::conflict), "conflict");
  EXPECT_EQ(outcome_name(Outcome::duplicate), "duplicate");
  EXPECT_EQ(outcome_name(Outcome::missing_key), "missing_key");
  EXPECT_EQ(outcome_name(Outcome::invalid_key), "invalid_key");
  EXPECT_EQ(outcome_name(Outcome::passthrough), "passthrough");
  EXPECT_EQ(outcome_name(Outcome::store_error), "store_error");
  EXPECT_EQ(outcome_name(Outcome::not_stored), "not_stored");
  EXPECT_EQ(outcome_name(Outcome::too_large), "too_large");
}

TEST(RateLimitedSink, OnePerRecordAndKindPerCooldown) {
  auto clock = std::make_shared<ManualClock>();
  auto inner = std::make_shared<testing::RecordingSink>();
  RateLimitedSink sink(inner, clock, 10s);
  RecordId a(std::vector<std::uint8_t>(32, 1)), b(std::vector<std::uint8_t>(32, 2));
  for (int i = 0; i < 5; ++i)
    sink.publish(Event{EventKind::mismatch, a, "/", "", clock->now(), {}});
  sink.publish(Event{EventKind::conflict, a, "/", "", clock->now(), {}});
  sink.publish(Event{EventKind::mismatch, b, "/", "", clock->now(), {}});
  EXPECT_EQ(inner->events.size(), 3u);
  EXPECT_EQ(sink.suppressed(), 4u);
  clock->advance(10s);
  sink.publish(Event{EventKind::mismatch, a, "/", "", clock->now(), {}});
  EXPECT_EQ(inner->events.size(), 4u);
}

}  // namespace
}  // namespace idem
