#include "idem/policy.hpp"

#include <gtest/gtest.h>

#include "idem/problem.hpp"
#include "idem/status_set.hpp"

namespace idem {
namespace {

TEST(StatusSet, DefaultStores200To499Except408_409_425_429) {
  StatusSet s;
  for (int st : {200, 201, 204, 301, 400, 404, 410, 422, 499}) EXPECT_TRUE(s.contains(st)) << st;
  for (int st : {100, 199, 408, 409, 425, 429, 500, 502, 503, 504})
    EXPECT_FALSE(s.contains(st)) << st;
}

TEST(StatusSet, ParsesRangesClassesAndExclusions) {
  auto s = StatusSet::parse("2xx, 404, 410-412, !204");
  EXPECT_TRUE(s.contains(200));
  EXPECT_TRUE(s.contains(299));
  EXPECT_FALSE(s.contains(204));
  EXPECT_TRUE(s.contains(404));
  EXPECT_TRUE(s.contains(411));
  EXPECT_FALSE(s.contains(400));
  EXPECT_FALSE(s.contains(500));
  EXPECT_FALSE(StatusSet::parse("").contains(200));
  for (auto bad : {"abc", "99", "600", "300-200", "6xx", "2yy"}) {
    EXPECT_THROW(StatusSet::parse(bad), std::invalid_argument) << bad;
  }
}

TEST(PathPattern, LiteralsPlaceholdersAndRest) {
  PathPattern exact("/payments");
  EXPECT_TRUE(exact.matches("/payments"));
  EXPECT_FALSE(exact.matches("/payments/1"));
  EXPECT_FALSE(exact.matches("/payment"));
  PathPattern one("/payments/*/refunds");
  EXPECT_TRUE(one.matches("/payments/p_1/refunds"));
  EXPECT_FALSE(one.matches("/payments//refunds"));
  EXPECT_FALSE(one.matches("/payments/a/b/refunds"));
  PathPattern named("/orders/{id}");
  EXPECT_TRUE(named.matches("/orders/42"));
  EXPECT_FALSE(named.matches("/orders"));
  PathPattern rest("/admin/**");
  EXPECT_TRUE(rest.matches("/admin"));
  EXPECT_TRUE(rest.matches("/admin/a/b/c"));
  EXPECT_FALSE(rest.matches("/administrator"));
  PathPattern all("/**");
  EXPECT_TRUE(all.matches("/"));
  EXPECT_TRUE(all.matches("/x/y"));
  PathPattern root("/");
  EXPECT_TRUE(root.matches("/"));
  EXPECT_FALSE(root.matches("/x"));
  EXPECT_THROW(PathPattern("payments"), std::invalid_argument);
  EXPECT_THROW(PathPattern("/a/**/b"), std::invalid_argument);
}

TEST(PolicySet, FirstMatchingRouteWinsElseDefaults) {
  PolicySet set;
  Route off;
  off.path = PathPattern("/health/**");
  off.policy.enabled = false;
  Route slow;
  slow.methods = {"POST"};
  slow.path = PathPattern("/payments/*");
  slow.policy.ttl = std::chrono::seconds(60);
  set.routes = {off, slow};
  EXPECT_FALSE(set.match("POST", "/health/live").policy->enabled);
  auto m = set.match("post", "/payments/p1");
  EXPECT_EQ(m.policy->ttl, std::chrono::seconds(60));
  EXPECT_EQ(m.route, "/payments/*");
  EXPECT_EQ(m.index, 1u);
  auto d = set.match("PATCH", "/payments/p1");
  EXPECT_EQ(d.policy, &set.defaults);
  EXPECT_EQ(d.index, 2u);
  EXPECT_TRUE(d.route.empty());
}

TEST(Policy, DefaultsOfTheContract) {
  Policy p;
  EXPECT_TRUE(p.covers_method("POST"));
  EXPECT_TRUE(p.covers_method("patch"));
  EXPECT_FALSE(p.covers_method("PUT"));
  EXPECT_FALSE(p.covers_method("GET"));
  EXPECT_EQ(p.header, "Idempotency-Key");
  EXPECT_EQ(p.replay_header, "Idempotent-Replayed");
  EXPECT_FALSE(p.require_key);
  EXPECT_EQ(p.scope.kind, ScopeRule::Kind::identity);
  EXPECT_EQ(p.identity_headers, std::vector<std::string>{"X-Api-Key"});
  EXPECT_EQ(p.ttl, std::chrono::seconds(86400));
  EXPECT_EQ(p.lease, std::chrono::seconds(30));
  EXPECT_EQ(p.concurrency, Concurrency::reject);
  EXPECT_EQ(p.wait_timeout, std::chrono::seconds(10));
  EXPECT_EQ(p.on_duplicate, OnDuplicate::replay);
  EXPECT_EQ(p.on_expired_lease, OnExpiredLease::retry);
  EXPECT_EQ(p.max_request_bytes, 10u * 1024 * 1024);
  EXPECT_EQ(p.max_response_bytes, 4u * 1024 * 1024);
  EXPECT_EQ(p.replay_exclude_headers, std::vector<std::string>{"Set-Cookie"});
  EXPECT_TRUE(p.fingerprint.ignore.empty());
  EXPECT_TRUE(p.fingerprint.headers.empty());
  EXPECT_FALSE(p.fail_open);
  EXPECT_EQ(p.problem_type_base, "urn:idem:problem:");
}

TEST(Problem, Rfc9457DocumentWithContractNamesAndStatuses) {
  struct Case {
    ProblemType type;
    std::string_view name;
    int status;
  };
  for (auto c : {Case{ProblemType::missing_key, "missing-key", 400},
                 Case{ProblemType::invalid_key, "invalid-key", 400},
                 Case{ProblemType::duplicate_request, "duplicate-request", 409},
                 Case{ProblemType::key_reused, "key-reused", 422},
                 Case{ProblemType::request_in_flight, "request-in-flight", 409},
                 Case{ProblemType::body_too_large, "body-too-large", 413},
                 Case{ProblemType::store_unavailable, "store-unavailable", 503},
                 Case{ProblemType::response_not_stored, "response-not-stored", 502},
                 Case{ProblemType::outcome_unknown, "outcome-unknown", 409}}) {
    EXPECT_EQ(problem_name(c.type), c.name);
    auto r = Problem{c.type, "why \"quoted\"\n", {}, {}}.to_response();
    EXPECT_EQ(r.status, c.status);
    EXPECT_NE(r.body.find("\"type\":\"urn:idem:problem:" + std::string(c.name) + "\""),
              std::string::npos);
    EXPECT_NE(r.body.find("\"status\":" + std::to_string(c.status)), std::string::npos);
    EXPECT_NE(r.body.find("\"title\":"), std::string::npos);
    EXPECT_NE(r.body.find("\"detail\":\"why \\\"quoted\\\"\\n\""), std::string::npos);
    ASSERT_FALSE(r.headers.empty());
    EXPECT_EQ(r.headers[0].second, "application/problem+json");
  }
  auto custom =
      Problem{ProblemType::response_not_stored, "d", 201, {}}.to_response("https://e.x/p/");
  EXPECT_NE(custom.body.find("\"type\":\"https://e.x/p/response-not-stored\""), std::string::npos);
  EXPECT_NE(custom.body.find("\"original_status\":201"), std::string::npos);
  auto busy = Problem{ProblemType::request_in_flight, "d", {}, 1}.to_response();
  EXPECT_EQ(busy.headers.back(), (std::pair<std::string, std::string>{"Retry-After", "1"}));
}

}  // namespace
}  // namespace idem
