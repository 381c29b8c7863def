#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "config.hpp"
#include "idem/engine.hpp"
#include "metrics.hpp"
#include "upstream_pool.hpp"

namespace idem::gateway {

/// What a worker runs requests with; replaced as a whole on SIGHUP. Each worker has an
/// Engine of its own (all sharing the store), so that tickets' reference counts never
/// bounce between cores.
struct Runtime {
  std::shared_ptr<Engine> engine;
  Timeouts timeouts;
};

/// Sockets bound to a worker's io_context directly: no type-erased executor on the hot
/// path.
using Socket =
    boost::asio::basic_stream_socket<boost::asio::ip::tcp, boost::asio::io_context::executor_type>;
using SteadyTime = std::chrono::steady_clock::time_point;

class Worker;

/// A client connection as its worker sees it: listed so that a drain can reach it.
class SessionBase {
 public:
  explicit SessionBase(Worker& worker);
  virtual ~SessionBase();
  SessionBase(const SessionBase&) = delete;
  SessionBase& operator=(const SessionBase&) = delete;
  /// The worker started draining: close now if idle, else after the current response.
  virtual void on_drain() = 0;
  /// The worker is stopping before the drain ended: close both sides now, so that the
  /// request gives back what it holds (its record) through the usual paths.
  virtual void abort() = 0;
  /// Called every tick (Worker::kTick) with the worker's clock: time out what is overdue,
  /// renew leases. Keeps per-request timers off the hot path.
  virtual void on_tick(SteadyTime now) = 0;

 protected:
  Worker& worker_;

 private:
  friend class Worker;
  SessionBase* prev_ = nullptr;
  SessionBase* next_ = nullptr;
};

/// One event loop: its own SO_REUSEPORT acceptor, upstream pool, engine and metrics, so
/// that requests never take a lock or share a cache line with another loop. Everything
/// but the thread-safe members below runs on the worker's thread only.
class Worker {
 public:
  static constexpr std::size_t kPieceSize = 32 * 1024;
  /// Resolution of every timeout and lease renewal: deadlines are plain time points that a
  /// per-worker ticker checks, so a request arms and cancels no timer.
  static constexpr std::chrono::milliseconds kTick{100};

  /// `close_store` is set when a store runs on `loop` (see LoopStore): the worker closes it
  /// once drained, so that the loop runs out of work and run() returns.
  Worker(unsigned index, std::unique_ptr<boost::asio::io_context> loop,
         std::shared_ptr<const Runtime> runtime,
         std::vector<boost::asio::ip::tcp::endpoint> upstream, std::string upstream_host,
         std::function<void()> close_store = {});
  ~Worker();
  Worker(const Worker&) = delete;
  Worker& operator=(const Worker&) = delete;

  /// Binds the public listener. Start-up only; throws boost::system::system_error.
  void listen(const boost::asio::ip::tcp::endpoint& endpoint);
  boost::asio::ip::tcp::endpoint local_endpoint() const;

  /// The thread's body: runs the loop until it has no work left (after a drain) or stop().
  /// After stop() it still runs it for up to kFinishTime, to end what stop() cut short.
  void run();
  static constexpr std::chrono::seconds kFinishTime{1};

  // Thread-safe.
  void start_drain();
  void set_runtime(std::shared_ptr<const Runtime> runtime);
  void stop();
  const WorkerMetrics& metrics_view() const noexcept { return metrics_; }

  // Worker thread only.
  boost::asio::io_context& loop() noexcept { return *loop_; }
  const Runtime& runtime() const noexcept { return *runtime_; }
  UpstreamPool& pool() noexcept { return *pool_; }
  WorkerMetrics& metrics() noexcept { return metrics_; }
  bool draining() const noexcept { return draining_; }
  /// The time at the last tick (or accept): cheap, and precise enough for deadlines.
  SteadyTime now() const noexcept { return now_; }
  const std::string& upstream_host() const noexcept { return upstream_host_; }
  unsigned index() const noexcept { return index_; }
  std::unique_ptr<char[]> take_piece();
  void give_piece(std::unique_ptr<char[]> piece);

 private:
  friend class SessionBase;
  void accept();
  void tick();
  void finish();
  void wind_down(void (SessionBase::*tell)());
  void close_store_if_drained();
  void link(SessionBase* session) noexcept;
  void unlink(SessionBase* session) noexcept;

  unsigned index_;
  // Destroyed explicitly in ~Worker, loop last but before the members sessions use.
  std::unique_ptr<boost::asio::io_context> loop_;
  using Acceptor = boost::asio::basic_socket_acceptor<boost::asio::ip::tcp,
                                                      boost::asio::io_context::executor_type>;
  using Timer =
      boost::asio::basic_waitable_timer<std::chrono::steady_clock,
                                        boost::asio::wait_traits<std::chrono::steady_clock>,
                                        boost::asio::io_context::executor_type>;
  std::unique_ptr<Acceptor> acceptor_;
  std::unique_ptr<Timer> accept_retry_;
  std::unique_ptr<Timer> ticker_;
  SteadyTime now_ = std::chrono::steady_clock::now();
  bool ticking_ = false;
  std::unique_ptr<UpstreamPool> pool_;
  std::shared_ptr<const Runtime> runtime_;
  std::string upstream_host_;
  WorkerMetrics metrics_;
  std::vector<std::unique_ptr<char[]>> pieces_;
  SessionBase* sessions_ = nullptr;
  bool draining_ = false;
  std::function<void()> close_store_;
  std::chrono::steady_clock::time_point last_accept_error_log_{};
};

/// Starts serving one accepted client connection (session.cpp).
void start_session(Worker& worker, Socket socket);

}  // namespace idem::gateway
