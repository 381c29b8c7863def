#include "stores/redis/tracking.hpp"

#include <utility>

#include "idem/record.hpp"

namespace idem::redis {
namespace {

constexpr std::string_view kInvalidations = "__redis__:invalidate";

bool is_string(const redisReply* r) {
  return r && (r->type == REDIS_REPLY_STRING || r->type == REDIS_REPLY_STATUS);
}

}  // namespace

Tracking::Tracking(Strand strand, LinkOptions options, std::shared_ptr<ReplayCache> cache,
                   OnState on_state)
    : cache_(std::move(cache)), on_state_(std::move(on_state)) {
  LinkOptions sub = options;
  sub.handshake.push_back(Command{"CLIENT", "SETNAME", "idem-invalidations"}.take());
  options.handshake.push_back(Command{"CLIENT", "SETNAME", "idem-cache-reader"}.take());
  subscriber_ = std::make_shared<Link>(strand, std::move(sub));
  reader_ = std::make_shared<Link>(strand, std::move(options));
}

void Tracking::start() {
  std::weak_ptr<Tracking> weak = weak_from_this();
  subscriber_->on_push([weak](Reply r) {
    if (auto self = weak.lock()) self->on_push(std::move(r));
  });
  subscriber_->on_ready([weak](Connection& c) {
    if (auto self = weak.lock()) self->on_subscriber_ready(c);
  });
  subscriber_->on_down([weak](const Error& why) {
    if (auto self = weak.lock()) {
      self->why_off_ = "the invalidations connection is down: " + why.message;
      self->subscriber_id_.reset();
      self->announced_id_.reset();
      self->update();
    }
  });
  reader_->on_ready([weak](Connection& c) {
    if (auto self = weak.lock()) {
      if (self->subscriber_id_) self->enable_tracking(c, *self->subscriber_id_);
    }
  });
  reader_->on_down([weak](const Error& why) {
    if (auto self = weak.lock()) {
      self->why_off_ = "the tracked reader is down: " + why.message;
      self->reader_redirect_.reset();
      self->update();
    }
  });
  subscriber_->start();
  reader_->start();
}

void Tracking::stop(const Error& why) {
  on_state_ = nullptr;  // a store being closed is not news
  why_off_ = why.message;
  subscriber_->stop(why);
  reader_->stop(why);
  subscriber_id_.reset();
  reader_redirect_.reset();
  update();
}

void Tracking::on_subscriber_ready(Connection& conn) {
  std::weak_ptr<Tracking> weak = weak_from_this();
  conn.send(Command{"CLIENT", "ID"}.wire(), [weak, &conn](Result<Reply> r) {
    auto self = weak.lock();
    if (!self || !r || self->subscriber_->ready() != &conn) return;  // replaced meanwhile
    if ((*r)->type != REDIS_REPLY_INTEGER) return self->refused("CLIENT ID", *r);
    self->announced_id_ = (*r)->integer;
    conn.send_unmatched(Command{"SUBSCRIBE", kInvalidations}.wire());
  });
}

void Tracking::on_push(Reply reply) {
  // The only command the subscriber sends unmatched is its SUBSCRIBE.
  if (is_error(*reply)) return refused("SUBSCRIBE " + std::string(kInvalidations), reply);
  if (reply->type != REDIS_REPLY_ARRAY || reply->elements < 3) return;
  const redisReply* kind = reply->element[0];
  const redisReply* channel = reply->element[1];
  if (!is_string(kind) || !is_string(channel) || as_string(*channel) != kInvalidations) return;
  if (as_string(*kind) == "subscribe") {
    subscriber_id_ = announced_id_;
    if (Connection* reader = reader_->ready(); reader && subscriber_id_) {
      enable_tracking(*reader, *subscriber_id_);
    }
    return update();
  }
  if (as_string(*kind) != "message") return;
  const redisReply* keys = reply->element[2];
  if (keys->type == REDIS_REPLY_ARRAY) {
    for (std::size_t i = 0; i < keys->elements; ++i) {
      if (is_string(keys->element[i])) cache_->invalidate(as_string(*keys->element[i]));
    }
    return;
  }
  cache_->clear();  // a null list: FLUSHDB or FLUSHALL, everything goes
}

void Tracking::enable_tracking(Connection& conn, long long redirect) {
  std::weak_ptr<Tracking> weak = weak_from_this();
  reader_redirect_.reset();
  update();
  // Off first: Redis keeps a connection's tracking mode until it is turned off.
  conn.send(Command{"CLIENT", "TRACKING", "off"}.wire(), [](Result<Reply>) {});
  conn.send(
      Command{"CLIENT", "TRACKING", "on", "REDIRECT", std::to_string(redirect), "OPTIN"}.wire(),
      [weak, redirect, &conn](Result<Reply> r) {
        auto self = weak.lock();
        if (!self || self->reader_->ready() != &conn) return;
        if (!r) return;  // the reader is going down: it says why
        if (is_error(**r)) {
          // The subscriber may have gone between its CLIENT ID and this (its next id
          // comes); otherwise Redis will not track for this user.
          if (self->subscriber_id_ == redirect) self->refused("CLIENT TRACKING", *r);
          return;
        }
        self->reader_redirect_ = redirect;
        self->update();
      });
}

void Tracking::refused(std::string what, const Reply& reply) {
  const std::string_view text = reply->type == REDIS_REPLY_ERROR
                                    ? std::string_view(reply->str, reply->len)
                                    : std::string_view("an unexpected reply");
  why_off_ = "Redis refused " + what + ": " + std::string(text);
  if (on_state_) on_state_(false, why_off_);
}

void Tracking::update() {
  const bool active = subscriber_id_ && reader_redirect_ && *subscriber_id_ == *reader_redirect_ &&
                      subscriber_->ready() && reader_->ready();
  if (active == active_) return;
  active_ = active;
  cache_->set_active(active);
  if (on_state_) on_state_(active, active ? std::string() : why_off_);
}

void Tracking::fill(const std::string& key) {
  if (!active_) return;
  Connection* conn = reader_->ready();
  if (!conn) return;
  const std::optional<std::uint64_t> epoch = cache_->begin_fill(key);
  if (!epoch) return;
  conn->send(Command{"CLIENT", "CACHING", "yes"}.wire(), [](Result<Reply>) {});
  conn->send(Command{"GET", key}.wire(), [cache = cache_, key, epoch = *epoch](Result<Reply> r) {
    std::optional<Record> record;
    if (r && (*r)->type == REDIS_REPLY_STRING) {
      if (auto decoded = decode_record(as_string(**r))) record = std::move(*decoded);
    }
    cache->finish_fill(key, epoch, std::move(record));
  });
}

}  // namespace idem::redis
