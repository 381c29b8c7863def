#pragma once

// watch() over Redis pub/sub. The complete, release and erase scripts PUBLISH on a channel
// per record; one dedicated connection SUBSCRIBEs to a record's channel while someone
// watches it and UNSUBSCRIBEs when the last watch goes.
//
// No lost wake-up within an instance: an operation on a record whose SUBSCRIBE is not
// confirmed yet is held back (parked) until Redis confirms it, so the engine's pattern
// "watch, then look again" always either sees the change or gets the message. After a
// reconnect every watcher is called once, since messages may have been missed meanwhile.

#include <boost/asio/steady_timer.hpp>
#include <chrono>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "idem/digest.hpp"
#include "idem/store.hpp"
#include "stores/memory/watch_state.hpp"
#include "stores/redis/link.hpp"

namespace idem::redis {

/// Who watches which channel. Apart from the Watches so that a Watch, which may outlive the
/// store, never holds anything tied to the store's io_context.
struct WatchRegistry {
  using States = std::vector<std::shared_ptr<detail::WatchState>>;
  std::mutex mutex;
  std::unordered_map<std::string, States> watchers;  ///< by channel
  bool stopped = false;
  /// Called with the mutex held when a channel gains its first or loses its last watcher,
  /// unless stopped: the store is then alive (stopping takes the mutex).
  std::function<void(const std::string&)> changed;

  void remove(const std::string& channel, const detail::WatchState* state);
};

class Watches : public std::enable_shared_from_this<Watches> {
 public:
  using ChannelOf = std::function<std::string(const RecordId&)>;

  Watches(Strand strand, LinkOptions link, Duration confirm_timeout, ChannelOf channel_of);

  /// `up` is called on the strand each time the subscriber connection is up.
  void start(std::function<void()> up);
  /// No watcher is called after this returns; later unwatches touch nothing.
  void stop(const Error& why);
  /// Any thread: from now on watch() and unwatches post nothing to the strand, so the
  /// io_context may go before stop() has run on it.
  void stop_posting();
  /// On the strand: whether the subscriber connection is up.
  bool ready() const noexcept { return link_->ready() != nullptr; }

  /// Any thread.
  std::unique_ptr<Watch> watch(const RecordId& id, std::function<void()> changed);

  /// On the strand: holds `op` back while a subscription for `id`'s channel awaits its
  /// confirmation; returns false (and leaves `op`) when there is none.
  bool park(const RecordId& id, std::function<void()>& op);

 private:
  using SteadyTime = std::chrono::steady_clock::time_point;
  using States = WatchRegistry::States;
  struct Confirming {
    int outstanding = 0;  ///< SUBSCRIBEs sent and not confirmed yet
    SteadyTime since{};
    std::vector<std::function<void()>> parked;
  };

  void sync(const std::string& channel);
  void on_ready(Connection& conn);
  void on_push(Reply reply);
  void confirmed(const std::string& channel);
  void release_all();
  void arm_timer();
  void post_sync(const std::string& channel);

  Strand strand_;
  Duration confirm_timeout_;
  ChannelOf channel_of_;
  std::shared_ptr<Link> link_;
  std::function<void()> up_;

  std::shared_ptr<WatchRegistry> registry_ = std::make_shared<WatchRegistry>();

  // Strand only.
  std::unordered_set<std::string> subscribed_;
  std::unordered_map<std::string, Confirming> confirming_;
  boost::asio::steady_timer timer_;
  bool timer_armed_ = false;
};

}  // namespace idem::redis
