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
    auto raw_key = percent_decoded(encoded_key);
    std::string scope, req_method = "POST", req_path = "/";
    bool bad_encoding = !raw_key;
    for (auto [name, value] : {std::pair{"scope", &scope}, std::pair{"method", &req_method},
                               std::pair{"path", &req_path}}) {
      if (query_value(query, name, *value) == QueryValue::bad_encoding) bad_encoding = true;
    }
    if (bad_encoding) {
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
    RecordId id = engine->record_id(scope, key, req_method, req_path);
    auto self = shared_from_this();
    if (method == http::verb::delete_) {
      engine->flush(id, [self, id](Result<bool> removed) {
        if (removed && self->hooks_->flushed) self->hooks_->flushed(id);
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
