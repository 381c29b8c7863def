#include "idem/engine.hpp"

#include <algorithm>
#include <array>
#include <random>
#include <stdexcept>

#include "core/engine_impl.hpp"
#include "core/engine_wait.hpp"
#include "core/header_filter.hpp"

namespace idem {

std::string_view outcome_name(Outcome outcome) noexcept {
  static constexpr std::array<std::string_view, 11> kNames = {
      "original",    "replayed",    "mismatch",    "conflict",   "duplicate", "missing_key",
      "invalid_key", "passthrough", "store_error", "not_stored", "too_large"};
  return kNames[static_cast<std::size_t>(outcome)];
}

Engine::Impl::Impl(EngineOptions o)
    : options(std::move(o)),
      namer(options.secret),
      attempt_base((std::uint64_t{std::random_device{}()} << 32) | std::random_device{}()) {
  if (!options.store) throw std::invalid_argument("store: an engine needs a store");
  if (!options.clock) throw std::invalid_argument("clock: an engine needs a clock");
  auto& set = options.policies;
  auto add_plan = [&](const Policy& p, std::string route) {
    if (p.concurrency == Concurrency::wait && !options.scheduler) {
      throw std::invalid_argument("concurrency: \"wait\" needs a scheduler");
    }
    if (p.lease.count() <= 0) throw std::invalid_argument("lease: must be positive");
    if (p.ttl.count() <= 0) throw std::invalid_argument("ttl: must be positive");
    plans.push_back(
        std::make_unique<RoutePlan>(RoutePlan{&p, Fingerprinter(p.fingerprint), std::move(route)}));
  };
  for (auto& r : set.routes) add_plan(r.policy, r.path.text());
  add_plan(set.defaults, {});
}

std::string Engine::Impl::attempt_owner() {
  static constexpr char kHex[] = "0123456789abcdef";
  std::uint64_t n = attempt_base + attempts.fetch_add(1, std::memory_order_relaxed);
  const std::size_t prefix = options.instance_id.size();
  std::string owner(prefix + 17, '/');  // one allocation
  options.instance_id.copy(owner.data(), prefix);
  for (std::size_t i = owner.size(); i > prefix + 1; n >>= 4) owner[--i] = kHex[n & 0xF];
  return owner;
}

void Engine::Impl::publish(EventKind kind, const RecordId& id, std::string_view route,
                           std::string detail) const {
  if (!options.events) return;
  options.events->publish(
      Event{kind, id, std::string(route), std::move(detail), options.clock->now(), {}});
}

void Engine::Impl::publish_store_error(const RecordId& id, std::string_view route,
                                       const Error& error) const {
  if (!options.events) return;
  options.events->publish(Event{EventKind::store_error, id, std::string(route), error.message,
                                options.clock->now(), error.code});
}

std::shared_ptr<Engine> Engine::create(EngineOptions options) {
  return std::shared_ptr<Engine>(new Engine(std::make_unique<Impl>(std::move(options))));
}

Engine::Engine(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Engine::~Engine() = default;

const PolicySet& Engine::policies() const noexcept { return impl_->options.policies; }
Store& Engine::store() noexcept { return *impl_->options.store; }

namespace {

Decision respond(Outcome outcome, Response response) {
  Decision d;
  d.action = Decision::Action::respond;
  d.outcome = outcome;
  d.response = std::move(response);
  return d;
}

Decision problem(Outcome outcome, const Policy& policy, ProblemType type, std::string detail) {
  return respond(outcome,
                 Problem{type, std::move(detail), {}, {}}.to_response(policy.problem_type_base));
}

Decision pass_through(Outcome outcome = Outcome::passthrough) {
  Decision d;
  d.outcome = outcome;
  return d;
}

/// The scope string of a Policy::scope_resolver value: its own tag, so that it never names
/// the same record as a built-in scope kind.
std::string resolved_scope(std::string_view value) {
  std::string out("resolver");
  out.push_back('\0');
  out.append(value);
  return out;
}

}  // namespace

void Engine::begin(const RequestView& request, DecisionCallback done) {
  auto path = request.path();
  auto match = impl_->options.policies.match(request.method, path);
  const RoutePlan& plan = *impl_->plans[match.index];
  const Policy& policy = *plan.policy;
  if (!policy.enabled || !policy.covers_method(request.method)) return done(pass_through());

  std::array<std::string_view, 2> values;
  std::size_t count = 0;
  for (const auto& h : request.headers) {
    if (!iequals(h.name, policy.header)) continue;
    if (count < values.size()) values[count] = h.value;
    ++count;
  }
  if (count == 0) {
    if (!policy.require_key) return done(pass_through());
    return done(problem(Outcome::missing_key, policy, ProblemType::missing_key,
                        "This endpoint requires an " + policy.header + " header."));
  }
  auto parsed =
      extract_key(std::span(values.data(), std::min(count, values.size())), policy.key_format);
  if (auto* error = std::get_if<KeyError>(&*parsed)) {
    return done(problem(
        Outcome::invalid_key, policy, ProblemType::invalid_key,
        "The " + policy.header + " header is invalid: " + std::string(describe(*error)) + "."));
  }
  if (policy.key_validator && !policy.key_validator(std::get<std::string>(*parsed))) {
    return done(problem(Outcome::invalid_key, policy, ProblemType::invalid_key,
                        "The " + policy.header + " header is invalid: " +
                            std::string(describe(KeyError::format_mismatch)) + "."));
  }
  if (request.body.size() > policy.max_request_bytes) {
    return done(problem(
        Outcome::too_large, policy, ProblemType::body_too_large,
        "The request body is larger than " + std::to_string(policy.max_request_bytes) + " bytes."));
  }
  const std::string& key = std::get<std::string>(*parsed);
  std::string route = plan.route.empty() ? std::string(path) : plan.route;
  std::string scope = policy.scope_resolver
                          ? resolved_scope(policy.scope_resolver(request))
                          : scope_string(policy.scope, request, policy.identity_headers,
                                         impl_->options.policies.trusted_proxies, route);

  PendingClaim pending{&plan, std::move(route), {}};
  pending.claim.id = impl_->namer.name(scope, key);
  pending.claim.fingerprint = policy.fingerprint_strategy
                                  ? policy.fingerprint_strategy->fingerprint(request)
                                  : plan.fingerprinter.fingerprint(request);
  pending.claim.owner = impl_->attempt_owner();
  pending.claim.lease = policy.lease;
  pending.claim.ttl = policy.ttl;
  pending.claim.take_over_expired = policy.on_expired_lease == OnExpiredLease::retry;
  claim(std::move(pending), std::move(done));
}

void Engine::claim(PendingClaim pending, DecisionCallback done) {
  ClaimRequest request = pending.claim;
  impl_->options.store->claim(std::move(request),
                              [self = shared_from_this(), pending = std::move(pending),
                               done = std::move(done)](Result<ClaimOutcome> result) mutable {
                                auto verdict = self->decide(pending, std::move(result));
                                if (verdict) return done(std::move(*verdict));
                                start_wait(self, std::move(pending), std::move(done));
                              });
}

std::optional<Decision> Engine::decide(const PendingClaim& pending, Result<ClaimOutcome> result,
                                       bool waiting_over) {
  const Policy& policy = *pending.plan->policy;
  const RecordId& id = pending.claim.id;
  if (!result) {
    impl_->publish_store_error(id, pending.route, result.error());
    if (result.error().code == Errc::timeout) {
      // The claim may still be carried out (a Redis that stalled runs the commands it
      // received once it goes on), and would hold the key in flight until its lease ends.
      settle_later(Settlement{.id = id,
                              .route = pending.route,
                              .give_up_at = impl_->options.clock->now() + policy.lease,
                              .claim_owner = pending.claim.owner},
                   result.error());
    }
    if (policy.fail_open) return pass_through(Outcome::store_error);
    return problem(Outcome::store_error, policy, ProblemType::store_unavailable,
                   "The idempotency store is unavailable; retry later with the same key.");
  }
  ClaimOutcome& outcome = *result;
  if (outcome.acquired) {
    if (outcome.took_over) {
      impl_->publish(EventKind::lease_taken_over, id, pending.route,
                     "lease expired; executing again");
    }
    Decision d;
    d.action = Decision::Action::proceed;
    d.outcome = Outcome::original;
    d.ticket.emplace(
        Ticket(shared_from_this(), id, outcome.fencing_token, &policy, pending.plan->route));
    return d;
  }
  if (!outcome.existing) {
    return problem(Outcome::store_error, policy, ProblemType::store_unavailable,
                   "The idempotency store gave an incomplete answer.");
  }
  Record& record = *outcome.existing;  // ours: the replay takes its body rather than a copy
  if (record.fingerprint != pending.claim.fingerprint) {
    impl_->publish(EventKind::mismatch, id, pending.route, "key reused with another request");
    return problem(Outcome::mismatch, policy, ProblemType::key_reused,
                   "This " + policy.header +
                       " was already used for a different request (method, path, query or body).");
  }
  if (record.state == RecordState::completed && record.response) {
    if (policy.on_duplicate == OnDuplicate::reject) {
      return problem(Outcome::duplicate, policy, ProblemType::duplicate_request,
                     "A request with this " + policy.header + " was already processed.");
    }
    StoredResponse& stored = *record.response;
    if (!stored.body_stored) {
      Problem p{ProblemType::response_not_stored,
                "The original response was too large to store; it was not executed again.",
                stored.status,
                {}};
      return respond(Outcome::not_stored, p.to_response(policy.problem_type_base));
    }
    Response replay;
    replay.status = stored.status;
    replay.headers = detail::replayable_headers(stored.headers, policy.replay_exclude_headers,
                                                policy.replay_header);
    replay.headers.emplace_back(policy.replay_header, "true");
    replay.body = std::move(stored.body);
    return respond(Outcome::replayed, std::move(replay));
  }
  if (record.lease_expired(impl_->options.clock->now())) {
    impl_->publish(EventKind::outcome_unknown, id, pending.route,
                   "lease expired before completion; flush the key to allow a retry");
    return problem(Outcome::conflict, policy, ProblemType::outcome_unknown,
                   "An earlier attempt with this " + policy.header +
                       " did not finish; its outcome is unknown. An operator must flush the key.");
  }
  if (policy.concurrency == Concurrency::wait && !waiting_over) return std::nullopt;
  impl_->publish(EventKind::conflict, id, pending.route, "duplicate while in flight");
  Problem p{ProblemType::request_in_flight,
            "A request with this " + policy.header + " is still being processed; retry later.",
            {},
            1};
  return respond(Outcome::conflict, p.to_response(policy.problem_type_base));
}

void Engine::complete(Ticket ticket, const Response& response, bool body_complete,
                      Callback<Completion> done) {
  if (!ticket.active()) {
    if (done) done(Error{Errc::invalid_argument, "complete: the ticket is no longer active"});
    return;
  }
  const Policy& policy = *ticket.policy_;
  RecordId id = ticket.id_;
  std::uint64_t token = ticket.token_;
  std::string route(ticket.route_);
  ticket.engine_.reset();  // this call now owns the record's outcome

  const TimePoint lease_end = impl_->options.clock->now() + policy.lease;
  if (!policy.store_status.contains(response.status)) {
    release_attempt(
        id, token, route, lease_end,
        [self = shared_from_this(), id, route, done = std::move(done)](Result<TokenCheck> r) {
          if (!r) {
            if (done) done(r.error());
            return;
          }
          if (*r == TokenCheck::stale) {
            self->impl_->publish(EventKind::lease_lost, id, route, "release found a newer attempt");
          }
          if (done) done(*r == TokenCheck::ok ? Completion::released : Completion::lease_lost);
        });
    return;
  }
  StoredResponse stored;
  stored.status = response.status;
  bool fits = body_complete && response.body.size() <= policy.max_response_bytes;
  if (fits) {
    stored.headers = detail::replayable_headers(response.headers, policy.replay_exclude_headers,
                                                policy.replay_header);
    stored.body = response.body;
  } else {
    stored.body_stored = false;
    impl_->publish(EventKind::oversize_response, id, route,
                   "response over max_response_bytes; stored without its body");
  }
  // Kept for another attempt should this one fail (engine_settle.cpp).
  std::optional<StoredResponse> kept;
  if (impl_->options.scheduler) kept = stored;
  impl_->options.store->complete(
      id, token, std::move(stored), policy.ttl,
      [self = shared_from_this(), id, token, route, fits, ttl = policy.ttl, lease_end,
       kept = std::move(kept), done = std::move(done)](Result<TokenCheck> r) mutable {
        if (!r) {
          self->impl_->publish_store_error(id, route, r.error());
          if (kept) {
            self->settle_later(Settlement{.id = id,
                                          .token = token,
                                          .stored = std::move(kept),
                                          .ttl = ttl,
                                          .route = route,
                                          .give_up_at = lease_end},
                               r.error());
          }
          if (done) done(r.error());
          return;
        }
        if (*r == TokenCheck::stale) {
          self->impl_->publish(EventKind::lease_lost, id, route,
                               "completion discarded: a newer attempt holds the record");
          if (done) done(Completion::lease_lost);
          return;
        }
        if (done) done(fits ? Completion::stored : Completion::not_stored);
      });
}

void Engine::abandon(Ticket ticket, Callback<TokenCheck> done) {
  if (!ticket.active()) {
    if (done) done(TokenCheck::stale);
    return;
  }
  ticket.engine_.reset();
  release_attempt(ticket.id_, ticket.token_, std::string(ticket.route_),
                  impl_->options.clock->now() + ticket.policy_->lease, std::move(done));
}

void Engine::release_attempt(const RecordId& id, std::uint64_t token, std::string route,
                             TimePoint lease_end, Callback<TokenCheck> done) {
  impl_->options.store->release(
      id, token,
      [self = shared_from_this(), id, token, lease_end, route = std::move(route),
       done = std::move(done)](Result<TokenCheck> r) {
        // Unreleased, the record stays in flight until its lease ends: worth an event, and
        // another attempt.
        if (!r) {
          self->impl_->publish_store_error(id, route, r.error());
          self->settle_later(
              Settlement{.id = id, .token = token, .route = route, .give_up_at = lease_end},
              r.error());
        }
        if (done) done(std::move(r));
      });
}

void Engine::renew(const Ticket& ticket, Callback<TokenCheck> done) {
  RecordId id = ticket.id_;
  std::string route(ticket.route_);
  impl_->options.store->renew(
      id, ticket.token_, ticket.policy_->lease,
      [self = shared_from_this(), id, route, done = std::move(done)](Result<TokenCheck> r) {
        if (r && *r == TokenCheck::stale) {
          self->impl_->publish(EventKind::lease_lost, id, route, "renewal found a newer attempt");
        } else if (!r) {
          self->impl_->publish_store_error(id, route, r.error());
        }
        if (done) done(std::move(r));
      });
}

RecordId Engine::record_id(std::string_view scope_value, std::string_view key,
                           std::string_view method, std::string_view path) const {
  auto match = impl_->options.policies.match(method, path);
  const RoutePlan& plan = *impl_->plans[match.index];
  std::string_view route = plan.route.empty() ? path : std::string_view(plan.route);
  if (plan.policy->scope_resolver) return impl_->namer.name(resolved_scope(scope_value), key);
  return impl_->namer.name(scope_string_from_value(plan.policy->scope, scope_value, route), key);
}

void Engine::lookup(const RecordId& id, Callback<std::optional<Record>> done) {
  impl_->options.store->get(id, std::move(done));
}

void Engine::flush(const RecordId& id, Callback<bool> done) {
  impl_->options.store->erase(id, std::move(done));
}

// Ticket

Ticket::Ticket(std::shared_ptr<Engine> engine, RecordId id, std::uint64_t token,
               const Policy* policy, std::string_view route)
    : engine_(std::move(engine)), id_(id), token_(token), policy_(policy), route_(route) {}

Ticket::Ticket(Ticket&& other) noexcept
    : engine_(std::move(other.engine_)),
      id_(other.id_),
      token_(other.token_),
      policy_(other.policy_),
      route_(other.route_) {}

Ticket& Ticket::operator=(Ticket&& other) noexcept {
  if (this != &other) {
    Ticket old(std::move(*this));
    engine_ = std::move(other.engine_);
    id_ = other.id_;
    token_ = other.token_;
    policy_ = other.policy_;
    route_ = other.route_;
  }
  return *this;
}

Ticket::~Ticket() {
  // A ticket dropped unanswered releases its record as abandon() does, retries included.
  if (engine_) {
    engine_->release_attempt(id_, token_, std::string(route_),
                             engine_->impl_->options.clock->now() + policy_->lease, {});
  }
}

Duration Ticket::renew_interval() const noexcept {
  return std::max(Duration(1), policy_->lease / 3);
}

}  // namespace idem
