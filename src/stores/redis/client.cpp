#include "stores/redis/client.hpp"

#include <boost/asio/post.hpp>
#include <boost/asio/strand.hpp>
#include <utility>

namespace idem::redis {

namespace asio = boost::asio;

namespace {

bool is_noscript(const Result<Reply>& r) {
  return r && is_error(**r) && as_string(**r).starts_with("NOSCRIPT");
}

std::string script_load(Script s) { return Command{"SCRIPT", "LOAD", script(s).body}.take(); }

}  // namespace

Client::Client(asio::any_io_executor executor, ClientOptions options)
    : strand_(asio::make_strand(std::move(executor))), options_(std::move(options)) {
  // Every connection starts as this one; each kind adds to its handshake.
  const LinkOptions base{options_.endpoint, options_.backoff_min, options_.backoff_max,
                         options_.handshake};
  LinkOptions pool = base;
  // Every connection loads the scripts: cheap (Redis keeps one copy by SHA), and a Redis
  // that restarted empty has them again before the first EVALSHA on the new connection.
  for (std::size_t i = 0; i < static_cast<std::size_t>(Script::kCount); ++i) {
    pool.handshake.push_back(script_load(static_cast<Script>(i)));
  }
  pool.handshake.push_back(Command{"CLIENT", "SETNAME", "idem-store"}.take());
  for (std::size_t i = 0; i < std::max<std::size_t>(options_.pool_size, 1); ++i) {
    pool_.push_back(std::make_shared<Link>(strand_, pool));
  }
  LinkOptions sub = base;
  sub.handshake.push_back(Command{"CLIENT", "SETNAME", "idem-watch"}.take());
  if (options_.replay_cache) {
    tracking_ = std::make_shared<Tracking>(strand_, base, options_.replay_cache,
                                           options_.on_replay_cache_state);
  }
  watches_ = std::make_shared<Watches>(strand_, std::move(sub), options_.endpoint.command_timeout,
                                       options_.channel_of);
}

void Client::start() {
  std::weak_ptr<Client> weak = weak_from_this();
  post([self = shared_from_this(), weak] {
    for (auto& link : self->pool_) {
      link->on_ready([weak](Connection&) {
        if (auto s = weak.lock()) {
          s->mark_up(true);
          s->settle();
        }
      });
      link->on_down([weak](const Error&) {
        if (auto s = weak.lock()) s->settle();
      });
      link->start();
    }
    self->watches_->start([weak] {
      if (auto s = weak.lock()) s->mark_up(false);
    });
    if (self->tracking_) self->tracking_->start();
  });
}

void Client::stop(Error why, std::function<void()> done) {
  post([self = shared_from_this(), why = std::move(why), done = std::move(done)] {
    for (auto& link : self->pool_) link->stop(why);
    self->watches_->stop(why);
    if (self->tracking_) self->tracking_->stop(why);
    self->settle();
    done();
  });
}

void Client::close_when_idle(Error why, std::function<void()> done) {
  watches_->stop_posting();
  post([self = shared_from_this(), why = std::move(why), done = std::move(done)]() mutable {
    self->closing_.emplace(Closing{std::move(why), std::move(done)});
    self->stop_if_closing();
  });
}

// Called after every reply: the common case costs one test.
void Client::stop_if_closing() {
  if (!closing_ || !settled_) return;  // what waits for the first connection goes first
  for (auto& link : pool_) {
    const Connection* c = link->ready();
    if (c && c->in_flight() > 0) return;
  }
  Closing closing = std::move(*closing_);
  closing_.reset();
  for (auto& link : pool_) link->stop(closing.why);
  watches_->stop(closing.why);
  if (tracking_) tracking_->stop(closing.why);
  settle();
  closing.done();
}

// The first attempt ended, either way: what waited runs now (and fails if it failed).
void Client::settle() {
  if (settled_) return;
  settled_ = true;
  for (auto& op : std::exchange(waiting_, {})) op();
  stop_if_closing();
}

void Client::run_or_wait(std::function<void()> op) {
  if (settled_) return op();
  waiting_.push_back(std::move(op));
}

void Client::mark_up(bool pool) {
  {
    std::lock_guard lock(up_mutex_);
    (pool ? pool_was_up_ : watch_was_up_) = true;
  }
  up_cv_.notify_all();
}

bool Client::wait_up(Duration timeout) {
  std::unique_lock lock(up_mutex_);
  return up_cv_.wait_for(lock, timeout, [&] { return pool_was_up_ && watch_was_up_; });
}

// While no connection is open, calls fail at once: callers answer 503 (or pass through with
// fail_open) instead of piling up behind a Redis that is gone.
Error Client::down_error() const {
  return Error{Errc::store_unavailable,
               "redis: not connected; last error: " + pool_.front()->last_error().message};
}

void Client::post(std::function<void()> f) { asio::post(strand_, std::move(f)); }

// The least busy open connection: with pipelining any one would do, but spreading keeps a
// large reply on one connection from delaying everything behind it.
Connection* Client::pick() {
  Connection* best = nullptr;
  for (auto& link : pool_) {
    Connection* c = link->ready();
    if (c && (!best || c->in_flight() < best->in_flight())) best = c;
  }
  return best;
}

void Client::eval(Script s, const RecordId& id, std::string wire, ReplyHandler done) {
  auto shared = std::make_shared<const std::string>(std::move(wire));
  post([self = shared_from_this(), s, id, shared, done = std::move(done)]() mutable {
    std::function<void()> op = [self, s, shared, done = std::move(done)] {
      Connection* conn = self->pick();
      if (!conn) return done(self->down_error());
      conn->send(*shared, [self, s, shared, done](Result<Reply> r) {
        if (!is_noscript(r)) {
          done(std::move(r));
          return self->stop_if_closing();
        }
        Connection* again = self->pick();
        if (!again) return done(self->down_error());
        again->send(script_load(s), [](Result<Reply>) {});
        again->send(*shared, [self, done](Result<Reply> r2) {
          done(std::move(r2));
          self->stop_if_closing();
        });
      });
    };
    if (!self->watches_->park(id, op)) self->run_or_wait(std::move(op));
  });
}

void Client::cache(std::string key) {
  if (!tracking_) return;
  post([self = shared_from_this(), key = std::move(key)] { self->tracking_->fill(key); });
}

void Client::send(std::vector<std::string> wires, ReplyHandler done) {
  post([self = shared_from_this(), wires = std::move(wires), done = std::move(done)]() mutable {
    self->run_or_wait([self, wires = std::move(wires), done = std::move(done)] {
      Connection* conn = self->pick();
      if (!conn) return done(self->down_error());
      for (std::size_t i = 0; i + 1 < wires.size(); ++i) {
        conn->send(wires[i], [](Result<Reply>) {});
      }
      conn->send(wires.back(), [self, done](Result<Reply> r) {
        done(std::move(r));
        self->stop_if_closing();
      });
    });
  });
}

}  // namespace idem::redis
