// idemctl inspect / flush: one request to a running gateway's admin API. The gateway names
// the record (its secret, the scope rule of the route that --method and --path pick), so
// these work with every store, while the gateway runs.

#include "admin_commands.hpp"

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http.hpp>
#include <boost/url/encode.hpp>
#include <boost/url/parse.hpp>
#include <boost/url/rfc/unreserved_chars.hpp>
#include <chrono>
#include <cstdio>
#include <memory>
#include <optional>
#include <string>

#include "command.hpp"

namespace idemctl {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;

struct Args {
  std::string key;
  std::optional<std::string> scope;
  std::optional<std::string> method;
  std::optional<std::string> path;
  std::string admin = "127.0.0.1:9091";
  double timeout_seconds = 10;
};

struct Endpoint {
  std::string host;
  std::string port;
};

Endpoint parse_admin(const std::string& text) {
  auto authority = boost::urls::parse_authority(text);
  if (!authority || !authority->has_port() || authority->port_number() == 0 ||
      authority->host().empty() || authority->has_userinfo()) {
    throw UsageError("--admin: expected HOST:PORT, e.g. 127.0.0.1:9091, got '" + text + "'");
  }
  std::string host = authority->host_address();  // [::1] -> ::1
  return {host, std::string(authority->port())};
}

std::string encoded(const std::string& text) {
  return boost::urls::encode(text, boost::urls::unreserved_chars);
}

std::string target_of(const Args& a) {
  std::string target = "/keys/" + encoded(a.key);
  char separator = '?';
  auto add = [&](const char* name, const std::optional<std::string>& value) {
    if (!value) return;
    target += separator;
    target += name;
    target += '=';
    target += encoded(*value);
    separator = '&';
  };
  add("scope", a.scope);
  add("method", a.method);
  add("path", a.path);
  return target;
}

std::string one_line(std::string text) {
  while (!text.empty() && (text.back() == '\n' || text.back() == '\r')) text.pop_back();
  for (char& c : text) {
    if (c == '\n' || c == '\r') c = ' ';
  }
  return text;
}

struct Failed {
  std::string what;
};

// One request, one answer, within the deadline. Failures to connect or to hear back are
// Failed; any HTTP answer is returned.
http::response<http::string_body> ask(const Args& a, const Endpoint& endpoint, http::verb verb) {
  const auto deadline = std::chrono::duration_cast<std::chrono::steady_clock::duration>(
      std::chrono::duration<double>(a.timeout_seconds));
  const std::string where = "the admin API at " + a.admin;
  asio::io_context io;
  beast::tcp_stream stream(io);
  beast::error_code ec;
  tcp::resolver resolver(io);
  auto addresses = resolver.resolve(endpoint.host, endpoint.port, ec);
  if (ec) throw Failed{"cannot resolve " + where + ": " + ec.message()};
  stream.expires_after(deadline);
  stream.connect(addresses, ec);
  if (ec) throw Failed{"cannot reach " + where + ": " + ec.message()};

  http::request<http::string_body> request(verb, target_of(a), 11);
  request.set(http::field::host, a.admin);
  request.set(http::field::user_agent, "idemctl");
  request.set(http::field::connection, "close");
  request.prepare_payload();
  http::write(stream, request, ec);
  if (ec) throw Failed{"cannot send to " + where + ": " + ec.message()};

  beast::flat_buffer buffer;
  http::response_parser<http::string_body> parser;
  parser.body_limit(16 * 1024 * 1024);
  http::read(stream, buffer, parser, ec);
  if (ec == beast::error::timeout) {
    throw Failed{where + " did not answer within " + std::to_string(a.timeout_seconds) + " s"};
  }
  if (ec) throw Failed{"no answer from " + where + ": " + ec.message()};
  return parser.release();
}

// What a command prints: the answer's body on 200, else one line on stderr and exit 1.
int answer(const Args& a, const Endpoint& endpoint, http::verb verb) {
  try {
    auto response = ask(a, endpoint, verb);
    const unsigned status = response.result_int();
    if (status == 200) {
      std::string body = response.body();
      if (body.empty() || body.back() != '\n') body += '\n';
      std::fwrite(body.data(), 1, body.size(), stdout);
      return 0;
    }
    const std::string scope = a.scope ? "scope '" + *a.scope + "'" : "the anonymous scope";
    if (status == 404) {
      std::fprintf(stderr, "idemctl: no record for key '%s' in %s\n", a.key.c_str(), scope.c_str());
    } else {
      std::fprintf(stderr, "idemctl: the admin API at %s answered %u: %s\n", a.admin.c_str(),
                   status, one_line(response.body()).c_str());
    }
  } catch (const Failed& e) {
    std::fprintf(stderr, "idemctl: %s\n", e.what.c_str());
  }
  return 1;
}

void add_flags(CLI::App* cmd, Args& a) {
  cmd->add_option("--key", a.key, "The Idempotency-Key, as the client sends it")->required();
  cmd->add_option("--scope", a.scope,
                  "The identity the key belongs to (e.g. 'Bearer tok_1'); none: anonymous");
  cmd->add_option("--method", a.method, "With --path: the request whose route names the record");
  cmd->add_option("--path", a.path, "The request path whose route's scope rule applies");
  cmd->add_option("--admin", a.admin, "The gateway's admin listener, HOST:PORT")
      ->capture_default_str();
  cmd->add_option("--timeout", a.timeout_seconds, "Seconds to wait for the answer")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
}

}  // namespace

void add_admin_commands(CLI::App& app, int& exit_code) {
  auto args = std::make_shared<Args>();
  CLI::App* inspect = app.add_subcommand(
      "inspect", "Show a record through a running gateway's admin API (any store)");
  add_flags(inspect, *args);
  // A bad --admin is a usage error (exit 2), found before any connection.
  inspect->callback(
      [args, &exit_code] { exit_code = answer(*args, parse_admin(args->admin), http::verb::get); });
  CLI::App* flush = app.add_subcommand(
      "flush", "Erase a record through a running gateway's admin API: its retry executes");
  add_flags(flush, *args);
  flush->callback([args, &exit_code] {
    exit_code = answer(*args, parse_admin(args->admin), http::verb::delete_);
  });
}

}  // namespace idemctl
