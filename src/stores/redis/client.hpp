#pragma once

// The asynchronous Redis client under the store: a pool of pipelined, self-reconnecting
// connections for commands plus one for pub/sub, all on one strand. Calls are accepted from
// any thread and never block; replies come back on the strand.

#include <atomic>
#include <boost/asio/any_io_executor.hpp>
#include <condition_variable>
#include <cstddef>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "idem/digest.hpp"
#include "idem/store.hpp"
#include "stores/redis/link.hpp"
#include "stores/redis/replay_cache.hpp"
#include "stores/redis/scripts.hpp"
#include "stores/redis/tracking.hpp"
#include "stores/redis/watches.hpp"

namespace idem::redis {

struct ClientOptions {
  Endpoint endpoint;
  std::vector<std::string> handshake;  ///< AUTH, SELECT...; the pool adds SCRIPT LOAD
  std::size_t pool_size = 2;
  Duration backoff_min{50};
  Duration backoff_max{1000};
  Watches::ChannelOf channel_of;
  /// Completed records read back for replays (tracking.hpp); none: no cache, no tracking.
  std::shared_ptr<ReplayCache> replay_cache;
  Tracking::OnState on_replay_cache_state;
};

class Client : public std::enable_shared_from_this<Client> {
 public:
  Client(boost::asio::any_io_executor executor, ClientOptions options);

  void start();
  /// Any thread; fails every pending command with `why` and stops reconnecting. `done` is
  /// called on the strand once everything is closed.
  void stop(Error why, std::function<void()> done);
  /// Any thread; once every command sent before this call is answered (or timed out), stops
  /// as stop() does. Watches stop posting at once. For a client on an io_context that is
  /// about to go: the io_context runs out of work once `done` was called.
  void close_when_idle(Error why, std::function<void()> done);
  /// Waits (blocking, for start-up only) until the pool and the subscriber were both up
  /// once, or `timeout` passed. True when they were.
  bool wait_up(Duration timeout);

  /// Runs `s` by EVALSHA (`wire`); on NOSCRIPT (Redis restarted or SCRIPT FLUSH) loads the
  /// script and sends it once more on the same connection. `id` is the record it touches,
  /// for ordering after that record's pending SUBSCRIBE. Any thread.
  void eval(Script s, const RecordId& id, std::string wire, ReplyHandler done);
  /// Sends commands in order on one connection; `done` gets the last one's reply and the
  /// others' replies are dropped. Any thread.
  void send(std::vector<std::string> wires, ReplyHandler done);

  std::unique_ptr<Watch> watch(const RecordId& id, std::function<void()> changed) {
    return watches_->watch(id, std::move(changed));
  }

  /// Any thread: reads the record under `key` into the replay cache, if there is one.
  void cache(std::string key);

 private:
  Connection* pick();
  Error down_error() const;
  void post(std::function<void()> f);
  void mark_up(bool pool);
  void stop_if_closing();
  void run_or_wait(std::function<void()> op);
  void settle();

  Strand strand_;
  ClientOptions options_;
  std::vector<std::shared_ptr<Link>> pool_;
  std::shared_ptr<Watches> watches_;
  std::shared_ptr<Tracking> tracking_;  ///< with a replay cache only
  struct Closing {
    Error why;
    std::function<void()> done;
  };
  std::optional<Closing> closing_;  // strand only
  // Strand only. Until the pool's first connection attempt ends, operations wait for it
  // instead of failing: a client on an executor cannot block its creator until connected,
  // and requests that arrive in that moment should not fail for it.
  bool settled_ = false;
  std::vector<std::function<void()>> waiting_;

  std::mutex up_mutex_;
  std::condition_variable up_cv_;
  bool pool_was_up_ = false;   // guarded by up_mutex_
  bool watch_was_up_ = false;  // guarded by up_mutex_
};

}  // namespace idem::redis
