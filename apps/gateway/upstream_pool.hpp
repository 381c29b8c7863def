#pragma once

#include <boost/asio/basic_stream_socket.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <chrono>
#include <memory>
#include <vector>

namespace idem::gateway {

/// One keep-alive connection to the upstream, with its read buffer.
struct UpstreamConnection {
  using Socket = boost::asio::basic_stream_socket<boost::asio::ip::tcp,
                                                  boost::asio::io_context::executor_type>;
  /// Beast reads at most the buffer's free capacity (and at least 512 bytes): a small
  /// buffer would read a large response 512 bytes at a time.
  static constexpr std::size_t kReadReserve = 32 * 1024;

  explicit UpstreamConnection(boost::asio::io_context& loop) : socket(loop.get_executor()) {
    buffer.reserve(kReadReserve);
  }
  Socket socket;
  boost::beast::flat_buffer buffer;
  std::chrono::steady_clock::time_point idle_since;
};

/// A worker's idle upstream connections. Single-threaded (its worker's loop), so no lock:
/// each worker keeps its own pool. Most recently used first, so that the ones the upstream
/// is likeliest to have closed age out at the bottom.
class UpstreamPool {
 public:
  UpstreamPool(boost::asio::io_context& loop, std::vector<boost::asio::ip::tcp::endpoint> endpoints,
               std::size_t max_idle, std::chrono::steady_clock::duration max_idle_time);

  /// An idle connection, or null when there is none worth trying.
  std::unique_ptr<UpstreamConnection> take();
  /// A new, unconnected connection.
  std::unique_ptr<UpstreamConnection> make();
  /// Returns a connection whose last exchange ended cleanly (response read whole,
  /// keep-alive, nothing left in its buffer).
  void put(std::unique_ptr<UpstreamConnection> connection);
  void clear() { idle_.clear(); }

  const std::vector<boost::asio::ip::tcp::endpoint>& endpoints() const noexcept {
    return endpoints_;
  }
  std::size_t idle() const noexcept { return idle_.size(); }

 private:
  boost::asio::io_context& loop_;
  std::vector<boost::asio::ip::tcp::endpoint> endpoints_;
  std::size_t max_idle_;
  std::chrono::steady_clock::duration max_idle_time_;
  std::vector<std::unique_ptr<UpstreamConnection>> idle_;
};

}  // namespace idem::gateway
