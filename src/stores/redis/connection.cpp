#include "stores/redis/connection.hpp"

#include <boost/asio/bind_executor.hpp>
#include <boost/asio/connect.hpp>
#include <boost/asio/error.hpp>
#include <boost/asio/write.hpp>
#include <utility>

namespace idem::redis {

namespace asio = boost::asio;
using boost::system::error_code;

namespace {

Error unavailable(const Endpoint& ep, std::string_view what) {
  return Error{Errc::store_unavailable,
               "redis " + ep.host + ":" + std::to_string(ep.port) + ": " + std::string(what)};
}

}  // namespace

Connection::Connection(Strand strand, Endpoint endpoint)
    : strand_(std::move(strand)),
      endpoint_(std::move(endpoint)),
      resolver_(strand_),
      socket_(strand_),
      timer_(strand_),
      connect_timer_(strand_),
      reader_(redisReaderCreate()) {}

Connection::~Connection() {
  if (reader_) redisReaderFree(reader_);
}

void Connection::start(std::vector<std::string> handshake,
                       std::function<void(Result<void>)> ready) {
  ready_ = std::move(ready);
  if (!reader_) return fail(unavailable(endpoint_, "out of memory for the reply reader"));
  state_ = State::connecting;
  connect_timer_.expires_after(endpoint_.connect_timeout);
  connect_timer_.async_wait(
      asio::bind_executor(strand_, [self = shared_from_this()](error_code ec) {
        if (ec || (self->state_ != State::connecting && self->state_ != State::handshake)) return;
        self->fail(Error{Errc::timeout,
                         "redis " + self->endpoint_.host + ":" +
                             std::to_string(self->endpoint_.port) + ": not connected within " +
                             std::to_string(self->endpoint_.connect_timeout.count()) + " ms"});
      }));
  resolver_.async_resolve(
      endpoint_.host, std::to_string(endpoint_.port),
      asio::bind_executor(strand_, [self = shared_from_this(), handshake = std::move(handshake)](
                                       error_code ec, asio::ip::tcp::resolver::results_type r) {
        if (self->state_ != State::connecting) return;
        if (ec) return self->fail(unavailable(self->endpoint_, "resolve: " + ec.message()));
        asio::async_connect(
            self->socket_, r,
            asio::bind_executor(self->strand_, [self, handshake = std::move(handshake)](
                                                   error_code ec, const asio::ip::tcp::endpoint&) {
              if (self->state_ != State::connecting) return;
              if (ec) return self->fail(unavailable(self->endpoint_, "connect: " + ec.message()));
              self->socket_.set_option(asio::ip::tcp::no_delay(true), ec);
              // A peer that vanishes without a FIN (a partition) is noticed by keepalive on
              // the pub/sub connection, which has no command deadlines.
              self->socket_.set_option(asio::socket_base::keep_alive(true), ec);
              self->state_ = State::handshake;
              self->read();
              self->handshake_left_ = handshake.size();
              if (handshake.empty()) return self->on_connected();
              for (const auto& wire : handshake) {
                self->enqueue(wire, [self](Result<Reply> r) {
                  if (self->state_ != State::handshake) return;
                  if (!r) return self->fail(r.error());
                  if (is_error(**r)) return self->fail(error_of(**r));
                  if (--self->handshake_left_ == 0) self->on_connected();
                });
              }
            }));
      }));
}

void Connection::on_connected() {
  state_ = State::ready;
  connect_timer_.cancel();
  if (auto ready = std::exchange(ready_, nullptr)) ready(Result<void>{});
}

void Connection::send(std::string_view wire, ReplyHandler done) {
  if (state_ != State::ready) return done(unavailable(endpoint_, "not connected"));
  enqueue(wire, std::move(done));
}

void Connection::send_unmatched(std::string_view wire) {
  if (state_ != State::ready) return;
  out_ += wire;
  flush();
}

void Connection::enqueue(std::string_view wire, ReplyHandler done) {
  pending_.push_back(
      Pending{std::move(done), std::chrono::steady_clock::now() + endpoint_.command_timeout});
  out_ += wire;
  flush();
  arm_timer();
}

void Connection::flush() {
  if (writing_now_ || out_.empty()) return;
  writing_now_ = true;
  writing_.swap(out_);
  out_.clear();
  asio::async_write(
      socket_, asio::buffer(writing_),
      asio::bind_executor(strand_, [self = shared_from_this()](error_code ec, std::size_t) {
        self->writing_now_ = false;
        self->writing_.clear();
        if (self->state_ == State::closed) return;
        if (ec) return self->fail(unavailable(self->endpoint_, "write: " + ec.message()));
        self->flush();
      }));
}

void Connection::read() {
  socket_.async_read_some(
      asio::buffer(in_),
      asio::bind_executor(strand_, [self = shared_from_this()](error_code ec, std::size_t n) {
        if (self->state_ == State::closed) return;
        if (ec == asio::error::eof) {
          return self->fail(unavailable(self->endpoint_, "connection closed by the server"));
        }
        if (ec) return self->fail(unavailable(self->endpoint_, "read: " + ec.message()));
        self->on_read(n);
      }));
}

void Connection::on_read(std::size_t n) {
  if (redisReaderFeed(reader_, in_.data(), n) != REDIS_OK) {
    return fail(unavailable(endpoint_, "reply reader: out of memory"));
  }
  for (;;) {
    void* raw = nullptr;
    if (redisReaderGetReply(reader_, &raw) != REDIS_OK) {
      return fail(unavailable(endpoint_, std::string("protocol error: ") + reader_->errstr));
    }
    if (raw == nullptr) break;
    dispatch(Reply(static_cast<redisReply*>(raw)));
    if (state_ == State::closed) return;
  }
  read();
}

void Connection::dispatch(Reply reply) {
  if (!pending_.empty()) {
    ReplyHandler done = std::move(pending_.front().done);
    pending_.pop_front();
    done(std::move(reply));
    return;
  }
  if (push_) return push_(std::move(reply));
  fail(unavailable(endpoint_, "protocol error: a reply nobody asked for"));
}

void Connection::arm_timer() {
  if (timer_armed_ || pending_.empty() || state_ == State::closed) return;
  timer_armed_ = true;
  timer_.expires_at(pending_.front().deadline);
  timer_.async_wait(asio::bind_executor(strand_, [self = shared_from_this()](error_code ec) {
    self->timer_armed_ = false;
    if (ec || self->state_ == State::closed) return;
    self->on_timer();
  }));
}

// Replies come in order, so the oldest command is the one that can be late. The timer is
// not moved on every reply (that would cost a cancel per command): when it fires early for a
// command that was answered meanwhile, it re-arms for the new oldest one.
void Connection::on_timer() {
  if (pending_.empty()) return;
  if (pending_.front().deadline <= std::chrono::steady_clock::now()) {
    // The connection's state is unknown (Redis busy, network gone): a later reply could not
    // be matched to its command any more, so reset it.
    return fail(Error{Errc::timeout, "redis " + endpoint_.host + ":" +
                                         std::to_string(endpoint_.port) + ": no reply within " +
                                         std::to_string(endpoint_.command_timeout.count()) +
                                         " ms; connection reset"});
  }
  arm_timer();
}

void Connection::close(const Error& why) {
  lost_ = nullptr;
  fail(why);
}

void Connection::fail(const Error& why) {
  if (state_ == State::closed) return;
  state_ = State::closed;
  error_code ignored;
  resolver_.cancel();
  timer_.cancel();
  connect_timer_.cancel();
  socket_.shutdown(asio::socket_base::shutdown_both, ignored);
  socket_.close(ignored);
  // Handlers may send again (onto this closed connection, failing at once) or drop the
  // last reference to their owner: work on a local copy.
  auto pending = std::exchange(pending_, {});
  auto ready = std::exchange(ready_, nullptr);
  auto lost = std::exchange(lost_, nullptr);
  auto keep = shared_from_this();
  for (auto& p : pending) p.done(why);
  if (ready) {
    ready(why);
  } else if (lost) {
    lost(why);
  }
}

}  // namespace idem::redis
