// idem::httplib: wrapped route handlers called in process with hand-made Request and
// Response objects, then protected routes on a real server with httplib::Client.

#include <gtest/gtest.h>

#include <atomic>
#include <future>
#include <thread>

#include "adapters/adapter_test_support.hpp"
#include "idem/httplib.hpp"

namespace idem {
namespace {

using testing::StoreKind;

::httplib::Request payment(std::string key, std::string body = R"({"amount":100})") {
  ::httplib::Request req;
  req.method = "POST";
  req.path = "/payments";
  req.target = "/payments";
  req.headers.emplace("Content-Type", "application/json");
  req.headers.emplace("Authorization", "Bearer tok_1");
  if (!key.empty()) req.headers.emplace("Idempotency-Key", key);
  req.body = std::move(body);
  req.remote_addr = "127.0.0.1";
  return req;
}

class HttplibWrapTest : public ::testing::TestWithParam<StoreKind> {
 protected:
  void SetUp() override {
    engine_ = testing::make_engine(testing::make_store(GetParam()));
    wrapped_ = idem::httplib::wrap(
        engine_, [this](const ::httplib::Request& req, ::httplib::Response& res) {
          int n = ++runs_;
          if (auto* gate = gate_.load()) {
            entered_.set_value();
            gate->wait();
          }
          if (fail_) throw std::runtime_error("card network down");
          res.status = 201;
          res.set_header("Location", "/payments/pay_" + std::to_string(n));
          if (mark_) res.set_header("Idempotent-Replayed", "true");
          res.set_content(R"({"id":"pay_)" + std::to_string(n) + R"(","amount":)" + req.body + "}",
                          "application/json");
        });
  }

  ::httplib::Response call(const ::httplib::Request& req) {
    ::httplib::Response res;
    wrapped_(req, res);
    return res;
  }

  std::shared_ptr<Engine> engine_;
  ::httplib::Server::Handler wrapped_;
  std::atomic<int> runs_ = 0;
  std::atomic<std::shared_future<void>*> gate_ = nullptr;
  std::promise<void> entered_;
  std::atomic<bool> fail_ = false;
  bool mark_ = false;
};

TEST_P(HttplibWrapTest, FirstRunsOnceRetryIsReplayedWithADate) {
  auto first = call(payment("k1"));
  EXPECT_EQ(first.status, 201);
  EXPECT_FALSE(first.has_header("Idempotent-Replayed"));
  auto retry = call(payment("k1", R"({ "amount": 100 })"));
  EXPECT_EQ(retry.status, 201);
  EXPECT_EQ(retry.body, first.body);
  EXPECT_EQ(retry.get_header_value("Idempotent-Replayed"), "true");
  EXPECT_EQ(retry.get_header_value("Location"), "/payments/pay_1");
  EXPECT_EQ(retry.get_header_value("Content-Type"), "application/json");
  EXPECT_TRUE(retry.has_header("Date"));
  EXPECT_EQ(runs_, 1);
}

TEST_P(HttplibWrapTest, DifferentBodyIs422) {
  (void)call(payment("k1"));
  auto other = call(payment("k1", R"({"amount":5})"));
  EXPECT_EQ(other.status, 422);
  EXPECT_EQ(other.get_header_value("Content-Type"), "application/problem+json");
  EXPECT_NE(other.body.find("urn:idem:problem:key-reused"), std::string::npos);
  EXPECT_TRUE(other.has_header("Date"));
  EXPECT_EQ(runs_, 1);
}

TEST_P(HttplibWrapTest, DuplicateWhileInFlightIs409) {
  std::promise<void> open;
  std::shared_future<void> gate = open.get_future().share();
  gate_ = &gate;
  auto entered = entered_.get_future();
  auto first = std::async(std::launch::async, [&] { return call(payment("k1")); });
  entered.wait();
  auto duplicate = call(payment("k1"));
  EXPECT_EQ(duplicate.status, 409);
  EXPECT_EQ(duplicate.get_header_value("Retry-After"), "1");
  EXPECT_NE(duplicate.body.find("request-in-flight"), std::string::npos);
  open.set_value();
  EXPECT_EQ(first.get().status, 201);
  EXPECT_EQ(runs_, 1);
}

TEST_P(HttplibWrapTest, HandlerThatThrowsLeavesNoRecordAndTheRetryExecutes) {
  fail_ = true;
  EXPECT_THROW((void)call(payment("k1")), std::runtime_error);
  EXPECT_FALSE(testing::has_record(*engine_, "Bearer tok_1", "k1"));
  fail_ = false;
  EXPECT_EQ(call(payment("k1")).status, 201);
  EXPECT_EQ(call(payment("k1")).get_header_value("Idempotent-Replayed"), "true");
  EXPECT_EQ(runs_, 2);
}

TEST_P(HttplibWrapTest, OnlyReplaysCarryTheReplayHeader) {
  mark_ = true;
  EXPECT_EQ(call(payment("k1")).get_header_value_count("Idempotent-Replayed"), 0u);
  EXPECT_EQ(call(payment("k1")).get_header_value_count("Idempotent-Replayed"), 1u);
}

TEST_P(HttplibWrapTest, KeylessAndUncoveredRequestsRunEveryTime) {
  (void)call(payment(""));
  (void)call(payment(""));
  auto put = payment("k1");
  put.method = "PUT";
  (void)call(put);
  (void)call(put);
  EXPECT_EQ(runs_, 4);
}

INSTANTIATE_TEST_SUITE_P(Stores, HttplibWrapTest, ::testing::ValuesIn(testing::store_kinds()),
                         [](const auto& info) { return testing::store_kind_name(info.param); });

TEST(HttplibTranslation, StatusUnsetIsTheDefault200) {
  ::httplib::Response res;
  res.body = "ok";
  auto captured = idem::httplib::to_idem(res);
  EXPECT_EQ(captured.response.status, 200);
  EXPECT_TRUE(captured.body_complete);
}

TEST(HttplibTranslation, ContentProviderResponsesAreSentButNotStored) {
  auto engine = testing::make_engine(make_memory_store());
  int runs = 0;
  auto wrapped =
      idem::httplib::wrap(engine, [&](const ::httplib::Request&, ::httplib::Response& res) {
        ++runs;
        res.set_content_provider(4, "text/plain", [](size_t, size_t, ::httplib::DataSink& sink) {
          sink.write("data", 4);
          return true;
        });
      });
  ::httplib::Response first;
  wrapped(payment("k1"), first);
  EXPECT_TRUE(static_cast<bool>(first.content_provider_));  // the client still gets it
  ::httplib::Response retry;
  wrapped(payment("k1"), retry);
  EXPECT_EQ(retry.status, 502);
  EXPECT_NE(retry.body.find("response-not-stored"), std::string::npos);
  EXPECT_EQ(runs, 1);  // never executed again
}

TEST(HttplibServer, ProtectedRoutesOverRealSockets) {
  auto engine = testing::make_engine(make_memory_store());
  ::httplib::Server server;
  std::atomic<int> runs = 0;
  auto api = idem::httplib::protect(server, engine);
  api.Post("/payments", [&](const ::httplib::Request& req, ::httplib::Response& res) {
    res.status = 201;
    res.set_content(
        "{\"n\":" + std::to_string(++runs) + ",\"q\":\"" + req.get_param_value("currency") + "\"}",
        "application/json");
  });
  server.Post("/plain", [&](const ::httplib::Request&, ::httplib::Response& res) {
    res.set_content(std::to_string(++runs), "text/plain");
  });
  int port = server.bind_to_any_port("127.0.0.1");
  ASSERT_GT(port, 0);
  std::thread listener([&] { server.listen_after_bind(); });
  while (!server.is_running()) std::this_thread::sleep_for(std::chrono::milliseconds(1));

  ::httplib::Client client("127.0.0.1", port);
  ::httplib::Headers key{{"Idempotency-Key", "\"abc-123\""}};
  auto first = client.Post("/payments?currency=eur", key, R"({"amount":1})", "application/json");
  ASSERT_TRUE(first);
  EXPECT_EQ(first->status, 201);
  // The bare token and the quoted string name the same key; the query is part of the
  // request, in any order of its parameters.
  ::httplib::Headers bare{{"Idempotency-Key", "abc-123"}};
  auto retry = client.Post("/payments?currency=eur", bare, R"({"amount":1})", "application/json");
  ASSERT_TRUE(retry);
  EXPECT_EQ(retry->status, 201);
  EXPECT_EQ(retry->body, first->body);
  EXPECT_EQ(retry->get_header_value("Idempotent-Replayed"), "true");
  EXPECT_TRUE(retry->has_header("Date"));
  auto other_query =
      client.Post("/payments?currency=usd", bare, R"({"amount":1})", "application/json");
  ASSERT_TRUE(other_query);
  EXPECT_EQ(other_query->status, 422);
  // Routes registered on the server directly are not protected.
  (void)client.Post("/plain", bare, "x", "text/plain");
  (void)client.Post("/plain", bare, "x", "text/plain");
  EXPECT_EQ(runs, 3);

  server.stop();
  listener.join();
}

}  // namespace
}  // namespace idem
