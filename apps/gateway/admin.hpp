#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <functional>
#include <memory>
#include <string>

#include "idem/engine.hpp"

namespace idem::gateway {

/// What the admin API reads from the rest of the gateway. Called on the admin loop.
struct AdminHooks {
  std::function<bool()> accepting;                  ///< listeners up and not draining
  std::function<std::shared_ptr<Engine>()> engine;  ///< the current configuration's engine
  std::function<std::string()> metrics;             ///< Prometheus text
  /// The store answered a flush of the record (removed, or already gone): called before the
  /// admin API answers, on any thread, so that what this process keeps in memory in front
  /// of the store forgets the record first.
  std::function<void(const RecordId&)> flushed;
};

/// The admin listener: GET /healthz, /readyz, /metrics, GET and DELETE /keys/{key}.
/// Runs on one loop (the main thread's), away from the public listener; requests are rare
/// and small, so it keeps to plain code over speed.
class AdminServer {
 public:
  AdminServer(boost::asio::io_context& loop, AdminHooks hooks);
  ~AdminServer();
  /// Binds and starts accepting. Start-up only; throws boost::system::system_error.
  void listen(const boost::asio::ip::tcp::endpoint& endpoint);
  boost::asio::ip::tcp::endpoint local_endpoint() const;
  void stop();

 private:
  void accept();
  boost::asio::io_context& loop_;
  boost::asio::ip::tcp::acceptor acceptor_;
  std::shared_ptr<const AdminHooks> hooks_;
};

}  // namespace idem::gateway
