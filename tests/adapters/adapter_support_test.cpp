// The adapters' shared building blocks: blocking engine calls, Date, peers, lease renewal.

#include "idem/adapter_support.hpp"

#include <gtest/gtest.h>

#include <regex>
#include <thread>

#include "adapters/adapter_test_support.hpp"
#include "unit/engine_test_support.hpp"

namespace idem {
namespace {

using namespace std::chrono_literals;
using testing::StoreKind;
using testing::TestRequest;
using Action = Decision::Action;

TestRequest charge(std::string key = "k1") {
  TestRequest r;
  r.key(std::move(key)).json(R"({"amount":100})");
  return r;
}

Decision begin(Engine& engine, const TestRequest& r) {
  return r.visit([&](const RequestView& v) { return begin_and_wait(engine, v); });
}

class BlockingCallsTest : public ::testing::TestWithParam<StoreKind> {};

TEST_P(BlockingCallsTest, WaitForTheStoreWhereverItAnswers) {
  auto engine = testing::make_engine(testing::make_store(GetParam()));
  auto first = begin(*engine, charge());
  ASSERT_EQ(first.action, Action::proceed);
  EXPECT_EQ(begin(*engine, charge()).outcome, Outcome::conflict);
  Response created;
  created.status = 201;
  created.body = "{}";
  auto completion = complete_and_wait(*engine, std::move(*first.ticket), created);
  ASSERT_TRUE(completion);
  EXPECT_EQ(*completion, Completion::stored);
  EXPECT_EQ(begin(*engine, charge()).outcome, Outcome::replayed);

  auto second = begin(*engine, charge("k2"));
  ASSERT_EQ(second.action, Action::proceed);
  auto abandoned = abandon_and_wait(*engine, std::move(*second.ticket));
  ASSERT_TRUE(abandoned);
  EXPECT_EQ(*abandoned, TokenCheck::ok);
  // Gone as soon as the call returns: the retry executes.
  EXPECT_EQ(begin(*engine, charge("k2")).action, Action::proceed);
}

INSTANTIATE_TEST_SUITE_P(Stores, BlockingCallsTest, ::testing::ValuesIn(testing::store_kinds()),
                         [](const auto& info) { return testing::store_kind_name(info.param); });

TEST(HttpDate, IsAnImfFixdateOfNow) {
  std::string date(http_date());
  EXPECT_TRUE(std::regex_match(
      date, std::regex(R"((Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d\d (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|)"
                       R"(Sep|Oct|Nov|Dec) \d{4} \d\d:\d\d:\d\d GMT)")))
      << date;
  std::time_t now = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&now, &tm);
  char expected[64];
  std::strftime(expected, sizeof expected, "%a, %d %b %Y %H:%M:%S GMT", &tm);
  // Equal unless the second turned in between.
  std::string again(http_date());
  EXPECT_TRUE(again == expected || date == expected) << again << " vs " << expected;
}

TEST(NormalizePeer, MappedIpv4IsPlainIpv4) {
  EXPECT_EQ(normalize_peer("::ffff:192.0.2.1"), "192.0.2.1");
  EXPECT_EQ(normalize_peer("192.0.2.1"), "192.0.2.1");
  EXPECT_EQ(normalize_peer("2001:db8::1"), "2001:db8::1");
  EXPECT_EQ(normalize_peer("::ffff:abcd"), "::ffff:abcd");
  EXPECT_EQ(normalize_peer(""), "");
}

/// A short lease on the real clock: without renewals a duplicate would take the record
/// over once 300 ms have passed.
std::shared_ptr<Engine> short_lease_engine() {
  PolicySet policies;
  policies.defaults.lease = 300ms;
  return testing::make_engine(make_memory_store(), std::move(policies));
}

TEST(LeaseKeeper, RenewsWhileHeldSoADuplicateStaysOut) {
  auto engine = short_lease_engine();
  LeaseKeeper keeper(engine);
  auto first = begin(*engine, charge());
  ASSERT_EQ(first.action, Action::proceed);
  {
    auto hold = keeper.hold(*first.ticket);
    std::this_thread::sleep_for(900ms);  // three leases
    EXPECT_EQ(begin(*engine, charge()).outcome, Outcome::conflict);
  }
  EXPECT_TRUE(complete_and_wait(*engine, std::move(*first.ticket), Response{}));
  EXPECT_EQ(begin(*engine, charge()).outcome, Outcome::replayed);
}

TEST(LeaseKeeper, ReleasedHoldsAreNoLongerRenewed) {
  auto engine = short_lease_engine();
  LeaseKeeper keeper(engine, make_thread_scheduler());
  auto first = begin(*engine, charge());
  ASSERT_EQ(first.action, Action::proceed);
  auto other = begin(*engine, charge("k2"));
  ASSERT_EQ(other.action, Action::proceed);
  auto kept = keeper.hold(*other.ticket);
  {
    auto hold = keeper.hold(*first.ticket);
    hold.release();
    hold.release();  // idempotent; the destructor does nothing more
  }
  std::this_thread::sleep_for(600ms);
  // Not renewed: taken over as the policy's on_expired_lease = "retry" says.
  EXPECT_EQ(begin(*engine, charge()).action, Action::proceed);
  EXPECT_EQ(begin(*engine, charge("k2")).outcome, Outcome::conflict);
}

TEST(LeaseKeeper, ManyHoldsOnManyThreads) {
  auto engine = short_lease_engine();
  LeaseKeeper keeper(engine);
  std::vector<std::thread> threads;
  std::atomic<int> proceeded = 0;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 200; ++i) {
        auto d = begin(*engine, charge("t" + std::to_string(t) + "-" + std::to_string(i)));
        if (d.action != Action::proceed) continue;
        ++proceeded;
        auto hold = keeper.hold(*d.ticket);
        if (i % 50 == 0) std::this_thread::sleep_for(120ms);  // some outlive a renewal
        hold.release();
        (void)complete_and_wait(*engine, std::move(*d.ticket), Response{});
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(proceeded, 800);
}

}  // namespace
}  // namespace idem
