// idem::beast in process: synchronous and coroutine handlers, the completion-token steps,
// against a store that answers inline and one that answers on its own thread.

#include <gtest/gtest.h>

#include <atomic>
#include <boost/asio/bind_executor.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <functional>
#include <future>
#include <thread>

#include "adapters/adapter_test_support.hpp"
#include "idem/beast.hpp"

namespace idem {
namespace {

namespace asio = boost::asio;
namespace http = boost::beast::http;
using beast::Request;
using beast::Response;
using namespace std::chrono_literals;
using testing::StoreKind;

Request payment(std::string key, std::string body = R"({"amount":100})") {
  Request req{http::verb::post, "/payments", 11};
  req.set(http::field::host, "api.test");
  req.set(http::field::content_type, "application/json");
  req.set(http::field::authorization, "Bearer tok_1");
  if (!key.empty()) req.set("Idempotency-Key", key);
  req.body() = std::move(body);
  req.prepare_payload();
  return req;
}

Response created(const Request& req, int n) {
  Response res{http::status::created, req.version()};
  res.set(http::field::content_type, "application/json");
  res.set("Location", "/payments/pay_" + std::to_string(n));
  res.body() = R"({"id":"pay_)" + std::to_string(n) + R"("})";
  res.prepare_payload();
  return res;
}

std::string header(const Response& res, std::string_view name) {
  auto it = res.find(name);
  return it == res.end() ? std::string() : std::string(it->value());
}

std::size_t count(const Response& res, std::string_view name) { return res.count(name); }

std::string problem_type(const Response& res) {
  auto pos = res.body().find("\"type\":\"");
  if (pos == std::string::npos) return {};
  return res.body().substr(pos + 8, res.body().find('"', pos + 8) - pos - 8);
}

class BeastSyncTest : public ::testing::TestWithParam<StoreKind> {
 protected:
  void SetUp() override { engine_ = testing::make_engine(testing::make_store(GetParam())); }

  /// A handler that counts its runs; `gate_` (when set) makes it wait, `fail_` throw.
  auto handler() {
    return [this](const Request& req) {
      int n = ++runs_;
      if (gate_ != nullptr) {
        entered_.set_value();
        gate_->wait();
      }
      if (fail_) throw std::runtime_error("card network down");
      auto res = created(req, n);
      if (mark_) res.set("Idempotent-Replayed", "true");
      return res;
    };
  }

  std::shared_ptr<Engine> engine_;
  std::atomic<int> runs_ = 0;
  std::shared_future<void>* gate_ = nullptr;
  std::promise<void> entered_;
  bool fail_ = false;
  bool mark_ = false;
};

TEST_P(BeastSyncTest, FirstRunsOnceRetryIsReplayedWithADate) {
  auto api = beast::protect(engine_, handler());
  auto first = api(payment("k1"), "10.0.0.1");
  EXPECT_EQ(first.result(), http::status::created);
  EXPECT_EQ(header(first, "Idempotent-Replayed"), "");
  EXPECT_EQ(runs_, 1);

  auto retry = api(payment("k1", R"({ "amount" : 100.0 })"), "10.0.0.1");
  EXPECT_EQ(runs_, 1);
  EXPECT_EQ(retry.result(), http::status::created);
  EXPECT_EQ(retry.body(), first.body());
  EXPECT_EQ(header(retry, "Idempotent-Replayed"), "true");
  EXPECT_EQ(header(retry, "Location"), "/payments/pay_1");
  EXPECT_EQ(header(retry, "Content-Type"), "application/json");
  EXPECT_FALSE(header(retry, "Date").empty());
  EXPECT_EQ(header(retry, "Content-Length"), std::to_string(first.body().size()));
  EXPECT_EQ(retry.version(), 11u);
}

TEST_P(BeastSyncTest, DifferentBodyIs422WithoutRunningTheHandler) {
  auto api = beast::protect(engine_, handler());
  (void)api(payment("k1"));
  auto other = api(payment("k1", R"({"amount":999})"));
  EXPECT_EQ(other.result(), http::status::unprocessable_entity);
  EXPECT_EQ(problem_type(other), "urn:idem:problem:key-reused");
  EXPECT_EQ(header(other, "Content-Type"), "application/problem+json");
  EXPECT_FALSE(header(other, "Date").empty());
  EXPECT_EQ(runs_, 1);
}

TEST_P(BeastSyncTest, DuplicateWhileInFlightIs409) {
  std::promise<void> open;
  std::shared_future<void> gate = open.get_future().share();
  gate_ = &gate;
  auto api = beast::protect(engine_, handler());
  auto entered = entered_.get_future();
  auto first = std::async(std::launch::async, [&] { return api(payment("k1")); });
  entered.wait();
  auto duplicate = api(payment("k1"));
  EXPECT_EQ(duplicate.result(), http::status::conflict);
  EXPECT_EQ(problem_type(duplicate), "urn:idem:problem:request-in-flight");
  EXPECT_EQ(header(duplicate, "Retry-After"), "1");
  open.set_value();
  EXPECT_EQ(first.get().result(), http::status::created);
  EXPECT_EQ(runs_, 1);
}

TEST_P(BeastSyncTest, HandlerThatThrowsLeavesNoRecordAndTheRetryExecutes) {
  auto api = beast::protect(engine_, handler());
  fail_ = true;
  EXPECT_THROW((void)api(payment("k1")), std::runtime_error);
  EXPECT_FALSE(testing::has_record(*engine_, "Bearer tok_1", "k1"));
  fail_ = false;
  EXPECT_EQ(api(payment("k1")).result(), http::status::created);
  EXPECT_EQ(runs_, 2);
  EXPECT_EQ(header(api(payment("k1")), "Idempotent-Replayed"), "true");
  EXPECT_EQ(runs_, 2);
}

TEST_P(BeastSyncTest, OnlyReplaysCarryTheReplayHeader) {
  mark_ = true;  // a handler that sets the header itself
  auto api = beast::protect(engine_, handler());
  auto first = api(payment("k1"));
  EXPECT_EQ(count(first, "Idempotent-Replayed"), 0u);
  EXPECT_EQ(count(api(payment("k1")), "Idempotent-Replayed"), 1u);
}

TEST_P(BeastSyncTest, UncoveredMethodsAndKeylessRequestsRunEveryTime) {
  auto api = beast::protect(engine_, handler());
  auto get = payment("k1");
  get.method(http::verb::get);
  (void)api(get);
  (void)api(get);
  (void)api(payment(""));
  (void)api(payment(""));
  EXPECT_EQ(runs_, 4);
}

TEST_P(BeastSyncTest, GuardServesAnExistingSession) {
  beast::Guard guard(engine_);
  auto h = handler();
  auto first = guard.handle(payment("k1"), "10.0.0.1", h);
  auto retry = guard.handle(payment("k1"), "10.0.0.1", h);
  EXPECT_EQ(header(retry, "Idempotent-Replayed"), "true");
  EXPECT_EQ(runs_, 1);
}

int plain_runs = 0;

/// A handler that is a plain function, as in Beast's own examples.
Response plain_handler(const Request& req) { return created(req, ++plain_runs); }

TEST_P(BeastSyncTest, PlainFunctionsAreHandlersToo) {
  plain_runs = 0;
  beast::Guard guard(engine_);
  (void)guard.handle(payment("k1"), {}, plain_handler);
  EXPECT_EQ(header(guard.handle(payment("k1"), {}, plain_handler), "Idempotent-Replayed"), "true");
  auto api = beast::protect(engine_, plain_handler);
  EXPECT_EQ(header(api(payment("k1")), "Idempotent-Replayed"), "true");
  EXPECT_EQ(plain_runs, 1);
}

TEST_P(BeastSyncTest, PeerAddressNamesTheIpScope) {
  PolicySet policies;
  policies.defaults.scope = ScopeRule::parse("ip");
  engine_ = testing::make_engine(testing::make_store(GetParam()), policies);
  auto api = beast::protect(engine_, handler());
  (void)api(payment("k1"), "192.0.2.1");
  EXPECT_EQ(header(api(payment("k1"), "::ffff:192.0.2.1"), "Idempotent-Replayed"), "true");
  EXPECT_EQ(header(api(payment("k1"), "192.0.2.2"), "Idempotent-Replayed"), "");
  EXPECT_EQ(runs_, 2);
}

INSTANTIATE_TEST_SUITE_P(Stores, BeastSyncTest, ::testing::ValuesIn(testing::store_kinds()),
                         [](const auto& info) { return testing::store_kind_name(info.param); });

// ---- coroutines ----

class BeastCoroutineTest : public ::testing::TestWithParam<StoreKind> {
 protected:
  void SetUp() override { engine_ = testing::make_engine(testing::make_store(GetParam())); }

  /// Runs `body` as a coroutine on the test's io_context until everything is done.
  template <class F>
  void run(F body) {
    std::exception_ptr failure;
    asio::co_spawn(io_, std::move(body), [&](std::exception_ptr e) { failure = e; });
    io_.run();
    io_.restart();
    if (failure) std::rethrow_exception(failure);
  }

  asio::io_context io_;
  std::shared_ptr<Engine> engine_;
  int runs_ = 0;  // one thread runs io_: no atomics needed
};

/// A coroutine handler: counts, waits `delay` on a timer, throws when asked.
struct SlowHandler {
  int* runs;
  std::chrono::milliseconds delay{0};
  bool* fail = nullptr;
  asio::awaitable<Response> operator()(const Request& req) const {
    int n = ++*runs;
    if (delay.count() > 0) {
      asio::steady_timer timer(co_await asio::this_coro::executor, delay);
      co_await timer.async_wait(asio::use_awaitable);
    }
    if (fail && *fail) throw std::runtime_error("card network down");
    co_return created(req, n);
  }
};

TEST_P(BeastCoroutineTest, FirstRunsOnceRetryIsReplayedAndReuseIs422) {
  auto api = beast::protect(engine_, SlowHandler{&runs_});
  run([&]() -> asio::awaitable<void> {
    auto req = payment("k1");
    auto first = co_await api(req, "10.0.0.1");
    EXPECT_EQ(first.result(), http::status::created);
    EXPECT_EQ(header(first, "Idempotent-Replayed"), "");
    auto retry = co_await api(req);
    EXPECT_EQ(header(retry, "Idempotent-Replayed"), "true");
    EXPECT_EQ(retry.body(), first.body());
    EXPECT_FALSE(header(retry, "Date").empty());
    auto other = payment("k1", R"({"amount":1})");
    auto reused = co_await api(other);
    EXPECT_EQ(reused.result(), http::status::unprocessable_entity);
    EXPECT_FALSE(header(reused, "Date").empty());
  });
  EXPECT_EQ(runs_, 1);
}

TEST_P(BeastCoroutineTest, DuplicateWhileInFlightIs409AndNothingBlocks) {
  auto api = beast::protect(engine_, SlowHandler{&runs_, 300ms});
  std::optional<Response> first;
  std::optional<Response> duplicate;
  auto req = payment("k1");
  asio::co_spawn(
      io_, [&]() -> asio::awaitable<void> { first = co_await api(req); }, asio::detached);
  run([&]() -> asio::awaitable<void> {
    asio::steady_timer timer(co_await asio::this_coro::executor, 50ms);
    co_await timer.async_wait(asio::use_awaitable);
    duplicate = co_await api(req);  // on the same thread, while the first waits
  });
  ASSERT_TRUE(first && duplicate);
  EXPECT_EQ(first->result(), http::status::created);
  EXPECT_EQ(duplicate->result(), http::status::conflict);
  EXPECT_EQ(problem_type(*duplicate), "urn:idem:problem:request-in-flight");
  EXPECT_EQ(runs_, 1);
}

TEST_P(BeastCoroutineTest, HandlerThatThrowsLeavesNoRecordAndTheRetryExecutes) {
  bool fail = true;
  auto api = beast::protect(engine_, SlowHandler{&runs_, 0ms, &fail});
  run([&]() -> asio::awaitable<void> {
    auto req = payment("k1");
    bool thrown = false;
    try {
      (void)co_await api(req);
    } catch (const std::runtime_error&) {
      thrown = true;
    }
    EXPECT_TRUE(thrown);
    EXPECT_FALSE(testing::has_record(*engine_, "Bearer tok_1", "k1"));
    fail = false;
    auto retry = co_await api(req);
    EXPECT_EQ(retry.result(), http::status::created);
    auto again = co_await api(req);
    EXPECT_EQ(header(again, "Idempotent-Replayed"), "true");
  });
  EXPECT_EQ(runs_, 2);
}

TEST_P(BeastCoroutineTest, CompletionTokenStepsWithPlainCallbacks) {
  // A callback-style session: begin, run, complete, each step's callback on the io_context.
  auto req = payment("k1");
  std::vector<std::string> steps;
  auto on_loop = [&] { return io_.get_executor().running_in_this_thread(); };
  beast::async_begin(*engine_, req, "10.0.0.1", asio::bind_executor(io_, [&](Decision d) {
    steps.push_back(on_loop() ? "begin on loop" : "begin elsewhere");
    ASSERT_EQ(d.action, Decision::Action::proceed);
    auto res = created(req, 1);
    beast::async_complete(*engine_, std::move(*d.ticket), res,
                          asio::bind_executor(io_, [&](Result<Completion> c) {
                            steps.push_back(on_loop() ? "complete on loop" : "elsewhere");
                            EXPECT_TRUE(c && *c == Completion::stored);
                          }));
  }));
  io_.run();
  EXPECT_EQ(steps, (std::vector<std::string>{"begin on loop", "complete on loop"}));

  io_.restart();
  std::optional<Decision> replay;
  beast::async_begin(*engine_, req, {},
                     asio::bind_executor(io_, [&](Decision d) { replay = std::move(d); }));
  io_.run();
  ASSERT_TRUE(replay);
  EXPECT_EQ(replay->outcome, Outcome::replayed);
  auto answer = beast::to_beast(std::move(replay->response), req);
  EXPECT_EQ(header(answer, "Idempotent-Replayed"), "true");
  EXPECT_FALSE(header(answer, "Date").empty());

  io_.restart();
  std::optional<Result<TokenCheck>> abandoned;
  auto second = payment("k2");
  beast::async_begin(*engine_, second, {}, asio::bind_executor(io_, [&](Decision d) {
    beast::async_abandon(
        *engine_, std::move(*d.ticket),
        asio::bind_executor(io_, [&](Result<TokenCheck> r) { abandoned.emplace(std::move(r)); }));
  }));
  io_.run();
  ASSERT_TRUE(abandoned && *abandoned);
  EXPECT_FALSE(testing::has_record(*engine_, "Bearer tok_1", "k2"));
}

TEST_P(BeastCoroutineTest, ManyRequestsInOneCoroutineKeepTheStackFlat) {
  // An answer that arrives inline must not resume the coroutine inside the engine call:
  // each request would then nest in the previous one's stack until it overflows.
  auto api = beast::protect(engine_, SlowHandler{&runs_});
  constexpr int kRequests = 20000;
  run([&]() -> asio::awaitable<void> {
    auto req = payment("k0");
    for (int i = 0; i < kRequests; ++i) {
      req.set("Idempotency-Key", "k" + std::to_string(i % 1000));
      auto res = co_await api(req);
      if (res.result() != http::status::created) ADD_FAILURE() << i;
    }
  });
  EXPECT_EQ(runs_, 1000);
}

TEST_P(BeastCoroutineTest, ChainedCallbacksKeepTheStackFlat) {
  // A callback session that starts the next request from the previous one's handler:
  // completions are never run inside the initiating call.
  constexpr int kRequests = 20000;
  int left = kRequests;
  auto req = payment("k");
  std::function<void()> next = [&] {
    if (left-- == 0) return;
    beast::async_begin(*engine_, req, {}, asio::bind_executor(io_, [&](Decision d) {
      if (d.ticket) d.ticket.reset();  // releases the record
      next();
    }));
  };
  next();
  io_.run();
  EXPECT_EQ(left, -1);
}

INSTANTIATE_TEST_SUITE_P(Stores, BeastCoroutineTest, ::testing::ValuesIn(testing::store_kinds()),
                         [](const auto& info) { return testing::store_kind_name(info.param); });

TEST(BeastTranslation, RequestViewKeepsEveryHeaderInOrder) {
  auto req = payment("k1");
  for (int i = 0; i < 40; ++i) req.insert("X-Extra", std::to_string(i));  // past the inline 24
  beast::RequestFields fields;
  RequestView view = fields.view(req, "::ffff:10.0.0.9");
  EXPECT_EQ(view.method, "POST");
  EXPECT_EQ(view.target, "/payments");
  EXPECT_EQ(view.body, R"({"amount":100})");
  EXPECT_EQ(view.peer_address, "10.0.0.9");
  EXPECT_EQ(view.header_count("X-Extra"), 40u);
  EXPECT_EQ(view.headers.back().value, "39");
  EXPECT_EQ(view.header("idempotency-key").value_or(""), "k1");
}

}  // namespace
}  // namespace idem
