#include "listener.hpp"

#include <sys/socket.h>

#include <boost/asio/post.hpp>
#include <utility>

#include "asio_scheduler.hpp"
#include "event_log.hpp"

namespace idem::gateway {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;

SessionBase::SessionBase(Worker& worker) : worker_(worker) { worker_.link(this); }
SessionBase::~SessionBase() { worker_.unlink(this); }

Worker::Worker(unsigned index, std::unique_ptr<asio::io_context> loop,
               std::shared_ptr<const Runtime> runtime, std::vector<tcp::endpoint> upstream,
               std::string upstream_host, std::function<void()> close_store)
    : index_(index),
      loop_(std::move(loop)),
      acceptor_(std::make_unique<Acceptor>(loop_->get_executor())),
      accept_retry_(std::make_unique<Timer>(loop_->get_executor())),
      ticker_(std::make_unique<Timer>(loop_->get_executor())),
      runtime_(std::move(runtime)),
      upstream_host_(std::move(upstream_host)),
      close_store_(std::move(close_store)) {
  pool_ = std::make_unique<UpstreamPool>(
      *loop_, std::move(upstream), 1024,
      std::chrono::duration_cast<std::chrono::seconds>(runtime_->timeouts.idle));
}

Worker::~Worker() {
  // Pending handlers own sessions, and sessions use this worker's members: destroy the
  // loop (and with it those handlers) while everything else is still alive.
  acceptor_.reset();
  accept_retry_.reset();
  ticker_.reset();
  pool_->clear();
  // A store on this loop goes before the loop (handlers may still hold it; they go with
  // the loop, and after finish() the store no longer posts to it).
  close_store_ = nullptr;
  runtime_.reset();
  loop_.reset();
  pool_.reset();
}

void Worker::listen(const tcp::endpoint& endpoint) {
  acceptor_->open(endpoint.protocol());
  acceptor_->set_option(tcp::acceptor::reuse_address(true));
  // Each worker binds the same port; the kernel spreads connections across them.
  int one = 1;
  if (::setsockopt(acceptor_->native_handle(), SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) != 0) {
    throw boost::system::system_error(errno, boost::system::system_category(), "SO_REUSEPORT");
  }
  acceptor_->bind(endpoint);
  acceptor_->listen(asio::socket_base::max_listen_connections);
}

tcp::endpoint Worker::local_endpoint() const { return acceptor_->local_endpoint(); }

void Worker::run() {
  ThreadLoop registration(*loop_);
  asio::post(*loop_, [this] { accept(); });
  loop_->run();
  if (sessions_ != nullptr || close_store_) finish();
}

// stop() came before the drain ended (drain timeout, second signal). Closing every
// connection lets each request give back its record through the store instead of leaving
// it in flight until its lease ends; then a store on this loop is closed. Bounded: stop()
// means now.
void Worker::finish() {
  loop_->restart();
  asio::post(*loop_, [this] { wind_down(&SessionBase::abort); });
  loop_->run_for(kFinishTime);
  if (close_store_) {
    // Out of time with requests still open: they fail against the closed store when the
    // loop goes, and their records end with their leases.
    auto close = std::exchange(close_store_, nullptr);
    close();
    loop_->restart();
    loop_->run_for(kFinishTime);
  }
}

void Worker::close_store_if_drained() {
  if (!close_store_ || !draining_ || sessions_ != nullptr) return;
  auto close = std::exchange(close_store_, nullptr);
  close();
}

void Worker::accept() {
  if (draining_ || !acceptor_->is_open()) return;
  acceptor_->async_accept([this](boost::system::error_code ec, Socket socket) {
    if (ec == asio::error::operation_aborted || draining_) return;
    if (ec) {
      // Out of descriptors or memory: pause instead of spinning, and say so (once a second).
      auto now = std::chrono::steady_clock::now();
      if (now - last_accept_error_log_ > std::chrono::seconds(1)) {
        last_accept_error_log_ = now;
        log::error("accept failed", LogFields().add("error", ec.message()));
      }
      accept_retry_->expires_after(std::chrono::milliseconds(50));
      accept_retry_->async_wait([this](boost::system::error_code wait_ec) {
        if (!wait_ec) accept();
      });
      return;
    }
    metrics_.connections_accepted.add();
    now_ = std::chrono::steady_clock::now();
    start_session(*this, std::move(socket));
    accept();
  });
}

void Worker::start_drain() {
  asio::post(*loop_, [this] { wind_down(&SessionBase::on_drain); });
}

// Stops accepting and tells every session, which finishes (on_drain) or is cut short
// (abort).
void Worker::wind_down(void (SessionBase::*tell)()) {
  draining_ = true;
  boost::system::error_code ignored;
  acceptor_->close(ignored);
  accept_retry_->cancel();
  for (SessionBase* s = sessions_; s != nullptr;) {
    SessionBase* next = s->next_;
    (s->*tell)();
    s = next;
  }
  pool_->clear();
  close_store_if_drained();
}

void Worker::tick() {
  now_ = std::chrono::steady_clock::now();
  for (SessionBase* s = sessions_; s != nullptr;) {
    SessionBase* next = s->next_;  // on_tick may close, never destroy, the session
    s->on_tick(now_);
    s = next;
  }
  if (sessions_ == nullptr) {
    // Nothing to watch: let the loop sleep (and a drained loop end).
    ticking_ = false;
    return;
  }
  ticker_->expires_at(now_ + kTick);
  ticker_->async_wait([this](boost::system::error_code ec) {
    if (!ec) tick();
  });
}

void Worker::set_runtime(std::shared_ptr<const Runtime> runtime) {
  asio::post(*loop_,
             [this, runtime = std::move(runtime)]() mutable { runtime_ = std::move(runtime); });
}

void Worker::stop() { loop_->stop(); }

std::unique_ptr<char[]> Worker::take_piece() {
  if (pieces_.empty()) return std::make_unique<char[]>(kPieceSize);
  auto piece = std::move(pieces_.back());
  pieces_.pop_back();
  return piece;
}

void Worker::give_piece(std::unique_ptr<char[]> piece) {
  if (piece && pieces_.size() < 256) pieces_.push_back(std::move(piece));
}

void Worker::link(SessionBase* session) noexcept {
  session->next_ = sessions_;
  if (sessions_) sessions_->prev_ = session;
  sessions_ = session;
  metrics_.connections.add(1);
  if (!ticking_ && ticker_) {
    ticking_ = true;
    ticker_->expires_after(kTick);
    ticker_->async_wait([this](boost::system::error_code ec) {
      if (!ec) tick();
    });
  }
}

void Worker::unlink(SessionBase* session) noexcept {
  if (session->prev_) {
    session->prev_->next_ = session->next_;
  } else {
    sessions_ = session->next_;
  }
  if (session->next_) session->next_->prev_ = session->prev_;
  session->prev_ = session->next_ = nullptr;
  metrics_.connections.add(-1);
  // The last request of a drain is gone, and with it (its members went first) whatever it
  // gave back to the store was sent: the store may close once that is answered.
  close_store_if_drained();
}

}  // namespace idem::gateway
