// One client connection: reads requests, asks the engine what to do with each, and either
// answers (replay, problem) or forwards to the upstream and streams the answer back.
//
// Requests on a connection are handled one at a time, so pipelined requests are answered
// in order. The upstream exchange never depends on the client: a client that goes away
// while the upstream works only stops the writes; the response is still read whole and
// handed to the engine, so that the client's retry is replayed.

#include <boost/asio/connect.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <charconv>
#include <optional>

#include "asio_scheduler.hpp"
#include "event_log.hpp"
#include "http_util.hpp"
#include "listener.hpp"

namespace idem::gateway {

namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;
using boost::system::error_code;
using Clock = std::chrono::steady_clock;

constexpr std::size_t kUpstreamHeaderLimit = 64 * 1024;
constexpr std::size_t kFirstReadSize = 8 * 1024;
constexpr std::size_t kBodyReadSize = 64 * 1024;
constexpr std::size_t kRetainedBytes = 64 * 1024;  ///< larger buffers are freed after use
constexpr auto kLingerTime = std::chrono::seconds(2);

constexpr SteadyTime kNever = SteadyTime::max();

/// A reused keep-alive connection that the upstream closed before reading our request
/// fails in one of these ways; the request was not processed, so it may be resent.
bool is_stale_connection(const error_code& ec) {
  return ec == http::error::end_of_stream || ec == asio::error::eof ||
         ec == asio::error::connection_reset || ec == asio::error::broken_pipe ||
         ec == asio::error::connection_aborted || ec == http::error::partial_message;
}

/// Writes `buffers` at once if the socket takes them (the common case: a response fits
/// the send buffer), calling `done` inline; else writes the rest asynchronously. Saves a
/// posted completion and a turn of the event loop per write. The socket is non-blocking.
template <class Stream, class Buffers, class Done>
void write_now_or_later(Stream& stream, const Buffers& buffers, Done&& done) {
  error_code ec;
  std::size_t total = asio::buffer_size(buffers);
  std::size_t n = total == 0 ? 0 : stream.write_some(buffers, ec);
  if (!ec && n == total) return done(ec, n);
  if (ec && ec != asio::error::would_block && ec != asio::error::try_again) return done(ec, n);
  beast::buffers_suffix<Buffers> rest(buffers);
  rest.consume(n);
  asio::async_write(stream, rest,
                    [done = std::forward<Done>(done), n](error_code ec, std::size_t m) mutable {
                      done(ec, n + m);
                    });
}

template <class T>
void release_if_large(T& buffer) {
  if (buffer.capacity() > kRetainedBytes) T().swap(buffer);
}

class Session final : public SessionBase, public std::enable_shared_from_this<Session> {
 public:
  Session(Worker& worker, Socket socket) : SessionBase(worker), stream_(std::move(socket)) {
    error_code ec;
    auto peer = stream_.remote_endpoint(ec);
    if (!ec) {
      auto address = peer.address();
      // Report IPv4 clients of a dual-stack listener as plain IPv4.
      if (address.is_v6() && address.to_v6().is_v4_mapped()) {
        address = asio::ip::make_address_v4(asio::ip::v4_mapped, address.to_v6());
      }
      peer_ = address.to_string();
    }
    stream_.set_option(tcp::no_delay(true), ec);
    stream_.non_blocking(true, ec);  // for write_now_or_later
  }

  ~Session() override {
    if (counted_) worker_.metrics().in_flight.add(-1);
    release_segments();
    // A ticket still held here is released by its destructor: no record stays in flight.
  }

  void start() { await_request(); }

  void on_drain() override {
    if (phase_ == Phase::idle) {
      error_code ignored;
      stream_.cancel(ignored);
    }
  }

  void abort() override {
    error_code ignored;
    stream_.close(ignored);
    if (up_) up_->socket.close(ignored);
  }

  void on_tick(SteadyTime now) override {
    error_code ignored;
    if (now >= client_deadline_) {
      // The handler of the pending client operation sees operation_aborted. The deadline
      // stays until that handler runs, so a composed operation cannot start afresh.
      client_timed_out_ = true;
      stream_.cancel(ignored);
    }
    if (now >= up_deadline_ && up_) {
      up_timed_out_ = true;
      up_->socket.close(ignored);  // again each tick: a range connect tries the next address
    }
    if (ticket_ && now >= renew_at_) {
      renew_at_ = now + ticket_->renew_interval();
      renew_lease();
    }
  }

 private:
  enum class Phase { idle, reading, handling, closed };

  const Timeouts& timeouts() const { return worker_.runtime().timeouts; }

  // ---- client: reading requests ----

  void await_request() {
    if (worker_.draining()) return close_client();
    phase_ = Phase::idle;
    if (buffer_.size() > 0) return read_header();  // pipelined bytes already here
    // Waiting for the next request falls under idle_timeout; once its first bytes are
    // here, header_timeout applies.
    // Wait for readiness instead of reading at once: the client has not even seen our
    // last response yet, so an immediate read would almost always find nothing (a wasted
    // system call per request); readiness comes batched with the loop's other events.
    client_deadline(timeouts().idle);
    stream_.async_wait(Socket::wait_read,
                       [self = shared_from_this()](error_code ec) { self->on_readable(ec); });
  }

  void on_readable(error_code ec) {
    if (!ec) {
      std::size_t n = stream_.read_some(buffer_.prepare(kFirstReadSize), ec);  // non-blocking
      buffer_.commit(n);
      if (ec == asio::error::would_block || ec == asio::error::try_again) {
        return stream_.async_wait(Socket::wait_read, [self = shared_from_this()](error_code ec) {
          self->on_readable(ec);
        });
      }
      if (!ec && n == 0) ec = asio::error::eof;
    }
    client_deadline_ = kNever;
    if (ec) return close_client();
    read_header();
  }

  void read_header() {
    phase_ = Phase::reading;
    parser_.emplace();
    parser_->header_limit(static_cast<std::uint32_t>(timeouts().max_header_bytes));
    // The route's limit is set once the header names the route; until then Beast's
    // default (1 MiB) must not judge the Content-Length.
    parser_->body_limit(boost::none);
    client_deadline(timeouts().header);
    http::async_read_header(stream_, buffer_, *parser_,
                            [self = shared_from_this()](error_code ec, std::size_t) {
                              self->client_deadline_ = kNever;
                              self->on_header(ec);
                            });
  }

  void on_header(error_code ec) {
    if (ec) {
      if (ec == http::error::end_of_stream || ec == asio::error::eof ||
          (ec == asio::error::operation_aborted && !client_timed_out_)) {
        return close_client();
      }
      worker_.metrics().bad_requests.add();
      if (ec == http::error::header_limit) {
        return send_problem(431, "header-too-large", "Request header too large",
                            "The request's header is over the gateway's limit.", true, true);
      }
      if (client_timed_out_ || ec == asio::error::connection_reset) return close_client();
      return send_problem(400, "bad-request", "Malformed request",
                          "The request is not valid HTTP/1.1.", true, true);
    }
    begin_request();
    const auto& req = parser_->get();
    keep_alive_ = parser_->keep_alive();
    http11_ = req.version() >= 11;
    is_head_ = req.method() == http::verb::head;
    if (req.find(http::field::transfer_encoding) != req.end() && !parser_->chunked()) {
      // RFC 9112 section 6.3: a request whose framing is not chunked cannot be read.
      worker_.metrics().bad_requests.add();
      return send_problem(400, "bad-request", "Malformed request",
                          "Transfer-Encoding must end with chunked.", true, true);
    }

    if (!normalize_target()) {
      worker_.metrics().bad_requests.add();
      return send_problem(400, "bad-request", "Malformed request",
                          "The request target is neither a path nor an http(s) URI.", true, true);
    }

    // The route decides the body limit, so it is chosen before the body is read.
    const auto& engine = worker_.runtime().engine;
    auto match = engine->policies().match(req.method_string(), path_of(req.target()));
    type_base_ = match.policy->problem_type_base;
    std::size_t limit = match.policy->max_request_bytes;
    if (auto length = parser_->content_length(); length && *length > limit) {
      return reject_too_large(limit);
    }
    if (parser_->is_done()) return handle_request();
    parser_->body_limit(limit);

    auto expect = req.find(http::field::expect);
    if (expect != req.end() && http11_ && iequals(expect->value(), "100-continue") &&
        buffer_.size() == 0) {
      // The client waits for this before sending its body (curl does, for a while).
      static constexpr std::string_view kContinue = "HTTP/1.1 100 Continue\r\n\r\n";
      client_deadline(timeouts().body);
      asio::async_write(stream_, asio::buffer(kContinue.data(), kContinue.size()),
                        [self = shared_from_this()](error_code ec, std::size_t) {
                          self->client_deadline_ = kNever;
                          if (ec) return self->close_client();
                          self->read_body();
                        });
      return;
    }
    read_body();
  }

  /// A target in absolute-form (RFC 9112 section 3.2.2) becomes origin-form, its authority
  /// the Host: routes, fingerprints and the upstream then see one request whichever form
  /// the client used (a route could otherwise be sidestepped by naming it as a URI).
  bool normalize_target() {
    auto& req = parser_->get();
    const std::string_view target = req.target();
    if (target.starts_with('/') || (target == "*" && req.method() == http::verb::options)) {
      return true;
    }
    auto origin = origin_form_of(target);
    if (!origin) return false;
    req.target(origin->target);
    req.set(http::field::host, origin->authority);
    return true;
  }

  void read_body() {
    // Beast reads at most the buffer's free capacity: let large bodies come in big reads.
    if (auto length = parser_->content_length_remaining(); !length || *length > kFirstReadSize) {
      buffer_.reserve(std::min<std::size_t>(length.value_or(kBodyReadSize), kBodyReadSize));
    }
    client_deadline(timeouts().body);
    http::async_read(stream_, buffer_, *parser_,
                     [self = shared_from_this()](error_code ec, std::size_t) {
                       self->client_deadline_ = kNever;
                       self->on_body(ec);
                     });
  }

  void on_body(error_code ec) {
    if (ec == http::error::body_limit) {
      return reject_too_large(
          worker_.runtime()
              .engine->policies()
              .match(parser_->get().method_string(), path_of(parser_->get().target()))
              .policy->max_request_bytes);
    }
    // A client that leaves before its whole body arrived has sent nothing: nothing is
    // forwarded and no record is made.
    if (ec) {
      if (client_timed_out_) worker_.metrics().bad_requests.add();
      return close_client();
    }
    handle_request();
  }

  void begin_request() {
    if (!counted_) {
      counted_ = true;
      worker_.metrics().in_flight.add(1);
    }
  }

  void reject_too_large(std::size_t limit) {
    worker_.metrics().outcomes[static_cast<std::size_t>(Outcome::too_large)].add();
    Problem problem{ProblemType::body_too_large,
                    "The request body is over the limit of " + std::to_string(limit) + " bytes.",
                    std::nullopt, std::nullopt};
    // The rest of the body is not read: close after answering.
    write_response(problem.to_response(type_base_), /*close=*/true, /*linger=*/true);
  }

  static std::string_view path_of(std::string_view target) {
    return target.substr(0, target.find('?'));
  }

  // ---- the engine ----

  void handle_request() {
    phase_ = Phase::handling;
    const auto& req = parser_->get();
    view_headers_.clear();
    for (const auto& field : req) {
      view_headers_.push_back(HeaderField{field.name_string(), field.value()});
    }
    RequestView view;
    view.method = req.method_string();
    view.target = req.target();
    view.headers = view_headers_;
    view.body = req.body();
    view.peer_address = peer_;

    engine_ = worker_.runtime().engine;
    begin_time_ = Clock::now();
    // The callback holds a plain pointer (so std::function needs no allocation); the
    // session keeps itself alive until the decision arrives (and, being listed with its
    // worker, keeps the worker's ticker and so a draining loop running meanwhile).
    self_ = shared_from_this();
    in_begin_ = true;
    engine_->begin(view, [this](Decision decision) { deliver(std::move(decision)); });
    in_begin_ = false;
    if (inline_decision_) {
      Decision decision = std::move(*inline_decision_);
      inline_decision_.reset();
      on_decision(std::move(decision));
    }
  }

  /// Runs on whatever thread the store answered on.
  void deliver(Decision decision) {
    if (ThreadLoop::current() == &worker_.loop() && in_begin_) {  // only that thread reads it
      // Answered inline (the memory store): act once begin() has returned, outside the
      // store's call stack.
      inline_decision_.emplace(std::move(decision));
      return;
    }
    asio::post(worker_.loop(),
               [this, d = std::move(decision)]() mutable { on_decision(std::move(d)); });
  }

  void on_decision(Decision decision) {
    auto self = std::move(self_);
    auto& metrics = worker_.metrics();
    metrics.outcomes[static_cast<std::size_t>(decision.outcome)].add();
    bool touched_store =
        decision.action == Decision::Action::proceed ||
        (decision.outcome != Outcome::passthrough && decision.outcome != Outcome::missing_key &&
         decision.outcome != Outcome::invalid_key);
    if (touched_store) metrics.store_latency.observe(Clock::now() - begin_time_);

    switch (decision.action) {
      case Decision::Action::respond:
        return write_response(std::move(decision.response), !keep_alive_, false);
      case Decision::Action::proceed:
        ticket_ = std::move(decision.ticket);
        return forward();
      case Decision::Action::pass_through:
        return forward();
    }
  }

  // ---- client: whole responses (replays, problems) ----

  void send_problem(int status, std::string_view name, std::string_view title,
                    std::string_view detail, bool close, bool linger = false) {
    std::string_view base =
        type_base_.empty() ? std::string_view("urn:idem:problem:") : std::string_view(type_base_);
    write_response(gateway_problem(status, base, name, title, detail), close, linger);
  }

  void write_response(Response response, bool close, bool linger) {
    if (client_gone_) return end_request();
    close_after_ = close || worker_.draining();
    head_.clear();
    append_status_line(head_, response.status, {});
    for (const auto& [name, value] : response.headers) {
      // Framing and Date are this hop's business.
      if (iequals(name, "Content-Length") || iequals(name, "Date") ||
          is_hop_by_hop(name, ConnectionTokens{})) {
        continue;
      }
      append_field(head_, name, value);
    }
    append_field(head_, "Date", http_date());
    append_field(head_, "Content-Length", std::to_string(response.body.size()));
    if (close_after_) {
      append_field(head_, "Connection", "close");
    } else if (!http11_) {
      append_field(head_, "Connection", "keep-alive");
    }
    head_.append("\r\n");
    body_out_ = std::move(response.body);
    std::array<asio::const_buffer, 2> buffers{asio::buffer(head_), asio::buffer(body_out_)};
    if (is_head_) buffers[1] = asio::const_buffer();
    client_deadline(timeouts().body);
    write_now_or_later(stream_, buffers,
                       [self = shared_from_this(), linger](error_code ec, std::size_t) {
                         self->client_deadline_ = kNever;
                         if (ec) {
                           self->worker_.metrics().client_aborts.add();
                           self->client_gone_ = true;
                         }
                         if (linger && !ec) return self->linger_close();
                         self->end_request();
                       });
  }

  /// The request is answered (or its client gone): on to the next one, or close.
  void end_request() {
    if (counted_) {
      counted_ = false;
      worker_.metrics().in_flight.add(-1);
    }
    engine_.reset();
    release_segments();
    release_if_large(body_out_);
    if (client_gone_ || close_after_ || !keep_alive_ || worker_.draining()) {
      return close_client();
    }
    parser_.reset();
    if (buffer_.capacity() > 2 * kFirstReadSize) buffer_.shrink_to_fit();
    await_request();
  }

  void close_client() {
    if (phase_ == Phase::closed) return;
    phase_ = Phase::closed;
    error_code ignored;
    stream_.shutdown(tcp::socket::shutdown_send, ignored);
    stream_.close(ignored);
  }

  /// Closes after an answer sent before the request was read whole: reading (and
  /// dropping) what the client still sends for a moment lets it see the answer instead of
  /// a reset.
  void linger_close() {
    if (counted_) {
      counted_ = false;
      worker_.metrics().in_flight.add(-1);
    }
    phase_ = Phase::closed;
    error_code ignored;
    stream_.shutdown(tcp::socket::shutdown_send, ignored);
    // One deadline for the whole linger: the tick cancels the read when it passes.
    client_deadline_ = worker_.now() + kLingerTime;
    drain_input();
  }

  void drain_input() {
    buffer_.clear();
    stream_.async_read_some(buffer_.prepare(kFirstReadSize),
                            [self = shared_from_this()](error_code ec, std::size_t) {
                              if (ec) {
                                self->client_deadline_ = kNever;
                                error_code ignored;
                                return self->stream_.close(ignored);
                              }
                              self->drain_input();
                            });
  }

  // ---- upstream: forwarding ----

  void forward() {
    const auto& req = parser_->get();
    ConnectionTokens tokens;
    for (const auto& field : req) {
      if (field.name() == http::field::connection) tokens.add(field.value());
    }
    up_head_.clear();
    up_head_.append(req.method_string());
    up_head_.push_back(' ');
    up_head_.append(req.target());
    up_head_.append(" HTTP/1.1\r\n");
    std::string_view forwarded_for;
    std::string joined_forwarded_for;
    bool has_host = false;
    for (const auto& field : req) {
      std::string_view name = field.name_string();
      switch (field.name()) {
        case http::field::content_length:
        case http::field::expect:  // the body is already here
          continue;
        case http::field::host:
          has_host = true;
          break;
        case http::field::unknown:
          if (iequals(name, "X-Forwarded-Proto")) continue;  // replaced below
          if (iequals(name, "X-Forwarded-For")) {
            if (forwarded_for.empty() && joined_forwarded_for.empty()) {
              forwarded_for = field.value();
            } else {
              if (joined_forwarded_for.empty()) joined_forwarded_for = forwarded_for;
              joined_forwarded_for.append(", ").append(field.value());
            }
            continue;
          }
          break;
        default:
          break;
      }
      if (is_hop_by_hop(name, tokens)) continue;
      append_field(up_head_, name, field.value());
    }
    if (!has_host) append_field(up_head_, "Host", worker_.upstream_host());
    if (!joined_forwarded_for.empty()) forwarded_for = joined_forwarded_for;
    up_head_.append("X-Forwarded-For: ");
    if (!forwarded_for.empty()) up_head_.append(forwarded_for).append(", ");
    up_head_.append(peer_).append("\r\nX-Forwarded-Proto: http\r\n");
    if (!req.body().empty() || req.has_content_length() || req.chunked()) {
      append_field(up_head_, "Content-Length", std::to_string(req.body().size()));
    }
    up_head_.append("\r\n");

    forward_time_ = Clock::now();
    retried_ = false;
    response_started_ = false;
    head_pending_ = false;
    upstream_error_ = upstream_broken_ = false;
    up_parser_.reset();
    if (ticket_) renew_at_ = worker_.now() + ticket_->renew_interval();
    up_ = worker_.pool().take();
    if (up_) return send_upstream(/*reused=*/true);
    connect_upstream();
  }

  void connect_upstream() {
    up_ = worker_.pool().make();
    up_deadline(timeouts().upstream_connect);
    asio::async_connect(up_->socket, worker_.pool().endpoints(),
                        [self = shared_from_this()](error_code ec, const tcp::endpoint&) {
                          self->up_deadline_ = kNever;
                          self->on_upstream_connected(ec);
                        });
  }

  void on_upstream_connected(error_code ec) {
    if (ec) {
      return upstream_failed(up_timed_out_ ? UpstreamError::timeout : UpstreamError::connect, ec);
    }
    worker_.metrics().upstream_connects.add();
    up_->socket.set_option(tcp::no_delay(true), ec);
    up_->socket.non_blocking(true, ec);
    send_upstream(/*reused=*/false);
  }

  void send_upstream(bool reused) {
    reused_ = reused;
    const std::string& body = parser_->get().body();
    std::array<asio::const_buffer, 2> buffers{asio::buffer(up_head_), asio::buffer(body)};
    up_deadline(timeouts().upstream);
    write_now_or_later(up_->socket, buffers,
                       [self = shared_from_this()](error_code ec, std::size_t) {
                         self->up_deadline_ = kNever;
                         if (ec) return self->upstream_failed_or_retry(ec);
                         self->read_upstream_header();
                       });
  }

  void upstream_failed_or_retry(error_code ec) {
    if (up_timed_out_) return upstream_failed(UpstreamError::timeout, ec);
    if (reused_ && !retried_ && is_stale_connection(ec) && up_->buffer.size() == 0 &&
        !(up_parser_ && up_parser_->got_some())) {
      // The upstream closed this idle connection before our request reached it. Resend
      // once on a fresh connection, as HTTP/1.1 clients do (RFC 9112 section 9.3.1).
      retried_ = true;
      worker_.metrics().upstream_retries.add();
      up_.reset();
      return connect_upstream();
    }
    upstream_failed(UpstreamError::reset, ec);
  }

  void read_upstream_header() {
    up_parser_.emplace();
    up_parser_->header_limit(kUpstreamHeaderLimit);
    up_parser_->body_limit(boost::none);
    if (is_head_) up_parser_->skip(true);
    up_deadline(timeouts().upstream);
    if (up_->buffer.size() > 0) return read_upstream_head_now();
    // As for clients: the upstream has only just got the request, so wait for its answer
    // rather than try a read that would find nothing.
    up_->socket.async_wait(UpstreamConnection::Socket::wait_read,
                           [self = shared_from_this()](error_code ec) {
                             if (ec) {
                               self->up_deadline_ = kNever;
                               return self->on_upstream_header(ec);
                             }
                             self->read_upstream_head_now();
                           });
  }

  void read_upstream_head_now() {
    http::async_read_header(up_->socket, up_->buffer, *up_parser_,
                            [self = shared_from_this()](error_code ec, std::size_t) {
                              self->up_deadline_ = kNever;
                              self->on_upstream_header(ec);
                            });
  }

  void on_upstream_header(error_code ec) {
    if (ec) {
      if (up_timed_out_ || is_stale_connection(ec)) return upstream_failed_or_retry(ec);
      return upstream_failed(UpstreamError::protocol, ec);
    }
    const auto& res = up_parser_->get();
    int status = static_cast<int>(res.result_int());
    if (status < 200) {
      // Interim responses (100, 103) are not passed on: the final one follows.
      if (status == 101) return upstream_failed(UpstreamError::protocol, {});
      return read_upstream_header();
    }

    ConnectionTokens tokens;
    bool has_date = false;
    for (const auto& field : res) {
      if (field.name() == http::field::connection) tokens.add(field.value());
    }
    bool no_body = is_head_ || status == 204 || status == 304;
    capture_ = ticket_.has_value();
    body_complete_ = true;
    if (capture_) {
      captured_.status = status;
      captured_.headers.clear();
      captured_.body.clear();
      auto length = up_parser_->content_length();
      std::size_t max = ticket_->policy().max_response_bytes;
      if (length && *length > max) {
        capture_ = false;
        body_complete_ = false;
      }
    }

    head_.clear();
    append_status_line(head_, status, res.reason());
    std::string_view upstream_length;
    for (const auto& field : res) {
      std::string_view name = field.name_string();
      if (field.name() == http::field::content_length) {
        upstream_length = field.value();
        continue;
      }
      if (is_hop_by_hop(name, tokens)) continue;
      // Only replays carry the replay mark, whatever the upstream sends.
      if (ticket_ && field.name() == http::field::unknown &&
          iequals(name, ticket_->policy().replay_header)) {
        continue;
      }
      if (field.name() == http::field::date) has_date = true;
      append_field(head_, name, field.value());
      if (ticket_) captured_.headers.emplace_back(name, field.value());
    }
    if (!has_date) append_field(head_, "Date", http_date());
    chunked_out_ = false;
    close_after_ = !keep_alive_ || worker_.draining();
    if (no_body) {
      // HEAD and 304 describe the representation's length without sending it.
      if (!upstream_length.empty() && status != 204) {
        append_field(head_, "Content-Length", upstream_length);
      }
    } else if (auto length = up_parser_->content_length()) {
      append_field(head_, "Content-Length", std::to_string(*length));
    } else if (http11_) {
      append_field(head_, "Transfer-Encoding", "chunked");
      chunked_out_ = true;
    } else {
      close_after_ = true;  // an HTTP/1.0 client learns the end from the close
    }
    if (close_after_) {
      append_field(head_, "Connection", "close");
    } else if (!http11_) {
      append_field(head_, "Connection", "keep-alive");
    }
    head_.append("\r\n");
    head_pending_ = true;

    start_body();
  }

  // ---- the response body: upstream reader and client writer, decoupled ----
  //
  // The reader appends the upstream's body to segments (pieces of Worker::kPieceSize) and
  // the writer sends them on at the client's pace. The reader runs ahead of the writer by
  // up to `window_` bytes: the whole captured response for a keyed request (so a slow
  // client never holds its record in flight), a few pieces otherwise (bounded memory).
  // The end of the response (its last bytes, or the chunked terminator) goes to the
  // client only once the store has the record, so that a client that has its whole answer
  // and retries at once is replayed, never told the request is still in flight.

  static constexpr std::size_t kStreamWindow = 2 * Worker::kPieceSize;

  void start_body() {
    received_ = sent_ = seg_base_ = 0;
    reading_ = writing_ = upstream_done_ = final_sent_ = false;
    stored_ = !ticket_.has_value();
    window_ = capture_ ? ticket_->policy().max_response_bytes + 1 : kStreamWindow;
    if (up_parser_->is_done()) return body_done();
    read_upstream_body();
  }

  void read_upstream_body() {
    if (reading_ || upstream_done_ || upstream_error_) return;
    if (!client_gone_ && received_ - sent_ >= window_) return;  // the writer resumes us
    std::size_t offset = received_ - seg_base_;
    std::size_t index = offset / Worker::kPieceSize;
    if (index == segs_.size()) segs_.push_back(worker_.take_piece());
    auto& body = up_parser_->get().body();
    body.data = segs_[index].get() + offset % Worker::kPieceSize;
    body.size = Worker::kPieceSize - offset % Worker::kPieceSize;
    read_size_ = body.size;
    reading_ = true;
    up_deadline(timeouts().upstream);
    http::async_read_some(up_->socket, up_->buffer, *up_parser_,
                          [self = shared_from_this()](error_code ec, std::size_t) {
                            self->up_deadline_ = kNever;
                            self->reading_ = false;
                            self->on_upstream_body(ec);
                          });
  }

  void on_upstream_body(error_code ec) {
    if (ec == http::error::need_buffer) ec = {};
    if (ec) {
      return upstream_failed(up_timed_out_ ? UpstreamError::timeout : UpstreamError::protocol, ec);
    }
    received_ += read_size_ - up_parser_->get().body().size;
    if (capture_ && received_ > ticket_->policy().max_response_bytes) {
      // Over max_response_bytes: the client still gets it whole, the store keeps only
      // the status; from here on the body streams through a small window.
      capture_ = false;
      body_complete_ = false;
      window_ = kStreamWindow;
      drop_sent_segments();
    }
    if (up_parser_->is_done()) return body_done();
    pump_client();
    read_upstream_body();
  }

  /// The upstream's response is read whole.
  void body_done() {
    upstream_done_ = true;
    worker_.metrics().upstream_latency.observe(Clock::now() - forward_time_);
    renew_at_ = kNever;
    if (up_parser_->keep_alive() && up_->buffer.size() == 0) {
      worker_.pool().put(std::move(up_));
    }
    up_.reset();
    if (ticket_) return complete_ticket();  // pump_client() once the store has it
    pump_client();
  }

  /// Writes what the reader has that the client does not, if no write is under way.
  void pump_client() {
    if (writing_) return;
    if (client_gone_) {
      sent_ = received_;  // a sink: the reader goes on for the store's sake
      drop_sent_segments();
      return maybe_end();
    }
    bool may_finish = upstream_done_ && stored_;
    // Until the store has the record, the end of the response stays here.
    if (upstream_done_ && !stored_) return;
    std::size_t available = received_ - sent_;
    if (available == 0 && !head_pending_ && !(may_finish && !final_sent_)) return maybe_end();

    // A member, not a local: the write keeps a view of the sequence until it completes.
    auto& buffers = out_buffers_;
    std::size_t count = 0;
    if (head_pending_) {
      buffers[count++] = asio::buffer(head_);
      response_started_ = true;
    }
    std::size_t chunk_header = count;
    if (chunked_out_ && available > 0) ++count;  // filled below, once the size is known
    std::size_t take = 0;
    std::size_t position = sent_;
    while (position < received_ && count < buffers.size() - 3) {
      std::size_t offset = position - seg_base_;
      std::size_t in_segment = Worker::kPieceSize - offset % Worker::kPieceSize;
      std::size_t n = std::min(in_segment, received_ - position);
      buffers[count++] =
          asio::buffer(segs_[offset / Worker::kPieceSize].get() + offset % Worker::kPieceSize, n);
      position += n;
      take += n;
    }
    if (chunked_out_ && take > 0) {
      auto [end, ec] = std::to_chars(chunk_line_, chunk_line_ + 16, take, 16);
      (void)ec;
      end[0] = '\r';
      end[1] = '\n';
      buffers[chunk_header] =
          asio::buffer(chunk_line_, static_cast<std::size_t>(end + 2 - chunk_line_));
      buffers[count++] = asio::buffer("\r\n", 2);
    }
    bool final = may_finish && position == received_;
    if (final && chunked_out_) buffers[count++] = asio::buffer("0\r\n\r\n", 5);
    writing_ = true;
    write_size_ = take;
    write_final_ = final;
    client_deadline(timeouts().body);
    write_now_or_later(stream_, std::span<const asio::const_buffer>(buffers.data(), count),
                       [self = shared_from_this()](error_code ec, std::size_t) {
                         self->client_deadline_ = kNever;
                         self->writing_ = false;
                         self->on_client_written(ec);
                       });
  }

  void on_client_written(error_code ec) {
    head_pending_ = false;
    if (ec) {
      // The client is gone; the upstream exchange goes on so that its response is stored.
      client_gone_ = true;
      worker_.metrics().client_aborts.add();
      error_code ignored;
      stream_.close(ignored);
    } else {
      sent_ += write_size_;
      if (write_final_) final_sent_ = true;
    }
    if (upstream_broken_) return end_request();  // cut short: see upstream_failed
    drop_sent_segments();
    pump_client();
    read_upstream_body();
  }

  /// Frees the segments the client has whole, unless they are the captured response.
  void drop_sent_segments() {
    if (capture_) return;
    while (!segs_.empty() && sent_ - seg_base_ >= Worker::kPieceSize) {
      worker_.give_piece(std::move(segs_.front()));
      segs_.erase(segs_.begin());
      seg_base_ += Worker::kPieceSize;
    }
  }

  /// Ends the exchange once the upstream is read, the store answered and the client has
  /// the response (or is gone).
  void maybe_end() {
    if (!upstream_done_ || !stored_ || writing_ || reading_) return;
    if (!client_gone_ && !final_sent_) return;
    end_request();
  }

  void release_segments() {
    for (auto& s : segs_) worker_.give_piece(std::move(s));
    segs_.clear();
    seg_base_ = 0;
  }

  void complete_ticket() {
    captured_.body.clear();
    if (capture_) {
      // Segments hold the body from its first byte while capturing.
      captured_.body.reserve(received_);
      for (std::size_t i = 0; captured_.body.size() < received_; ++i) {
        captured_.body.append(segs_[i].get(),
                              std::min(Worker::kPieceSize, received_ - captured_.body.size()));
      }
    }
    completion_started_ = Clock::now();
    completed_inline_ = false;
    self_ = shared_from_this();  // as in handle_request: a plain-pointer callback
    in_complete_ = true;
    engine_->complete(std::move(*ticket_), captured_, body_complete_,
                      [this](Result<Completion> result) {
                        if (ThreadLoop::current() == &worker_.loop() && in_complete_) {
                          count_completion(result);
                          completed_inline_ = true;  // the memory store: go on below
                          return;
                        }
                        asio::post(worker_.loop(), [this, result = std::move(result)] {
                          count_completion(result);
                          on_completed();
                        });
                      });
    in_complete_ = false;
    ticket_.reset();
    captured_.headers.clear();
    release_if_large(captured_.body);
    captured_.body.clear();
    if (completed_inline_) on_completed();
  }

  void count_completion(const Result<Completion>& result) {
    auto& m = worker_.metrics();
    m.store_latency.observe(Clock::now() - completion_started_);
    if (!result) return;
    m.completions[static_cast<std::size_t>(*result)].add();
    if (*result == Completion::lease_lost) m.lease_lost.add();
  }

  void on_completed() {
    auto self = std::move(self_);
    stored_ = true;
    pump_client();
  }

  void upstream_failed(UpstreamError why, error_code ec) {
    worker_.metrics().upstream_errors[static_cast<std::size_t>(why)].add();
    if (log::enabled(log::Level::debug)) {
      log::debug("upstream failed", LogFields()
                                        .add("reason", why == UpstreamError::timeout   ? "timeout"
                                                       : why == UpstreamError::connect ? "connect"
                                                                                       : "error")
                                        .add("error", ec.message()));
    }
    renew_at_ = kNever;
    up_.reset();
    upstream_error_ = true;
    failure_ = why;
    if (ticket_) {
      // No answer to store: remove the record so that the client's retry executes, and
      // answer once it is gone, so that an immediate retry never finds it in flight.
      // (Every caller is a handler holding the session, so self_ is never the last one.)
      abandoned_inline_ = false;
      self_ = shared_from_this();
      in_abandon_ = true;
      engine_->abandon(std::move(*ticket_), [this](Result<TokenCheck>) {
        if (ThreadLoop::current() == &worker_.loop() && in_abandon_) {
          abandoned_inline_ = true;
          return;
        }
        asio::post(worker_.loop(), [this] {
          auto self = std::move(self_);
          answer_upstream_failure();
        });
      });
      in_abandon_ = false;
      ticket_.reset();
      if (!abandoned_inline_) return;
      self_.reset();
    }
    answer_upstream_failure();
  }

  void answer_upstream_failure() {
    UpstreamError why = failure_;
    if (client_gone_) return end_request();
    if (response_started_) {
      // Part of the response is already with the client: all we can do is cut it short.
      close_after_ = true;
      upstream_broken_ = true;
      if (writing_) return;  // on_client_written ends the request
      return end_request();
    }
    if (why == UpstreamError::timeout) {
      return send_problem(504, "upstream-timeout", "Upstream timed out",
                          "The upstream did not answer in time.", !keep_alive_);
    }
    return send_problem(502, "upstream-unavailable", "Upstream unavailable",
                        why == UpstreamError::connect
                            ? "The upstream could not be reached."
                            : "The upstream's answer was cut short or not valid HTTP.",
                        !keep_alive_);
  }

  // ---- lease renewal ----

  /// Called by on_tick every renew_interval while the ticket is held.
  void renew_lease() {
    auto self = shared_from_this();
    engine_->renew(*ticket_, [self](Result<TokenCheck> result) {
      if (!result || *result == TokenCheck::ok) return;
      asio::post(self->worker_.loop(), [self] {
        // Another attempt owns the record now; our completion will be discarded.
        self->worker_.metrics().lease_lost.add();
        log::warn("lease lost while the upstream worked",
                  LogFields().add("record",
                                  self->ticket_ ? self->ticket_->record().hex() : std::string()));
      });
    });
  }

  void client_deadline(Duration d) {
    client_deadline_ = worker_.now() + d;
    client_timed_out_ = false;
  }

  void up_deadline(Duration d) {
    up_deadline_ = worker_.now() + d;
    up_timed_out_ = false;
  }

  // Client side.
  Socket stream_;
  beast::flat_buffer buffer_;
  std::string peer_;
  std::optional<http::request_parser<http::string_body>> parser_;
  std::vector<HeaderField> view_headers_;
  std::string type_base_;
  std::string head_;      ///< the response head being written to the client
  std::string body_out_;  ///< the body of a whole response being written
  char chunk_line_[24] = {};
  Phase phase_ = Phase::idle;
  bool keep_alive_ = true;
  bool http11_ = true;
  bool is_head_ = false;
  bool close_after_ = false;
  bool client_gone_ = false;
  bool counted_ = false;
  SteadyTime client_deadline_ = kNever;  ///< the pending client operation's, for on_tick
  bool client_timed_out_ = false;

  // The engine.
  std::shared_ptr<Engine> engine_;
  std::shared_ptr<Session> self_;
  std::optional<Decision> inline_decision_;
  std::optional<Ticket> ticket_;
  bool in_begin_ = false;
  bool in_complete_ = false;
  bool completed_inline_ = false;
  Clock::time_point completion_started_{};
  Clock::time_point begin_time_{};
  SteadyTime renew_at_ = kNever;

  // Upstream side.
  std::unique_ptr<UpstreamConnection> up_;
  std::optional<http::response_parser<http::buffer_body>> up_parser_;
  std::string up_head_;
  std::vector<std::unique_ptr<char[]>> segs_;  ///< the response body, see start_body()
  std::size_t seg_base_ = 0;                   ///< offset in the body of segs_.front()
  std::size_t received_ = 0;                   ///< body bytes read from the upstream
  std::size_t sent_ = 0;                       ///< body bytes written to the client
  std::size_t window_ = 0;
  std::size_t read_size_ = 0;
  std::size_t write_size_ = 0;
  std::array<asio::const_buffer, 16> out_buffers_;
  bool reading_ = false;
  bool writing_ = false;
  bool write_final_ = false;
  bool final_sent_ = false;
  bool upstream_done_ = false;
  bool upstream_error_ = false;   ///< the exchange failed: read no further
  bool upstream_broken_ = false;  ///< ...and the client's response is to be cut short
  bool in_abandon_ = false;
  bool abandoned_inline_ = false;
  UpstreamError failure_ = UpstreamError::reset;
  bool stored_ = true;
  Response captured_;
  Clock::time_point forward_time_{};
  bool reused_ = false;
  bool retried_ = false;
  bool capture_ = false;
  bool body_complete_ = true;
  bool chunked_out_ = false;
  bool head_pending_ = false;
  SteadyTime up_deadline_ = kNever;
  bool up_timed_out_ = false;
  bool response_started_ = false;  ///< some of the upstream's response went to the client
};

}  // namespace

void start_session(Worker& worker, Socket socket) {
  std::make_shared<Session>(worker, std::move(socket))->start();
}

}  // namespace idem::gateway
