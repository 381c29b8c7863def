#pragma once

// Keeps a ReplayCache coherent through Redis's server-assisted client-side caching, in its
// RESP2 form (the packaged hiredis has no RESP3): one connection subscribes to
// __redis__:invalidate, and another reads records for the cache with
// CLIENT TRACKING on REDIRECT <the subscriber's id> OPTIN. Redis then remembers exactly the
// keys read right after CLIENT CACHING yes, and tells the subscriber when any of them is
// written, removed, expires or is evicted, whoever did it.
//
// The cache is active only while both connections are up and the reader's tracking names
// the subscriber that is up now; losing either empties it and stops it, since an
// invalidation could then go unseen. A reconnected subscriber has a new id, so the reader
// turns tracking off and on again with it.

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "stores/redis/link.hpp"
#include "stores/redis/replay_cache.hpp"

namespace idem::redis {

class Tracking : public std::enable_shared_from_this<Tracking> {
 public:
  /// Told when the cache starts answering (true, "") or stops or cannot start (false, why).
  using OnState = std::function<void(bool active, const std::string& why)>;

  Tracking(Strand strand, LinkOptions options, std::shared_ptr<ReplayCache> cache,
           OnState on_state = {});

  void start();                 ///< on the strand
  void stop(const Error& why);  ///< on the strand
  /// On the strand: reads `key` on the tracked connection into the cache.
  void fill(const std::string& key);

 private:
  void on_subscriber_ready(Connection& conn);
  void on_push(Reply reply);
  void on_reader_ready(Connection& conn);
  void enable_tracking(Connection& conn, long long redirect);
  /// Redis refused what the cache needs: it stays off until a reconnection tries again.
  void refused(std::string what, const Reply& reply);
  void update();

  std::shared_ptr<ReplayCache> cache_;
  std::shared_ptr<Link> subscriber_;
  std::shared_ptr<Link> reader_;
  std::optional<long long> subscriber_id_;    ///< CLIENT ID of the subscriber, once it listens
  std::optional<long long> announced_id_;     ///< its id while SUBSCRIBE awaits confirmation
  std::optional<long long> reader_redirect_;  ///< where the reader's tracking reports now
  bool active_ = false;
  OnState on_state_;
  std::string why_off_ = "not connected yet";
};

}  // namespace idem::redis
