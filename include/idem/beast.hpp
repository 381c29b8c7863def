#pragma once

#include <array>
#include <atomic>
#include <boost/asio/associated_executor.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/dispatch.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/http/message.hpp>
#include <boost/beast/http/string_body.hpp>
#include <concepts>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "idem/adapter_support.hpp"
#include "idem/engine.hpp"

/// idem for Boost.Beast servers: a request handler wrapped so that it runs at most once per
/// Idempotency-Key and its retries are replayed, without changing the handler.
///
///     auto pay = idem::beast::protect(engine, handle_payment);  // same shape as before
///     http::response<http::string_body> res = pay(req, peer_address);
///
/// Handlers take `const http::request<http::string_body>&` and return either
/// `http::response<http::string_body>` (synchronous servers; the call blocks while a
/// non-memory store answers) or `asio::awaitable<http::response<http::string_body>>`
/// (coroutine servers; nothing blocks). Sessions of another shape use Guard, or the
/// completion-token steps async_begin / async_complete / async_abandon.
///
/// What the engine decides is carried out unchanged: replays and problems are answered
/// without calling the handler and carry a fresh `Date`; a handler that throws leaves no
/// record behind (its ticket is abandoned) and the exception propagates; an original never
/// carries the replay header. The peer address is only needed for `scope = "ip"`.
namespace idem::beast {

namespace asio = boost::asio;
namespace http = boost::beast::http;

using Request = http::request<http::string_body>;
using Response = http::response<http::string_body>;

struct Options {
  /// Runs lease renewals for handlers slower than a third of the lease; null shares one
  /// thread across the process.
  std::shared_ptr<Scheduler> scheduler;
};

// ---- translation ----

/// The engine's view of a Beast request. Keeps the header list the view points into, so
/// the view is valid while this object, `request` and `peer` live unchanged.
class RequestFields {
 public:
  RequestView view(const Request& request, std::string_view peer);

 private:
  std::array<HeaderField, 24> inline_{};  ///< most requests: no allocation
  std::vector<HeaderField> spill_;
};

/// The engine's own answer (a replay or a problem) as a response to `request`: its
/// version and keep-alive, a fresh `Date`, the payload prepared.
Response to_beast(idem::Response answer, const Request& request);

/// The handler's response as the engine stores it.
idem::Response to_idem(const Response& response);

/// Readies an original for the client: only replays carry the policy's replay header,
/// whatever the handler set.
void prepare_original(Response& response, const Policy& policy);

// ---- completion-token steps, for sessions of any shape ----

namespace detail {

/// An Asio completion handler, type-erased and move-only, that runs on its associated
/// executor and keeps that executor busy until then.
template <class T>
class Resumer {
 public:
  virtual ~Resumer() = default;
  /// Runs the handler with `value`: inline when already on its executor (`dispatch`), or
  /// queued to it when `defer` (a completion inside the initiating call must not run
  /// there: a loop of such calls would grow the stack without bound).
  virtual void resume(T value, bool defer) = 0;

  template <class Handler>
  static std::unique_ptr<Resumer> make(Handler handler);
};

template <class T, class Handler>
class ResumerFor final : public Resumer<T> {
 public:
  explicit ResumerFor(Handler h) : work_(asio::make_work_guard(h)), handler_(std::move(h)) {}
  void resume(T value, bool defer) override {
    auto executor = work_.get_executor();
    auto run = [handler = std::move(handler_), value = std::move(value)]() mutable {
      std::move(handler)(std::move(value));
    };
    if (defer) {
      asio::post(executor, std::move(run));
    } else {
      asio::dispatch(executor, std::move(run));
    }
  }

 private:
  asio::executor_work_guard<asio::associated_executor_t<Handler>> work_;
  Handler handler_;
};

template <class T>
template <class Handler>
std::unique_ptr<Resumer<T>> Resumer<T>::make(Handler handler) {
  return std::make_unique<ResumerFor<T, Handler>>(std::move(handler));
}

/// One engine call's answer, met by whichever side comes second: the caller, which takes
/// it without suspending when the store answered inline (the memory store, LMDB reads), or
/// the store's callback, which resumes the waiting caller.
template <class T>
class Meeting {
 public:
  /// The engine's callback: copyable, as std::function requires.
  auto callback() {
    return [self = shared_](T value) { self->deliver(std::move(value)); };
  }
  /// The answer, when it is already here.
  std::optional<T> take_ready() {
    std::lock_guard lock(shared_->mutex);
    return std::exchange(shared_->value, std::nullopt);
  }
  /// Waits for the answer: an Asio operation with signature `void(T)`.
  template <class Token>
  auto async_wait(Token&& token) {
    return asio::async_initiate<Token, void(T)>(
        [](auto handler, std::shared_ptr<State> state) {
          auto resumer = Resumer<T>::make(std::move(handler));
          std::unique_lock lock(state->mutex);
          if (state->value) {
            T value = std::move(*state->value);
            state->value.reset();
            lock.unlock();
            return resumer->resume(std::move(value), /*defer=*/true);
          }
          state->waiter = std::move(resumer);
        },
        token, shared_);
  }

 private:
  struct State {
    std::mutex mutex;
    std::optional<T> value;
    std::unique_ptr<Resumer<T>> waiter;

    void deliver(T v) {
      std::unique_lock lock(mutex);
      if (!waiter) {
        value.emplace(std::move(v));
        return;
      }
      auto w = std::move(waiter);
      lock.unlock();
      w->resume(std::move(v), /*defer=*/false);
    }
  };
  std::shared_ptr<State> shared_ = std::make_shared<State>();
};

template <class Signature>
struct ArgumentOf;
template <class T>
struct ArgumentOf<void(T)> {
  using type = T;
};

/// Completes an Asio operation from an engine callback, which may run inside `start` (the
/// memory store answers inline) or later on a store thread.
template <class Signature, class Token, class Start>
auto async_engine_call(Token&& token, Start start) {
  using T = typename ArgumentOf<Signature>::type;
  return asio::async_initiate<Token, Signature>(
      [](auto handler, Start start) {
        // std::function (the engine's callback type) needs a copyable callable.
        struct Op {
          std::unique_ptr<Resumer<T>> resumer;
          std::atomic<bool> starting{true};
        };
        auto op = std::make_shared<Op>();
        op->resumer = Resumer<T>::make(std::move(handler));
        start([op](T result) { op->resumer->resume(std::move(result), op->starting.load()); });
        op->starting = false;
      },
      token, std::move(start));
}

}  // namespace detail

/// Engine::begin as an Asio operation with signature `void(Decision)`. `request` and
/// `peer` are read before the operation starts waiting, so they need to live until the
/// initiation has run (with `asio::deferred`: until the deferred operation is started).
template <class Token>
auto async_begin(Engine& engine, const Request& request, std::string_view peer, Token&& token) {
  return detail::async_engine_call<void(Decision)>(
      std::forward<Token>(token), [&engine, &request, peer](auto done) {
        RequestFields fields;
        engine.begin(fields.view(request, peer), std::move(done));
      });
}

/// Engine::complete with the handler's response, signature `void(Result<Completion>)`.
template <class Token>
auto async_complete(Engine& engine, Ticket ticket, const Response& response, Token&& token) {
  return detail::async_engine_call<void(Result<Completion>)>(
      std::forward<Token>(token),
      [&engine, ticket = std::make_shared<Ticket>(std::move(ticket)), &response](auto done) {
        engine.complete(std::move(*ticket), to_idem(response), true, std::move(done));
      });
}

/// Engine::abandon, signature `void(Result<TokenCheck>)`: the record is gone when it
/// completes, so the client's retry executes.
template <class Token>
auto async_abandon(Engine& engine, Ticket ticket, Token&& token) {
  return detail::async_engine_call<void(Result<TokenCheck>)>(
      std::forward<Token>(token),
      [&engine, ticket = std::make_shared<Ticket>(std::move(ticket))](auto done) {
        engine.abandon(std::move(*ticket), std::move(done));
      });
}

// ---- handlers ----

template <class H>
concept CoroutineHandler = std::invocable<H&, const Request&> &&
    std::same_as<std::invoke_result_t<H&, const Request&>, asio::awaitable<Response>>;
template <class H>
concept SyncHandler = std::invocable<H&, const Request&> &&
    std::same_as<std::invoke_result_t<H&, const Request&>, Response>;

/// Runs handlers under the engine's decisions, inside an existing session: build one per
/// server (it holds the lease keeper) and call it per request. Copies share their state.
/// Thread-safe.
class Guard {
 public:
  explicit Guard(std::shared_ptr<Engine> engine, Options options = {});

  /// Answers `request` with a replay or problem, or with `handler(request)`. Blocks while a
  /// store other than the memory store answers; rethrows what the handler throws.
  template <SyncHandler Handler>
  Response handle(const Request& request, std::string_view peer, Handler&& handler) const {
    if constexpr (std::is_function_v<std::remove_reference_t<Handler>>) {
      auto* function = &handler;  // a function is referred to through a pointer object
      return run(request, peer, HandlerRef(function));
    } else {
      return run(request, peer, HandlerRef(handler));
    }
  }

  /// The same for coroutine handlers; never blocks. `request` must outlive the awaitable.
  template <CoroutineHandler Handler>
  asio::awaitable<Response> async_handle(const Request& request, std::string peer,
                                         Handler handler) const {
    return run_async(*this, request, std::move(peer), std::move(handler));
  }

  Engine& engine() const noexcept { return *engine_; }

 private:
  /// A non-owning, non-allocating reference to a synchronous handler.
  class HandlerRef {
   public:
    template <class F>
    explicit HandlerRef(F& f)
        : object_(static_cast<const void*>(&f)), call_([](const void* o, const Request& r) {
            return (*const_cast<F*>(static_cast<const F*>(o)))(r);
          }) {}
    Response operator()(const Request& r) const { return call_(object_, r); }

   private:
    const void* object_;
    Response (*call_)(const void*, const Request&);
  };

  Response run(const Request& request, std::string_view peer, HandlerRef handler) const;

  template <class Handler>
  static asio::awaitable<Response> run_async(Guard self, const Request& request, std::string peer,
                                             Handler handler) {
    // Each engine call is met without suspending when the store answered inline (the
    // memory store): a suspension per call would cost a trip through the executor.
    detail::Meeting<Decision> begun;
    {
      RequestFields fields;
      self.engine_->begin(fields.view(request, peer), begun.callback());
    }
    Decision decision;
    if (auto ready = begun.take_ready()) {
      decision = std::move(*ready);
    } else {
      decision = co_await begun.async_wait(asio::use_awaitable);
    }
    if (decision.action == Decision::Action::respond) {
      co_return to_beast(std::move(decision.response), request);
    }
    if (decision.action == Decision::Action::pass_through) co_return co_await handler(request);

    Ticket ticket = std::move(*decision.ticket);
    std::optional<Response> response;
    std::exception_ptr failure;
    {
      auto hold = self.keeper_->hold(ticket);
      // co_await is not allowed in a handler: keep the exception for after the abandon.
      try {
        response.emplace(co_await handler(request));
      } catch (...) {
        failure = std::current_exception();
      }
    }
    if (failure) {
      detail::Meeting<Result<TokenCheck>> abandoned;
      self.engine_->abandon(std::move(ticket), abandoned.callback());
      if (!abandoned.take_ready()) (void)co_await abandoned.async_wait(asio::use_awaitable);
      std::rethrow_exception(failure);
    }
    prepare_original(*response, ticket.policy());
    // Answer once the store has the response, so that a retry the client sends as soon as
    // it has this answer is replayed, not told the request is still in flight.
    detail::Meeting<Result<Completion>> completed;
    self.engine_->complete(std::move(ticket), to_idem(*response), true, completed.callback());
    if (!completed.take_ready()) (void)co_await completed.async_wait(asio::use_awaitable);
    co_return std::move(*response);
  }

  std::shared_ptr<Engine> engine_;
  std::shared_ptr<LeaseKeeper> keeper_;
};

/// A handler with idem in front of it, callable as the handler was, optionally with the
/// peer address: `(request)` or `(request, peer)`.
template <class Handler>
class Protected {
 public:
  Protected(std::shared_ptr<Engine> engine, Handler handler, Options options)
      : guard_(std::move(engine), std::move(options)),
        handler_(std::make_shared<Handler>(std::move(handler))) {}

  auto operator()(const Request& request, std::string_view peer = {}) const {
    if constexpr (CoroutineHandler<Handler>) {
      // The coroutine owns a reference to the handler, so it may outlive this object.
      return guard_.async_handle(request, std::string(peer),
                                 [h = handler_](const Request& r) { return (*h)(r); });
    } else {
      return guard_.handle(request, peer, *handler_);
    }
  }

 private:
  Guard guard_;
  std::shared_ptr<Handler> handler_;
};

/// Wraps `handler` (synchronous or coroutine) so that it runs at most once per key.
template <class Handler>
requires SyncHandler<std::decay_t<Handler>> || CoroutineHandler<std::decay_t<Handler>>
    Protected<std::decay_t<Handler>> protect(std::shared_ptr<Engine> engine, Handler&& handler,
                                             Options options = {}) {
  return Protected<std::decay_t<Handler>>(std::move(engine), std::forward<Handler>(handler),
                                          std::move(options));
}

}  // namespace idem::beast
