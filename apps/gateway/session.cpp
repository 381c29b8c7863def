// The connection, reading requests, and acting on the engine's decision.

#include "session.hpp"

#include <boost/asio/post.hpp>

#include "asio_scheduler.hpp"
#include "event_log.hpp"
#include "http_util.hpp"

namespace idem::gateway::session_detail {

Session::Session(Worker& worker, Socket socket) : SessionBase(worker), stream_(std::move(socket)) {
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

Session::~Session() {
  if (counted_) worker_.metrics().in_flight.add(-1);
  release_segments();
  // A ticket still held here is released by its destructor: no record stays in flight.
}

void Session::on_drain() {
  if (phase_ == Phase::idle) {
    error_code ignored;
    stream_.cancel(ignored);
  }
}

void Session::abort() {
  error_code ignored;
  stream_.close(ignored);
  if (up_) up_->socket.close(ignored);
}

void Session::on_tick(SteadyTime now) {
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

void Session::await_request() {
  if (worker_.draining()) return close_client();
  phase_ = Phase::idle;
  if (buffer_.size() > 0) return read_header();  // pipelined bytes already here
  // Waiting for the next request falls under idle_timeout; once its first bytes are
  // here, header_timeout applies.
  // A read through the reactor rather than a readiness wait: Asio re-arms the socket in
  // epoll (a system call) for every wait, but queues a read without one. Boost 1.81's
  // reactor first tries the read at once; under replay.lua that finds nothing 6 times in
  // 10 (the client has not seen our answer yet) and otherwise saves a round of epoll_wait,
  // and either way costs less than the re-arming (docs/benchmarks.md).
  client_deadline(timeouts().idle);
  stream_.async_read_some(
      buffer_.prepare(kFirstReadSize),
      [self = shared_from_this()](error_code ec, std::size_t n) { self->on_first_bytes(ec, n); });
}

void Session::on_first_bytes(error_code ec, std::size_t n) {
  buffer_.commit(n);
  client_deadline_ = kNever;
  if (ec) return close_client();
  read_header();
}

void Session::read_header() {
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

void Session::on_header(error_code ec) {
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
bool Session::normalize_target() {
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

void Session::read_body() {
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

void Session::on_body(error_code ec) {
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

void Session::begin_request() {
  if (!counted_) {
    counted_ = true;
    worker_.metrics().in_flight.add(1);
  }
}

void Session::reject_too_large(std::size_t limit) {
  worker_.metrics().outcomes[static_cast<std::size_t>(Outcome::too_large)].add();
  Problem problem{ProblemType::body_too_large,
                  "The request body is over the limit of " + std::to_string(limit) + " bytes.",
                  std::nullopt, std::nullopt};
  // The rest of the body is not read: close after answering.
  write_response(problem.to_response(type_base_), /*close=*/true, /*linger=*/true);
}

void Session::handle_request() {
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
void Session::deliver(Decision decision) {
  if (ThreadLoop::current() == &worker_.loop() && in_begin_) {  // only that thread reads it
    // Answered inline (the memory store): act once begin() has returned, outside the
    // store's call stack.
    inline_decision_.emplace(std::move(decision));
    return;
  }
  asio::post(worker_.loop(),
             [this, d = std::move(decision)]() mutable { on_decision(std::move(d)); });
}

void Session::on_decision(Decision decision) {
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

}  // namespace idem::gateway::session_detail

namespace idem::gateway {

void start_session(Worker& worker, Socket socket) {
  std::make_shared<session_detail::Session>(worker, std::move(socket))->start();
}

}  // namespace idem::gateway
