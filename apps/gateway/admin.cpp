#include "admin.hpp"

#include <boost/asio/post.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <ctime>
#include <optional>

#include "event_log.hpp"
#include "http_util.hpp"
#include "idem/key.hpp"

namespace idem::gateway {

namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;
using boost::system::error_code;

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

/// RFC 3986 percent-decoding. '+' stays '+': scope values (tokens, base64) may hold it.
std::optional<std::string> percent_decode(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] != '%') {
      out.push_back(s[i]);
      continue;
    }
    if (i + 2 >= s.size()) return std::nullopt;
    int hi = hex_value(s[i + 1]), lo = hex_value(s[i + 2]);
    if (hi < 0 || lo < 0) return std::nullopt;
    out.push_back(static_cast<char>(hi * 16 + lo));
    i += 2;
  }
  return out;
}

/// The first value of `name` in a query string, decoded.
std::optional<std::string> query_param(std::string_view query, std::string_view name) {
  while (!query.empty()) {
    auto amp = query.find('&');
    std::string_view pair = query.substr(0, amp);
    auto eq = pair.find('=');
    std::string_view k = pair.substr(0, eq);
    if (k == name) {
      return percent_decode(eq == std::string_view::npos ? std::string_view{}
                                                         : pair.substr(eq + 1));
    }
    if (amp == std::string_view::npos) break;
    query.remove_prefix(amp + 1);
  }
  return std::nullopt;
}

std::string iso8601(TimePoint t) {
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(t.time_since_epoch()).count();
  std::time_t seconds = static_cast<std::time_t>(ms / 1000);
  std::tm tm{};
  gmtime_r(&seconds, &tm);
  char buf[48];
  std::size_t n = std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm);
  std::snprintf(buf + n, sizeof buf - n, ".%03dZ", static_cast<int>(ms % 1000));
  return buf;
}

std::string record_json(const RecordId& id, const Record& r) {
  std::string j = "{\"record\":\"" + id.hex() + "\",\"state\":";
  j += r.state == RecordState::completed ? "\"completed\"" : "\"in_flight\"";
  j += ",\"fingerprint\":\"" + r.fingerprint.hex() + "\"";
  j += ",\"fencing_token\":" + std::to_string(r.fencing_token);
  j += ",\"created_at\":\"" + iso8601(r.created_at) + "\"";
  j += ",\"expires_at\":\"" + iso8601(r.expires_at) + "\"";
  if (r.state == RecordState::in_flight) {
    j += ",\"lease\":{\"owner\":";
    append_json_string(j, r.lease_owner);
    j += ",\"expires_at\":\"" + iso8601(r.lease_expires_at) + "\"";
    j += ",\"expired\":";
    j += r.lease_expired(std::chrono::system_clock::now()) ? "true" : "false";
    j += "}";
  }
  if (r.response) {
    const auto& resp = *r.response;
    j += ",\"response\":{\"status\":" + std::to_string(resp.status);
    j += ",\"headers\":[";
    bool first = true;
    for (const auto& [name, value] : resp.headers) {
      if (!first) j += ',';
      first = false;
      append_json_string(j, name);  // names only: values may be personal
    }
    j += "],\"body_bytes\":" + std::to_string(resp.body.size());
    j += ",\"body_stored\":";
    j += resp.body_stored ? "true" : "false";
    j += "}";
  }
  j += "}\n";
  return j;
}

std::string problem_json(int status, std::string_view name, std::string_view title,
                         std::string_view detail) {
  return gateway_problem(status, "urn:idem:problem:", name, title, detail).body + "\n";
}

class AdminSession : public std::enable_shared_from_this<AdminSession> {
 public:
  AdminSession(tcp::socket socket, asio::io_context& loop, std::shared_ptr<const AdminHooks> hooks)
      : stream_(std::move(socket)), loop_(loop), hooks_(std::move(hooks)) {}

  void read() {
    parser_.emplace();
    parser_->header_limit(16 * 1024);
    parser_->body_limit(64 * 1024);
    stream_.expires_after(std::chrono::seconds(30));
    http::async_read(stream_, buffer_, *parser_,
                     [self = shared_from_this()](error_code ec, std::size_t) {
                       if (ec) return self->close();
                       self->handle();
                     });
  }

 private:
  void handle() {
    const auto& req = parser_->get();
    keep_alive_ = req.keep_alive();
    std::string_view target = req.target();
    auto q = target.find('?');
    std::string_view path = target.substr(0, q);
    std::string_view query =
        q == std::string_view::npos ? std::string_view{} : target.substr(q + 1);
    auto method = req.method();
    bool get = method == http::verb::get || method == http::verb::head;

    if (path == "/healthz") {
      if (!get) return not_allowed("GET");
      bool up = hooks_->accepting();
      return reply(up ? 200 : 503, "text/plain; charset=utf-8", up ? "ok\n" : "not accepting\n");
    }
    if (path == "/readyz") {
      if (!get) return not_allowed("GET");
      if (!hooks_->accepting()) return reply(503, "text/plain; charset=utf-8", "not accepting\n");
      auto engine = hooks_->engine();
      engine->store().ping([self = shared_from_this()](Result<bool> ok) {
        bool ready = ok && *ok;
        asio::post(self->loop_, [self, ready] {
          self->reply(ready ? 200 : 503, "text/plain; charset=utf-8",
                      ready ? "ready\n" : "store unreachable\n");
        });
      });
      return;
    }
    if (path == "/metrics") {
      if (!get) return not_allowed("GET");
      return reply(200, "text/plain; version=0.0.4; charset=utf-8", hooks_->metrics());
    }
    if (path.starts_with("/keys/")) return keys(method, path.substr(6), query);
    reply(404, "application/problem+json",
          problem_json(404, "not-found", "Not found",
                       "The admin API serves /healthz, /readyz, /metrics and /keys/{key}."));
  }

  void keys(http::verb method, std::string_view encoded_key, std::string_view query) {
    if (method != http::verb::get && method != http::verb::head && method != http::verb::delete_) {
      return not_allowed("GET, DELETE");
    }
    auto raw_key = percent_decode(encoded_key);
    auto scope = query_param(query, "scope");
    auto req_method = query_param(query, "method");
    auto req_path = query_param(query, "path");
    if (!raw_key || (query.find("scope=") != std::string_view::npos && !scope)) {
      return reply(400, "application/problem+json",
                   problem_json(400, "bad-request", "Bad request", "Bad percent-encoding."));
    }
    // The key as a client sends it: a bare token or a Structured Field string.
    auto parsed = parse_key(*raw_key, KeyFormat{});
    if (auto* error = std::get_if<KeyError>(&parsed)) {
      return reply(400, "application/problem+json",
                   problem_json(400, "invalid-key", "Invalid key", describe(*error)));
    }
    const std::string& key = std::get<std::string>(parsed);
    auto engine = hooks_->engine();
    RecordId id = engine->record_id(scope.value_or(""), key, req_method.value_or("POST"),
                                    req_path.value_or("/"));
    auto self = shared_from_this();
    if (method == http::verb::delete_) {
      engine->flush(id, [self, id](Result<bool> removed) {
        asio::post(self->loop_, [self, id, ok = removed.has_value(),
                                 hit = removed.has_value() && *removed] {
          if (!ok) {
            return self->reply(503, "application/problem+json",
                               problem_json(503, "store-unavailable", "Store unavailable",
                                            "The store did not answer."));
          }
          if (!hit) {
            return self->reply(404, "application/problem+json",
                               problem_json(404, "record-not-found", "No record",
                                            "No record for this key in this scope."));
          }
          log::info("record flushed", LogFields().add("record", id.hex()));
          self->reply(200, "application/json",
                      "{\"record\":\"" + id.hex() + "\",\"deleted\":true}\n");
        });
      });
      return;
    }
    engine->lookup(id, [self, id](Result<std::optional<Record>> found) {
      std::optional<std::string> body;
      bool ok = found.has_value();
      if (ok && *found) body = record_json(id, **found);
      asio::post(self->loop_, [self, ok, body = std::move(body)] {
        if (!ok) {
          return self->reply(503, "application/problem+json",
                             problem_json(503, "store-unavailable", "Store unavailable",
                                          "The store did not answer."));
        }
        if (!body) {
          return self->reply(404, "application/problem+json",
                             problem_json(404, "record-not-found", "No record",
                                          "No record for this key in this scope."));
        }
        self->reply(200, "application/json", *body);
      });
    });
  }

  void not_allowed(std::string_view allow) {
    response_ = {};
    response_.set(http::field::allow, allow);
    reply(405, "application/problem+json",
          problem_json(405, "method-not-allowed", "Method not allowed", "See the Allow header."),
          /*reset=*/false);
  }

  void reply(int status, std::string_view content_type, std::string body, bool reset = true) {
    if (reset) response_ = {};
    response_.result(static_cast<unsigned>(status));
    response_.version(11);
    response_.set(http::field::content_type, content_type);
    response_.set(http::field::date, http_date());
    response_.set(http::field::cache_control, "no-store");
    response_.body() = std::move(body);
    response_.keep_alive(keep_alive_);
    response_.prepare_payload();
    if (parser_->get().method() == http::verb::head) response_.body().clear();
    http::async_write(stream_, response_, [self = shared_from_this()](error_code ec, std::size_t) {
      if (ec || !self->keep_alive_) return self->close();
      self->read();
    });
  }

  void close() {
    error_code ignored;
    stream_.socket().shutdown(tcp::socket::shutdown_send, ignored);
    stream_.close();
  }

  beast::tcp_stream stream_;
  asio::io_context& loop_;
  std::shared_ptr<const AdminHooks> hooks_;
  beast::flat_buffer buffer_;
  std::optional<http::request_parser<http::string_body>> parser_;
  http::response<http::string_body> response_;
  bool keep_alive_ = true;
};

}  // namespace

AdminServer::AdminServer(asio::io_context& loop, AdminHooks hooks)
    : loop_(loop), acceptor_(loop), hooks_(std::make_shared<AdminHooks>(std::move(hooks))) {}

AdminServer::~AdminServer() = default;

void AdminServer::listen(const tcp::endpoint& endpoint) {
  acceptor_.open(endpoint.protocol());
  acceptor_.set_option(tcp::acceptor::reuse_address(true));
  acceptor_.bind(endpoint);
  acceptor_.listen();
  asio::post(loop_, [this] { accept(); });
}

tcp::endpoint AdminServer::local_endpoint() const { return acceptor_.local_endpoint(); }

void AdminServer::stop() {
  error_code ignored;
  acceptor_.close(ignored);
}

void AdminServer::accept() {
  acceptor_.async_accept(loop_, [this](error_code ec, tcp::socket socket) {
    if (ec == asio::error::operation_aborted || !acceptor_.is_open()) return;
    if (!ec) std::make_shared<AdminSession>(std::move(socket), loop_, hooks_)->read();
    accept();
  });
}

}  // namespace idem::gateway
