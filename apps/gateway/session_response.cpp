// Answers to the client: whole responses (replays, problems) and the upstream's body
// streamed on, then the record's completion and the lease's renewal.

#include <boost/asio/post.hpp>
#include <charconv>

#include "asio_scheduler.hpp"
#include "event_log.hpp"
#include "http_util.hpp"
#include "session.hpp"

namespace idem::gateway::session_detail {

void Session::send_problem(int status, std::string_view name, std::string_view title,
                           std::string_view detail, bool close, bool linger) {
  std::string_view base =
      type_base_.empty() ? std::string_view("urn:idem:problem:") : std::string_view(type_base_);
  write_response(gateway_problem(status, base, name, title, detail), close, linger);
}

void Session::write_response(Response response, bool close, bool linger) {
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
void Session::end_request() {
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

void Session::close_client() {
  if (phase_ == Phase::closed) return;
  phase_ = Phase::closed;
  error_code ignored;
  stream_.shutdown(tcp::socket::shutdown_send, ignored);
  stream_.close(ignored);
}

/// Closes after an answer sent before the request was read whole: reading (and
/// dropping) what the client still sends for a moment lets it see the answer instead of
/// a reset.
void Session::linger_close() {
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

void Session::drain_input() {
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

void Session::start_body() {
  received_ = sent_ = seg_base_ = 0;
  reading_ = writing_ = upstream_done_ = final_sent_ = false;
  stored_ = !ticket_.has_value();
  window_ = capture_ ? ticket_->policy().max_response_bytes + 1 : kStreamWindow;
  if (up_parser_->is_done()) return body_done();
  read_upstream_body();
}

void Session::read_upstream_body() {
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

void Session::on_upstream_body(error_code ec) {
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
void Session::body_done() {
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
void Session::pump_client() {
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

void Session::on_client_written(error_code ec) {
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
void Session::drop_sent_segments() {
  if (capture_) return;
  while (!segs_.empty() && sent_ - seg_base_ >= Worker::kPieceSize) {
    worker_.give_piece(std::move(segs_.front()));
    segs_.erase(segs_.begin());
    seg_base_ += Worker::kPieceSize;
  }
}

/// Ends the exchange once the upstream is read, the store answered and the client has
/// the response (or is gone).
void Session::maybe_end() {
  if (!upstream_done_ || !stored_ || writing_ || reading_) return;
  if (!client_gone_ && !final_sent_) return;
  end_request();
}

void Session::release_segments() {
  for (auto& s : segs_) worker_.give_piece(std::move(s));
  segs_.clear();
  seg_base_ = 0;
}

void Session::complete_ticket() {
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

void Session::count_completion(const Result<Completion>& result) {
  auto& m = worker_.metrics();
  m.store_latency.observe(Clock::now() - completion_started_);
  if (!result) return;
  m.completions[static_cast<std::size_t>(*result)].add();
  if (*result == Completion::lease_lost) m.lease_lost.add();
}

void Session::on_completed() {
  auto self = std::move(self_);
  stored_ = true;
  pump_client();
}

/// Called by on_tick every renew_interval while the ticket is held.
void Session::renew_lease() {
  auto self = shared_from_this();
  engine_->renew(*ticket_, [self](Result<TokenCheck> result) {
    if (!result || *result == TokenCheck::ok) return;
    asio::post(self->worker_.loop(), [self] {
      // Another attempt owns the record now; our completion will be discarded.
      self->worker_.metrics().lease_lost.add();
      log::warn(
          "lease lost while the upstream worked",
          LogFields().add("record", self->ticket_ ? self->ticket_->record().hex() : std::string()));
    });
  });
}

}  // namespace idem::gateway::session_detail
