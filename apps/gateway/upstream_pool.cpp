#include "upstream_pool.hpp"

namespace idem::gateway {

UpstreamPool::UpstreamPool(boost::asio::io_context& loop,
                           std::vector<boost::asio::ip::tcp::endpoint> endpoints,
                           std::size_t max_idle, std::chrono::steady_clock::duration max_idle_time)
    : loop_(loop),
      endpoints_(std::move(endpoints)),
      max_idle_(max_idle),
      max_idle_time_(max_idle_time) {
  idle_.reserve(max_idle_);
}

std::unique_ptr<UpstreamConnection> UpstreamPool::take() {
  if (idle_.empty()) return nullptr;
  auto now = std::chrono::steady_clock::now();
  // The bottom of the stack holds the oldest: drop those idle for too long.
  std::size_t stale = 0;
  while (stale < idle_.size() && now - idle_[stale]->idle_since > max_idle_time_) ++stale;
  if (stale > 0) idle_.erase(idle_.begin(), idle_.begin() + static_cast<std::ptrdiff_t>(stale));
  if (idle_.empty()) return nullptr;
  auto connection = std::move(idle_.back());
  idle_.pop_back();
  return connection;
}

std::unique_ptr<UpstreamConnection> UpstreamPool::make() {
  return std::make_unique<UpstreamConnection>(loop_);
}

void UpstreamPool::put(std::unique_ptr<UpstreamConnection> connection) {
  if (!connection || !connection->socket.is_open()) return;
  if (idle_.size() >= max_idle_) {
    // Keep the fresh one; the oldest is the likeliest to be closed by the upstream.
    idle_.erase(idle_.begin());
  }
  connection->idle_since = std::chrono::steady_clock::now();
  idle_.push_back(std::move(connection));
}

}  // namespace idem::gateway
