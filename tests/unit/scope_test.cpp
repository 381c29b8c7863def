#include "idem/scope.hpp"

#include <gtest/gtest.h>
#include <openssl/hmac.h>

#include <vector>

#include "idem/record_name.hpp"

namespace idem {
namespace {

struct Req {
  std::vector<HeaderField> headers;
  std::string_view peer = "10.0.0.1";
  RequestView view() const {
    RequestView v;
    v.method = "POST";
    v.target = "/payments";
    v.headers = headers;
    v.peer_address = peer;
    return v;
  }
};

const std::vector<std::string> kIdentityHeaders{"X-Api-Key"};

TEST(Scope, ParsesEverySetting) {
  EXPECT_EQ(ScopeRule::parse("identity").kind, ScopeRule::Kind::identity);
  EXPECT_EQ(ScopeRule::parse("identity+route").kind, ScopeRule::Kind::identity_route);
  EXPECT_EQ(ScopeRule::parse("ip").kind, ScopeRule::Kind::ip);
  EXPECT_EQ(ScopeRule::parse("global").kind, ScopeRule::Kind::global);
  auto h = ScopeRule::parse("header:X-Tenant");
  EXPECT_EQ(h.kind, ScopeRule::Kind::header);
  EXPECT_EQ(h.header_name, "X-Tenant");
  EXPECT_EQ(h.to_string(), "header:X-Tenant");
  EXPECT_THROW(ScopeRule::parse("user"), std::invalid_argument);
  EXPECT_THROW(ScopeRule::parse("header:"), std::invalid_argument);
}

TEST(Scope, IdentityIsAuthorizationThenIdentityHeaders) {
  Req r{{{"Authorization", "Bearer tok_1"}, {"X-Api-Key", "k1"}}};
  EXPECT_EQ(identity_of(r.view(), kIdentityHeaders), "Bearer tok_1\nk1");
  Req only_auth{{{"authorization", "Bearer tok_1"}}};
  EXPECT_EQ(identity_of(only_auth.view(), kIdentityHeaders), "Bearer tok_1");
  Req none{{{"Content-Type", "application/json"}}};
  EXPECT_EQ(identity_of(none.view(), kIdentityHeaders), "");
}

TEST(Scope, DifferentIdentitiesNeverShareAScope) {
  ScopeRule rule;
  TrustedProxies trusted;
  Req a{{{"Authorization", "Bearer a"}}}, b{{{"Authorization", "Bearer b"}}},
      k{{{"X-Api-Key", "Bearer a"}}}, anon{};
  auto s = [&](const Req& r) {
    return scope_string(rule, r.view(), kIdentityHeaders, trusted, "/");
  };
  EXPECT_NE(s(a), s(b));
  EXPECT_NE(s(a), s(anon));
  EXPECT_EQ(s(anon), s(Req{}));
  // The admin API's ?scope= value names the same scope.
  EXPECT_EQ(s(a), scope_string_from_value(rule, "Bearer a", "/"));
  (void)k;
}

TEST(Scope, KindsNeverCollide) {
  TrustedProxies trusted;
  Req r{{{"Authorization", "10.0.0.1"}, {"X-Tenant", "10.0.0.1"}}};
  std::vector<std::string> scopes;
  for (auto setting : {"identity", "identity+route", "ip", "global", "header:X-Tenant"}) {
    scopes.push_back(
        scope_string(ScopeRule::parse(setting), r.view(), kIdentityHeaders, trusted, "/p"));
  }
  for (std::size_t i = 0; i < scopes.size(); ++i) {
    for (std::size_t j = i + 1; j < scopes.size(); ++j) EXPECT_NE(scopes[i], scopes[j]);
  }
}

TEST(Scope, IdentityPlusRouteSeparatesRoutes) {
  auto rule = ScopeRule::parse("identity+route");
  TrustedProxies trusted;
  Req r{{{"Authorization", "t"}}};
  EXPECT_NE(scope_string(rule, r.view(), kIdentityHeaders, trusted, "/a"),
            scope_string(rule, r.view(), kIdentityHeaders, trusted, "/b"));
}

TEST(Scope, IpUsesThePeerUnlessItIsATrustedProxy) {
  Req r{{{"X-Forwarded-For", "203.0.113.7, 10.1.1.1"}}, "10.0.0.1"};
  EXPECT_EQ(client_address(r.view(), TrustedProxies{}), "10.0.0.1");
  EXPECT_EQ(client_address(r.view(), TrustedProxies({"192.168.0.0/16"})), "10.0.0.1");
  // Peer and the next hop are trusted: the first untrusted address from the right.
  EXPECT_EQ(client_address(r.view(), TrustedProxies({"10.0.0.0/8"})), "203.0.113.7");
  EXPECT_EQ(client_address(r.view(), TrustedProxies({"10.0.0.1"})), "10.1.1.1");
}

TEST(Scope, XForwardedForAcrossSeveralHeaders) {
  Req r{{{"X-Forwarded-For", "198.51.100.1"}, {"X-Forwarded-For", "10.2.2.2"}}, "10.0.0.1"};
  EXPECT_EQ(client_address(r.view(), TrustedProxies({"10.0.0.0/8"})), "198.51.100.1");
}

TEST(Scope, TrustedProxiesMatchIpv6Cidrs) {
  TrustedProxies t({"fd00::/8", "127.0.0.1"});
  EXPECT_TRUE(t.contains("fd12:3456::1"));
  EXPECT_FALSE(t.contains("fe80::1"));
  EXPECT_TRUE(t.contains("127.0.0.1"));
  EXPECT_FALSE(t.contains("127.0.0.2"));
  EXPECT_FALSE(t.contains("not an address"));
  EXPECT_THROW(TrustedProxies({"10.0.0.0/33"}), std::invalid_argument);
  EXPECT_THROW(TrustedProxies({"example.com"}), std::invalid_argument);
}

TEST(Scope, HeaderScopeUsesThatHeader) {
  auto rule = ScopeRule::parse("header:X-Tenant");
  TrustedProxies trusted;
  Req a{{{"X-Tenant", "acme"}, {"Authorization", "x"}}},
      b{{{"X-Tenant", "acme"}, {"Authorization", "y"}}}, c{{{"X-Tenant", "other"}}};
  auto s = [&](const Req& r) {
    return scope_string(rule, r.view(), kIdentityHeaders, trusted, "/");
  };
  EXPECT_EQ(s(a), s(b));
  EXPECT_NE(s(a), s(c));
}

TEST(RecordNamer, KeyedHashOfScopeAndKey) {
  RecordNamer namer(std::string(32, 's'));
  auto a = namer.name("identity\0x", "k1");
  EXPECT_EQ(a.size(), 32u);
  EXPECT_EQ(a, namer.name("identity\0x", "k1"));
  EXPECT_NE(a, namer.name("identity\0x", "k2"));
  // Length-prefixing: moving bytes between scope and key gives another name.
  EXPECT_NE(namer.name("ab", "c"), namer.name("a", "bc"));
  RecordNamer other(std::string(32, 't'));
  EXPECT_NE(a, other.name("identity\0x", "k1"));
  // Neither the key nor the scope appears in the name.
  EXPECT_EQ(a.hex().find("6b31"), std::string::npos);
  EXPECT_THROW(RecordNamer("short"), std::invalid_argument);
  EXPECT_EQ(RecordNamer::generate_secret().size(), 32u);
  EXPECT_NE(RecordNamer::generate_secret(), RecordNamer::generate_secret());
}

TEST(RecordNamer, KnownAnswer) {
  // HMAC-SHA-256(key = 16 x 'k', msg = 00 00 00 00 "abc"); checked with
  // printf '\0\0\0\0abc' | openssl dgst -sha256 -hmac kkkkkkkkkkkkkkkk
  RecordNamer namer(std::string(16, 'k'));
  EXPECT_EQ(namer.name("", "abc").hex(),
            "4eef48516489d9b67d8ab1c37862fa51fb90a975e82f6f6559646854e983fb4e");
}

TEST(RecordNamer, MatchesOpenSslHmacForEverySecretLength) {
  // Secrets longer than SHA-256's 64-byte block are hashed first (RFC 2104): cover both
  // sides of that edge, and scopes and keys of several lengths.
  for (std::size_t secret_size : {16u, 63u, 64u, 65u, 200u}) {
    std::string secret;
    for (std::size_t i = 0; i < secret_size; ++i) secret.push_back(static_cast<char>(i * 7 + 1));
    RecordNamer namer(secret);
    for (std::string_view scope : {std::string_view(""), std::string_view("identity\0bob", 12)}) {
      for (std::string key : {std::string("k"), std::string(300, 'x')}) {
        std::string message(4, '\0');
        auto n = static_cast<std::uint32_t>(scope.size());
        for (int i = 0; i < 4; ++i) message[i] = static_cast<char>(n >> (8 * i));
        message.append(scope).append(key);
        unsigned char expected[32];
        unsigned size = 0;
        ASSERT_NE(HMAC(EVP_sha256(), secret.data(), static_cast<int>(secret.size()),
                       reinterpret_cast<const unsigned char*>(message.data()), message.size(),
                       expected, &size),
                  nullptr);
        EXPECT_EQ(namer.name(scope, key), Digest(std::span<const std::uint8_t>(expected, size)))
            << "secret of " << secret_size << " bytes";
      }
    }
  }
}

}  // namespace
}  // namespace idem
