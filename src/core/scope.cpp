#include "idem/scope.hpp"

#include <arpa/inet.h>

#include <charconv>
#include <cstring>
#include <stdexcept>

namespace idem {

ScopeRule ScopeRule::parse(std::string_view setting) {
  ScopeRule rule;
  if (setting == "identity") return rule;
  if (setting == "identity+route") {
    rule.kind = Kind::identity_route;
  } else if (setting == "ip") {
    rule.kind = Kind::ip;
  } else if (setting == "global") {
    rule.kind = Kind::global;
  } else if (setting.starts_with("header:") && setting.size() > 7) {
    rule.kind = Kind::header;
    rule.header_name = std::string(setting.substr(7));
  } else {
    throw std::invalid_argument("scope: '" + std::string(setting) +
                                "' is not identity, identity+route, ip, global or header:NAME");
  }
  return rule;
}

std::string ScopeRule::to_string() const {
  switch (kind) {
    case Kind::identity:
      return "identity";
    case Kind::identity_route:
      return "identity+route";
    case Kind::ip:
      return "ip";
    case Kind::global:
      return "global";
    case Kind::header:
      return "header:" + header_name;
  }
  return "identity";
}

namespace {

struct Address {
  unsigned char bytes[16] = {};
  bool v6 = false;
};

bool parse_address(std::string_view text, Address& out) {
  char buf[INET6_ADDRSTRLEN + 1];
  if (text.size() >= 2 && text.front() == '[' && text.back() == ']') {
    text = text.substr(1, text.size() - 2);
  }
  if (text.empty() || text.size() >= sizeof buf) return false;
  std::memcpy(buf, text.data(), text.size());
  buf[text.size()] = '\0';
  if (inet_pton(AF_INET, buf, out.bytes) == 1) {
    out.v6 = false;
    return true;
  }
  if (inet_pton(AF_INET6, buf, out.bytes) == 1) {
    out.v6 = true;
    return true;
  }
  return false;
}

std::string_view trim(std::string_view v) noexcept {
  while (!v.empty() && (v.front() == ' ' || v.front() == '\t')) v.remove_prefix(1);
  while (!v.empty() && (v.back() == ' ' || v.back() == '\t')) v.remove_suffix(1);
  return v;
}

}  // namespace

TrustedProxies::TrustedProxies(const std::vector<std::string>& cidrs) {
  for (const auto& entry : cidrs) {
    std::string_view text = entry;
    auto slash = text.find('/');
    Address addr;
    if (!parse_address(text.substr(0, slash), addr)) {
      throw std::invalid_argument("trusted_proxies: '" + entry + "' is not an address or CIDR");
    }
    int max_prefix = addr.v6 ? 128 : 32;
    int prefix = max_prefix;
    if (slash != std::string_view::npos) {
      auto p = text.substr(slash + 1);
      auto [end, ec] = std::from_chars(p.data(), p.data() + p.size(), prefix);
      if (ec != std::errc{} || end != p.data() + p.size() || prefix < 0 || prefix > max_prefix) {
        throw std::invalid_argument("trusted_proxies: '" + entry + "' has a bad prefix length");
      }
    }
    Net net{};
    std::memcpy(net.bytes, addr.bytes, sizeof net.bytes);
    net.prefix = prefix;
    net.v6 = addr.v6;
    nets_.push_back(net);
  }
}

bool TrustedProxies::contains(std::string_view address) const noexcept {
  Address addr;
  if (!parse_address(address, addr)) return false;
  for (const auto& net : nets_) {
    if (net.v6 != addr.v6) continue;
    int full = net.prefix / 8, rest = net.prefix % 8;
    if (std::memcmp(net.bytes, addr.bytes, static_cast<std::size_t>(full)) != 0) continue;
    if (rest != 0) {
      unsigned char mask = static_cast<unsigned char>(0xff << (8 - rest));
      if ((net.bytes[full] & mask) != (addr.bytes[full] & mask)) continue;
    }
    return true;
  }
  return false;
}

std::string identity_of(const RequestView& request,
                        const std::vector<std::string>& identity_headers) {
  std::string identity;
  auto append = [&](std::string_view name) {
    for (const auto& h : request.headers) {
      if (!iequals(h.name, name)) continue;
      if (!identity.empty()) identity.push_back('\n');
      identity.append(h.value);
    }
  };
  append("Authorization");
  for (const auto& name : identity_headers) {
    if (!iequals(name, "Authorization")) append(name);
  }
  return identity;
}

std::string client_address(const RequestView& request, const TrustedProxies& trusted) {
  std::string_view peer = request.peer_address;
  if (trusted.empty() || !trusted.contains(peer)) return std::string(peer);
  // Walk X-Forwarded-For from the right: each hop appended the address it saw, so the
  // first address that is not a trusted proxy is the client's.
  std::string_view candidate = peer;
  for (auto it = request.headers.rbegin(); it != request.headers.rend(); ++it) {
    if (!iequals(it->name, "X-Forwarded-For")) continue;
    std::string_view list = it->value;
    while (!list.empty()) {
      auto comma = list.rfind(',');
      std::string_view entry =
          trim(comma == std::string_view::npos ? list : list.substr(comma + 1));
      list = comma == std::string_view::npos ? std::string_view{} : list.substr(0, comma);
      if (entry.empty()) continue;
      candidate = entry;
      if (!trusted.contains(entry)) return std::string(entry);
    }
  }
  return std::string(candidate);
}

namespace {

std::string tagged(std::string_view tag, std::string_view value, std::string_view route) {
  std::string out;
  out.reserve(tag.size() + value.size() + route.size() + 2);
  out.append(tag).push_back('\0');
  out.append(value);
  if (!route.empty()) {
    out.push_back('\0');
    out.append(route);
  }
  return out;
}

}  // namespace

std::string scope_string_from_value(const ScopeRule& rule, std::string_view value,
                                    std::string_view route) {
  switch (rule.kind) {
    case ScopeRule::Kind::identity:
      return tagged("identity", value, {});
    case ScopeRule::Kind::identity_route:
      return tagged("identity+route", value, route.empty() ? std::string_view("/") : route);
    case ScopeRule::Kind::ip:
      return tagged("ip", value, {});
    case ScopeRule::Kind::global:
      return tagged("global", {}, {});
    case ScopeRule::Kind::header:
      return tagged("header:" + rule.header_name, value, {});
  }
  return tagged("identity", value, {});
}

std::string scope_string(const ScopeRule& rule, const RequestView& request,
                         const std::vector<std::string>& identity_headers,
                         const TrustedProxies& trusted, std::string_view route) {
  switch (rule.kind) {
    case ScopeRule::Kind::identity:
    case ScopeRule::Kind::identity_route:
      return scope_string_from_value(rule, identity_of(request, identity_headers), route);
    case ScopeRule::Kind::ip:
      return scope_string_from_value(rule, client_address(request, trusted), route);
    case ScopeRule::Kind::global:
      return scope_string_from_value(rule, {}, route);
    case ScopeRule::Kind::header:
      return scope_string_from_value(rule, request.header(rule.header_name).value_or(""), route);
  }
  return {};
}

}  // namespace idem
