#include "stores/redis/watches.hpp"

#include <algorithm>
#include <boost/asio/bind_executor.hpp>
#include <boost/asio/post.hpp>
#include <utility>

namespace idem::redis {

namespace asio = boost::asio;

namespace {

class RedisWatch final : public Watch {
 public:
  RedisWatch(std::shared_ptr<WatchRegistry> registry, std::string channel,
             std::shared_ptr<detail::WatchState> state)
      : registry_(std::move(registry)), channel_(std::move(channel)), state_(std::move(state)) {}
  ~RedisWatch() override {
    registry_->remove(channel_, state_.get());
    state_->cancel();
  }

 private:
  std::shared_ptr<WatchRegistry> registry_;
  std::string channel_;
  std::shared_ptr<detail::WatchState> state_;
};

bool is_string(const redisReply* r) {
  return r && (r->type == REDIS_REPLY_STRING || r->type == REDIS_REPLY_STATUS);
}

}  // namespace

void WatchRegistry::remove(const std::string& channel, const detail::WatchState* state) {
  std::lock_guard lock(mutex);
  auto it = watchers.find(channel);
  if (it == watchers.end()) return;
  std::erase_if(it->second, [&](const auto& w) { return w.get() == state; });
  if (it->second.empty()) {
    watchers.erase(it);
    if (!stopped && changed) changed(channel);
  }
}

Watches::Watches(Strand strand, LinkOptions link, Duration confirm_timeout, ChannelOf channel_of)
    : strand_(strand),
      confirm_timeout_(confirm_timeout),
      channel_of_(std::move(channel_of)),
      link_(std::make_shared<Link>(strand, std::move(link))),
      timer_(strand) {}

void Watches::start(std::function<void()> up) {
  up_ = std::move(up);
  std::weak_ptr<Watches> weak = weak_from_this();
  {
    std::lock_guard lock(registry_->mutex);
    registry_->changed = [weak](const std::string& channel) {
      if (auto self = weak.lock()) self->post_sync(channel);
    };
  }
  link_->on_push([weak](Reply r) {
    if (auto self = weak.lock()) self->on_push(std::move(r));
  });
  link_->on_ready([weak](Connection& c) {
    if (auto self = weak.lock()) self->on_ready(c);
  });
  link_->on_down([weak](const Error&) {
    // Held-back operations must not wait for a connection that is gone.
    if (auto self = weak.lock()) self->release_all();
  });
  link_->start();
}

void Watches::stop_posting() {
  std::lock_guard lock(registry_->mutex);
  registry_->stopped = true;
  registry_->changed = nullptr;
}

void Watches::stop(const Error& why) {
  stop_posting();
  timer_.cancel();
  link_->stop(why);
  release_all();
}

std::unique_ptr<Watch> Watches::watch(const RecordId& id, std::function<void()> changed) {
  auto state = std::make_shared<detail::WatchState>(std::move(changed));
  std::string channel = channel_of_(id);
  {
    std::lock_guard lock(registry_->mutex);
    auto& list = registry_->watchers[channel];
    list.push_back(state);
    if (list.size() == 1 && !registry_->stopped) post_sync(channel);
  }
  return std::make_unique<RedisWatch>(registry_, std::move(channel), std::move(state));
}

// Called with the registry's mutex held and not stopped, so that stop() (which takes it)
// orders after every post: nothing is posted to an executor whose io_context may be gone.
void Watches::post_sync(const std::string& channel) {
  asio::post(strand_, [self = shared_from_this(), channel] { self->sync(channel); });
}

void Watches::sync(const std::string& channel) {
  bool want = false;
  {
    std::lock_guard lock(registry_->mutex);
    want = registry_->watchers.contains(channel);
  }
  const bool have = subscribed_.contains(channel);
  if (want == have) return;
  Connection* conn = link_->ready();
  if (!conn) return;  // on_ready subscribes to everything watched then
  if (want) {
    conn->send_unmatched(Command{"SUBSCRIBE", channel}.wire());
    subscribed_.insert(channel);
    Confirming& c = confirming_[channel];
    if (c.outstanding++ == 0) c.since = std::chrono::steady_clock::now();
    arm_timer();
  } else {
    conn->send_unmatched(Command{"UNSUBSCRIBE", channel}.wire());
    subscribed_.erase(channel);
  }
}

bool Watches::park(const RecordId& id, std::function<void()>& op) {
  if (confirming_.empty()) return false;  // the common case costs one test
  auto it = confirming_.find(channel_of_(id));
  if (it == confirming_.end()) return false;
  it->second.parked.push_back(std::move(op));
  return true;
}

void Watches::on_ready(Connection& conn) {
  release_all();
  subscribed_.clear();
  // Told last, after the watchers present now were collected and called: a watch made
  // once the store reported "up" is subscribed normally, never also called spuriously.
  struct Up {
    const std::function<void()>& up;
    ~Up() {
      if (up) up();
    }
  } up{up_};
  std::vector<std::string> channels;
  std::vector<std::shared_ptr<detail::WatchState>> everyone;
  {
    std::lock_guard lock(registry_->mutex);
    for (const auto& [channel, states] : registry_->watchers) {
      channels.push_back(channel);
      everyone.insert(everyone.end(), states.begin(), states.end());
    }
  }
  if (channels.empty()) return;
  Command cmd;
  cmd.begin(channels.size() + 1);
  cmd.arg("SUBSCRIBE");
  const auto now = std::chrono::steady_clock::now();
  for (const auto& channel : channels) {
    cmd.arg(channel);
    subscribed_.insert(channel);
    confirming_[channel] = Confirming{1, now, {}};
  }
  conn.send_unmatched(cmd.wire());
  arm_timer();
  // Messages may have been missed while disconnected: let every watcher look again. Their
  // looks are parked until the subscriptions are confirmed, so nothing slips between.
  for (const auto& state : everyone) state->fire();
}

void Watches::on_push(Reply reply) {
  if (reply->type != REDIS_REPLY_ARRAY || reply->elements < 3) return;
  const redisReply* kind = reply->element[0];
  const redisReply* channel = reply->element[1];
  if (!is_string(kind) || !is_string(channel)) return;
  const std::string_view k = as_string(*kind);
  const std::string name(as_string(*channel));
  if (k == "subscribe") return confirmed(name);
  if (k != "message") return;
  States states;
  {
    std::lock_guard lock(registry_->mutex);
    auto it = registry_->watchers.find(name);
    if (it == registry_->watchers.end()) return;
    states = it->second;
  }
  for (const auto& state : states) state->fire();
}

void Watches::confirmed(const std::string& channel) {
  auto it = confirming_.find(channel);
  if (it == confirming_.end() || --it->second.outstanding > 0) return;
  auto parked = std::move(it->second.parked);
  confirming_.erase(it);
  for (auto& op : parked) op();
}

void Watches::release_all() {
  auto all = std::exchange(confirming_, {});
  for (auto& [channel, c] : all) {
    for (auto& op : c.parked) op();
  }
}

void Watches::arm_timer() {
  if (timer_armed_ || confirming_.empty()) return;
  auto oldest = std::min_element(confirming_.begin(), confirming_.end(),
                                 [](auto& a, auto& b) { return a.second.since < b.second.since; });
  timer_armed_ = true;
  timer_.expires_at(oldest->second.since + confirm_timeout_);
  timer_.async_wait(
      asio::bind_executor(strand_, [self = shared_from_this()](boost::system::error_code ec) {
        self->timer_armed_ = false;
        if (ec) return;
        const auto now = std::chrono::steady_clock::now();
        for (const auto& [channel, c] : self->confirming_) {
          if (c.since + self->confirm_timeout_ <= now) {
            // A subscriber that cannot confirm in time is as good as gone: let the held
            // operations go (the engine's timer still bounds the wait) and reconnect.
            self->release_all();
            self->link_->reset(Error{Errc::timeout, "redis: SUBSCRIBE not confirmed in time"});
            return;
          }
        }
        self->arm_timer();
      }));
}

}  // namespace idem::redis
