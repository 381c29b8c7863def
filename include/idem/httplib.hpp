#pragma once

#include <httplib.h>

#include <memory>
#include <string>

#include "idem/adapter_support.hpp"
#include "idem/engine.hpp"

/// idem for cpp-httplib servers: route handlers that run at most once per Idempotency-Key,
/// whose retries are replayed, without changing the handlers.
///
///     httplib::Server server;
///     auto api = idem::httplib::protect(server, engine);
///     api.Post("/payments", create_payment);  // was: server.Post("/payments", ...)
///
/// or, one route at a time: `server.Post("/payments", idem::httplib::wrap(engine, h))`.
///
/// cpp-httplib reads a request's body only once it has chosen the route, after its
/// pre-routing handler, and the fingerprint needs the body: so protection is per route,
/// and routes registered on the server directly are not protected. Routes with a content
/// reader (streamed request bodies) cannot be protected.
///
/// The handler thread blocks while a store other than the memory store answers (cpp-httplib
/// runs one thread per connection, so nothing else waits). Replays and problems are
/// answered without calling the handler and carry a fresh `Date`; a handler that throws
/// leaves no record behind and the exception goes on to the server's exception handling;
/// an original never carries the replay header. A response from a content provider is
/// sent to the client but not stored: its replay is `response-not-stored` (502).
namespace idem::httplib {

using Handler = ::httplib::Server::Handler;

struct Options {
  /// Runs lease renewals for handlers slower than a third of the lease; null shares one
  /// thread across the process.
  std::shared_ptr<Scheduler> scheduler;
};

// ---- translation ----

/// The handler's response as the engine stores it; false in `body_complete` for a
/// response from a content provider, whose body this adapter never sees.
struct Captured {
  Response response;
  bool body_complete = true;
};
Captured to_idem(const ::httplib::Response& response);

/// Writes the engine's own answer (a replay or a problem) into `out`, with a fresh `Date`.
void to_httplib(Response answer, ::httplib::Response& out);

// ---- protection ----

/// Runs route handlers under the engine's decisions. Copies share their state (the engine
/// and the lease keeper). Thread-safe.
class Guard {
 public:
  explicit Guard(std::shared_ptr<Engine> engine, Options options = {});

  /// Answers `request` with a replay or problem, or by calling `handler`. Rethrows what the
  /// handler throws, after the record is removed.
  void handle(const ::httplib::Request& request, ::httplib::Response& response,
              const Handler& handler) const;

  /// `handler` with this guard in front, as a route handler.
  Handler wrap(Handler handler) const;

  Engine& engine() const noexcept { return *engine_; }

 private:
  std::shared_ptr<Engine> engine_;
  std::shared_ptr<LeaseKeeper> keeper_;
};

/// `handler` protected by `engine`, as a route handler for Server::Post and the like.
Handler wrap(std::shared_ptr<Engine> engine, Handler handler, Options options = {});

/// Registers protected routes on a server. The method names are cpp-httplib's own, so a
/// route moves under idem by changing `server.` into `api.` only. Every method may be
/// registered; the policy's `methods` (default POST and PATCH) decides which are covered.
class Routes {
 public:
  Routes(::httplib::Server& server, Guard guard) : server_(&server), guard_(std::move(guard)) {}

  Routes& Post(const std::string& pattern, Handler handler);
  Routes& Put(const std::string& pattern, Handler handler);
  Routes& Patch(const std::string& pattern, Handler handler);
  Routes& Delete(const std::string& pattern, Handler handler);

  ::httplib::Server& server() const noexcept { return *server_; }
  const Guard& guard() const noexcept { return guard_; }

 private:
  ::httplib::Server* server_;
  Guard guard_;
};

/// The protected routes of `server`; `server` must outlive the returned object's use.
Routes protect(::httplib::Server& server, std::shared_ptr<Engine> engine, Options options = {});

}  // namespace idem::httplib
