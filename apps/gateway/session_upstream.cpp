// Forwarding a request to the upstream, reading the head of its response, and what
// happens when the upstream fails.

#include <boost/asio/connect.hpp>
#include <boost/asio/post.hpp>

#include "asio_scheduler.hpp"
#include "event_log.hpp"
#include "http_util.hpp"
#include "session.hpp"

namespace idem::gateway::session_detail {

void Session::forward() {
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

void Session::connect_upstream() {
  up_ = worker_.pool().make();
  up_deadline(timeouts().upstream_connect);
  asio::async_connect(up_->socket, worker_.pool().endpoints(),
                      [self = shared_from_this()](error_code ec, const tcp::endpoint&) {
                        self->up_deadline_ = kNever;
                        self->on_upstream_connected(ec);
                      });
}

void Session::on_upstream_connected(error_code ec) {
  if (ec) {
    return upstream_failed(up_timed_out_ ? UpstreamError::timeout : UpstreamError::connect, ec);
  }
  worker_.metrics().upstream_connects.add();
  up_->socket.set_option(tcp::no_delay(true), ec);
  up_->socket.non_blocking(true, ec);
  send_upstream(/*reused=*/false);
}

void Session::send_upstream(bool reused) {
  reused_ = reused;
  const std::string& body = parser_->get().body();
  std::array<asio::const_buffer, 2> buffers{asio::buffer(up_head_), asio::buffer(body)};
  up_deadline(timeouts().upstream);
  write_now_or_later(up_->socket, buffers, [self = shared_from_this()](error_code ec, std::size_t) {
    self->up_deadline_ = kNever;
    if (ec) return self->upstream_failed_or_retry(ec);
    self->read_upstream_header();
  });
}

void Session::upstream_failed_or_retry(error_code ec) {
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

void Session::read_upstream_header() {
  up_parser_.emplace();
  up_parser_->header_limit(kUpstreamHeaderLimit);
  up_parser_->body_limit(boost::none);
  if (is_head_) up_parser_->skip(true);
  up_deadline(timeouts().upstream);
  if (up_->buffer.size() > 0) return read_upstream_head_now();
  // As for clients (await_request): a read through the reactor, which needs no re-arming
  // of the socket in epoll.
  up_->socket.async_read_some(up_->buffer.prepare(UpstreamConnection::kReadReserve),
                              [self = shared_from_this()](error_code ec, std::size_t n) {
                                self->up_->buffer.commit(n);
                                if (ec) {
                                  self->up_deadline_ = kNever;
                                  return self->on_upstream_header(ec);
                                }
                                self->read_upstream_head_now();
                              });
}

void Session::read_upstream_head_now() {
  http::async_read_header(up_->socket, up_->buffer, *up_parser_,
                          [self = shared_from_this()](error_code ec, std::size_t) {
                            self->up_deadline_ = kNever;
                            self->on_upstream_header(ec);
                          });
}

void Session::on_upstream_header(error_code ec) {
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

void Session::upstream_failed(UpstreamError why, error_code ec) {
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

void Session::answer_upstream_failure() {
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

}  // namespace idem::gateway::session_detail
