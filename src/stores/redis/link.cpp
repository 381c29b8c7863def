#include "stores/redis/link.hpp"

#include <algorithm>
#include <boost/asio/bind_executor.hpp>
#include <utility>

namespace idem::redis {

namespace asio = boost::asio;

Link::Link(Strand strand, LinkOptions options)
    : strand_(std::move(strand)),
      options_(std::move(options)),
      retry_timer_(strand_),
      backoff_(options_.backoff_min),
      jitter_(std::random_device{}()) {}

void Link::start() { connect(); }

void Link::stop(const Error& why) {
  stopped_ = true;
  retry_timer_.cancel();
  if (auto conn = std::exchange(conn_, nullptr)) conn->close(why);
}

void Link::connect() {
  if (stopped_) return;
  auto conn = std::make_shared<Connection>(strand_, options_.endpoint);
  conn_ = conn;
  if (on_push_) conn->on_push(on_push_);
  std::weak_ptr<Link> weak = weak_from_this();
  conn->on_lost([weak](const Error& why) {
    if (auto self = weak.lock()) self->retry_later(why);
  });
  conn->start(options_.handshake, [weak, raw = conn.get()](Result<void> r) {
    auto self = weak.lock();
    if (!self || self->conn_.get() != raw) return;
    if (!r) return self->retry_later(r.error());
    self->backoff_ = self->options_.backoff_min;
    if (self->on_ready_) self->on_ready_(*raw);
  });
}

void Link::retry_later(const Error& why) {
  last_error_ = why;
  conn_.reset();
  if (stopped_) return;
  if (on_down_) on_down_(why);
  // Uniform in [backoff/2, backoff]: spread out, never longer than the cap.
  const auto half = backoff_.count() / 2;
  const Duration delay{half + static_cast<Duration::rep>(jitter_() % (half + 1))};
  backoff_ = std::min(backoff_ * 2, options_.backoff_max);
  retry_timer_.expires_after(delay);
  retry_timer_.async_wait(
      asio::bind_executor(strand_, [weak = weak_from_this()](boost::system::error_code ec) {
        if (ec) return;
        if (auto self = weak.lock()) self->connect();
      }));
}

}  // namespace idem::redis
