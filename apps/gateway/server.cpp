#include "server.hpp"

#include <ifaddrs.h>
#include <unistd.h>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <csignal>
#include <cstring>
#include <iostream>
#include <mutex>
#include <thread>

#include "admin.hpp"
#include "asio_scheduler.hpp"
#include "event_log.hpp"
#include "idem/record_name.hpp"
#include "listener.hpp"
#include "metrics.hpp"
#include "store_factory.hpp"

namespace idem::gateway {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;

namespace {

tcp::endpoint resolve_listen(const HostPort& hp, std::string_view setting) {
  asio::io_context ctx;
  tcp::resolver resolver(ctx);
  boost::system::error_code ec;
  std::string host = hp.host.empty() ? "0.0.0.0" : hp.host;
  auto results = resolver.resolve(host, std::to_string(hp.port),
                                  tcp::resolver::passive | tcp::resolver::numeric_service, ec);
  if (ec || results.empty()) {
    throw ConfigError(std::string(setting) + ": cannot resolve '" + host + "'");
  }
  return results.begin()->endpoint();
}

std::vector<tcp::endpoint> resolve_upstream(const HostPort& hp) {
  asio::io_context ctx;
  tcp::resolver resolver(ctx);
  boost::system::error_code ec;
  auto results =
      resolver.resolve(hp.host, std::to_string(hp.port), tcp::resolver::numeric_service, ec);
  if (ec || results.empty()) {
    throw ConfigError("upstream: cannot resolve '" + hp.host + "': " + ec.message());
  }
  std::vector<tcp::endpoint> out;
  for (const auto& r : results) out.push_back(r.endpoint());
  return out;
}

bool is_local_address(const asio::ip::address& address) {
  if (address.is_loopback() || address.is_unspecified()) return true;
  ifaddrs* list = nullptr;
  if (::getifaddrs(&list) != 0) return false;
  bool found = false;
  for (const ifaddrs* i = list; i != nullptr && !found; i = i->ifa_next) {
    if (i->ifa_addr == nullptr) continue;
    if (i->ifa_addr->sa_family == AF_INET && address.is_v4()) {
      const auto* in = reinterpret_cast<const sockaddr_in*>(i->ifa_addr);
      found = address.to_v4().to_uint() == ntohl(in->sin_addr.s_addr);
    } else if (i->ifa_addr->sa_family == AF_INET6 && address.is_v6()) {
      const auto* in6 = reinterpret_cast<const sockaddr_in6*>(i->ifa_addr);
      asio::ip::address_v6::bytes_type bytes;
      std::memcpy(bytes.data(), in6->sin6_addr.s6_addr, bytes.size());
      found = address.to_v6().to_bytes() == bytes;
    }
  }
  ::freeifaddrs(list);
  return found;
}

/// Whether `upstream` is one of this gateway's own listeners: every request would come back
/// in as a new one (with the same key: 409 from the inner request) until connections run out.
bool is_own_listener(const tcp::endpoint& upstream, const tcp::endpoint& listener) {
  if (upstream.port() != listener.port()) return false;
  if (upstream.address() == listener.address()) return true;
  return listener.address().is_unspecified() && is_local_address(upstream.address());
}

std::string instance_id() {
  char host[256] = {};
  if (::gethostname(host, sizeof host - 1) != 0) std::snprintf(host, sizeof host, "localhost");
  return std::string("idem-gateway@") + host + ":" + std::to_string(::getpid());
}

std::string origin_of(const std::optional<std::string>& flag, std::string_view flag_name,
                      const std::string& config_path, std::string_view setting) {
  if (flag || config_path.empty()) return std::string(flag_name);
  return "config " + config_path + ": " + std::string(setting);
}

}  // namespace

struct Server::Impl {
  CommandLine command_line;
  GatewayConfig config;
  std::shared_ptr<Store> store;
  std::string secret;
  std::string instance;
  std::vector<tcp::endpoint> upstream;
  tcp::endpoint listen_endpoint;
  tcp::endpoint admin_endpoint;

  asio::io_context main_loop{1};
  std::shared_ptr<AsioScheduler> scheduler = std::make_shared<AsioScheduler>(main_loop);
  std::shared_ptr<RateLimitedSink> events;
  std::shared_ptr<StoreErrorCounter> store_errors;  ///< in front of `events`
  std::vector<std::unique_ptr<Worker>> workers;
  /// The store each worker's engine uses: `store`, or one on the worker's loop. Declared
  /// after `workers`, so destroyed before them: a store on a loop must go before its loop.
  std::vector<std::shared_ptr<Store>> worker_stores;
  std::shared_ptr<std::atomic<int>> replay_caches_active;  ///< Redis with a replay cache
  /// The workers' stores that keep records in memory (Redis's replay caches): a flush
  /// through the admin API drops the record from each before it answers.
  std::vector<std::function<void(const RecordId&)>> forget_cached;
  std::vector<std::thread> threads;
  std::shared_ptr<Engine> admin_engine;
  /// The engines in use, and those a reload replaced while they were still used or
  /// retried completions: an engine's retries end with it.
  std::mutex engines_mutex;
  std::vector<std::shared_ptr<Engine>> every_engine;
  std::atomic<std::size_t> retries_stopped{0};  ///< settling when the retries were ended

  /// Ends the completion retries of the engines on `store` (all when null), counting them
  /// in `retries_stopped`.
  void stop_retries(const Store* store) {
    std::vector<std::shared_ptr<Engine>> engines;
    {
      std::lock_guard lock(engines_mutex);
      for (auto& engine : every_engine) {
        if (store == nullptr || &engine->store() == store) engines.push_back(engine);
      }
    }
    std::size_t stopped = 0;
    for (auto& engine : engines) {
      stopped += engine->settling();
      engine->stop_retries();
    }
    retries_stopped += stopped;
  }
  std::unique_ptr<AdminServer> admin;
  asio::signal_set signals{main_loop};
  asio::steady_timer drain_timer{main_loop};
  std::optional<asio::executor_work_guard<asio::io_context::executor_type>> keep_running;
  std::chrono::steady_clock::time_point started = std::chrono::steady_clock::now();
  std::atomic<bool> accepting{false};
  std::atomic<bool> draining{false};
  std::size_t finished = 0;

  /// One engine per worker (on worker_stores) plus one for the admin API (on `store`).
  std::vector<std::shared_ptr<Engine>> make_engines(const PolicySet& policies) {
    {
      // Replaced engines go once nothing uses them and they retry nothing.
      std::lock_guard lock(engines_mutex);
      std::erase_if(every_engine,
                    [](const auto& e) { return e.use_count() == 1 && e->settling() == 0; });
    }
    std::vector<std::shared_ptr<Engine>> engines;
    for (std::size_t i = 0; i <= worker_stores.size(); ++i) {
      EngineOptions options;
      options.policies = policies;
      options.store = i < worker_stores.size() ? worker_stores[i] : store;
      options.secret = secret;
      options.events = store_errors;
      options.scheduler = scheduler;
      options.instance_id = instance;
      try {
        engines.push_back(Engine::create(std::move(options)));
      } catch (const std::invalid_argument& e) {
        throw ConfigError(e.what());
      }
      std::lock_guard lock(engines_mutex);
      every_engine.push_back(engines.back());
    }
    return engines;
  }

  std::string render() {
    std::vector<const WorkerMetrics*> views;
    for (const auto& w : workers) views.push_back(&w->metrics_view());
    const auto errors = store_errors->counts();
    MetricsContext context{
        views,
        store_stats(),
        events->suppressed(),
        errors,
        &StoreErrorCounter::reason,
        std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count(),
        static_cast<unsigned>(workers.size()),
        draining.load()};
    if (replay_caches_active) context.replay_caches_active = replay_caches_active->load();
    return render_metrics(context);
  }

  /// Every store of this process once: the workers' own stores count their own records.
  StoreStats store_stats() const {
    StoreStats total = store->stats();
    for (const auto& s : worker_stores) {
      if (s == store) continue;
      StoreStats one = s->stats();
      total.records += one.records;
      total.bytes += one.bytes;
    }
    return total;
  }

  void on_signal(const boost::system::error_code& ec, int signum) {
    if (ec) return;
    if (signum == SIGHUP) {
      reload();
    } else if (draining) {
      log::warn("second signal: stopping now");
      for (auto& w : workers) w->stop();
    } else {
      begin_drain(signum);
    }
    if (!signals_done) wait_signal();
  }

  bool signals_done = false;
  void wait_signal() {
    signals.async_wait(
        [this](const boost::system::error_code& ec, int signum) { on_signal(ec, signum); });
  }

  void begin_drain(int signum) {
    draining = true;
    accepting = false;
    log::info("draining", LogFields()
                              .add("signal", signum == SIGINT ? "SIGINT" : "SIGTERM")
                              .add("drain_timeout_ms",
                                   static_cast<std::int64_t>(config.timeouts.drain.count())));
    for (auto& w : workers) w->start_drain();
    drain_timer.expires_after(config.timeouts.drain);
    drain_timer.async_wait([this](const boost::system::error_code& ec) {
      if (ec) return;
      std::int64_t in_flight = 0;
      for (auto& w : workers) in_flight += w->metrics_view().in_flight.get();
      log::warn("drain timeout: closing what is still open",
                LogFields().add("in_flight", in_flight));
      for (auto& w : workers) w->stop();
    });
  }

  void worker_finished() {
    if (++finished < workers.size()) return;
    drain_timer.cancel();
    signals_done = true;
    boost::system::error_code ignored;
    signals.cancel(ignored);
    if (admin) admin->stop();
    keep_running.reset();
    main_loop.stop();
  }

  void reload() {
    if (config.config_path.empty()) {
      log::info("SIGHUP: no --config file to reload");
      return;
    }
    try {
      GatewayConfig next = load_config(command_line);
      auto warn_fixed = [](std::string_view setting) {
        log::warn("reload: setting needs a restart; keeping the running value",
                  LogFields().add("setting", setting));
      };
      if (next.listen.text() != config.listen.text()) warn_fixed("listen");
      if (next.upstream.text() != config.upstream.text()) warn_fixed("upstream");
      if (next.admin.text() != config.admin.text()) warn_fixed("admin");
      if (next.store != config.store) warn_fixed("store");
      if (next.threads != config.threads) warn_fixed("threads");
      if (!(next.store_settings == config.store_settings)) {
        warn_fixed("memory_max_*, lmdb_map_size, durability or redis_*");
      }
      if (!next.secret.empty() && next.secret != secret) warn_fixed("secret");
      auto engines = make_engines(next.policies);
      for (std::size_t i = 0; i < workers.size(); ++i) {
        workers[i]->set_runtime(
            std::make_shared<const Runtime>(Runtime{engines[i], next.timeouts}));
      }
      admin_engine = engines.back();
      log::set_level(next.log_level);
      config.policies = std::move(next.policies);
      config.timeouts = next.timeouts;
      config.log_level = next.log_level;
      log::info(
          "configuration reloaded",
          LogFields().add("routes", static_cast<std::int64_t>(config.policies.routes.size())));
    } catch (const ConfigError& e) {
      log::error("reload failed; the running configuration stays",
                 LogFields().add("error", e.what()));
    }
  }
};

Server::Server(CommandLine command_line, GatewayConfig config) : impl_(std::make_unique<Impl>()) {
  auto& s = *impl_;
  s.command_line = std::move(command_line);
  s.config = std::move(config);
  StoreHandle handle = make_store(
      s.config.store, origin_of(s.command_line.store, "--store", s.config.config_path, "store"),
      s.config.store_settings);
  s.store = handle.store;
  s.replay_caches_active = handle.replay_caches_active;
  if (!s.config.secret.empty()) {
    s.secret = s.config.secret;
  } else if (handle.load_secret) {
    s.secret = handle.load_secret();  // kept with the store, shared by its gateways
  } else {
    // Records of the memory store die with the process, so a fresh secret loses nothing.
    s.secret = RecordNamer::generate_secret();
  }
  s.instance = instance_id();
  s.upstream = resolve_upstream(s.config.upstream);
  s.listen_endpoint = resolve_listen(s.config.listen, "listen");
  s.admin_endpoint = resolve_listen(s.config.admin, "admin");
  for (const auto& endpoint : s.upstream) {
    for (const auto* own : {&s.listen_endpoint, &s.admin_endpoint}) {
      if (is_own_listener(endpoint, *own)) {
        throw ConfigError("upstream: " + s.config.upstream.text() + " is this gateway's own " +
                          (own == &s.listen_endpoint ? "listen" : "admin") +
                          " address; requests would loop");
      }
    }
  }
  s.events = std::make_shared<RateLimitedSink>(std::make_shared<JsonEventSink>(),
                                               std::make_shared<SystemClock>());
  s.store_errors = std::make_shared<StoreErrorCounter>(s.events);
  std::vector<std::unique_ptr<asio::io_context>> loops;
  std::vector<std::function<void()>> closers;
  for (unsigned i = 0; i < s.config.threads; ++i) {
    // One thread runs each loop; the hint lets Asio skip work it needs only for many.
    loops.push_back(std::make_unique<asio::io_context>(1));
    LoopStore own = handle.for_loop ? handle.for_loop(*loops.back()) : LoopStore{};
    s.worker_stores.push_back(own.store ? own.store : s.store);
    if (own.close) {
      // A drained worker closes the store on its loop. Retries of completions against it
      // (their timers on that loop) end first: a closed store cannot take them, and they
      // would hold the loop, and the drain, until their leases run out.
      own.close = [&s, store = s.worker_stores.back().get(), close = std::move(own.close)] {
        s.stop_retries(store);
        close();
      };
    }
    closers.push_back(std::move(own.close));
    if (own.forget_cached) s.forget_cached.push_back(std::move(own.forget_cached));
  }
  std::vector<std::shared_ptr<Engine>> engines;
  try {
    engines = s.make_engines(s.config.policies);
  } catch (...) {
    // Stores on a loop must go while their loop is still there.
    s.every_engine.clear();
    s.worker_stores.clear();
    closers.clear();
    throw;
  }
  std::string upstream_host = s.config.upstream.text();
  for (unsigned i = 0; i < s.config.threads; ++i) {
    s.workers.push_back(std::make_unique<Worker>(
        i, std::move(loops[i]),
        std::make_shared<const Runtime>(Runtime{engines[i], s.config.timeouts}), s.upstream,
        upstream_host, std::move(closers[i])));
  }
  s.admin_engine = engines.back();
}

Server::~Server() {
  if (!impl_) return;
  for (auto& w : impl_->workers) w->stop();
  for (auto& t : impl_->threads) {
    if (t.joinable()) t.join();
  }
}

int Server::run() {
  auto& s = *impl_;
  log::init(s.config.log_level);
  std::signal(SIGPIPE, SIG_IGN);

  AdminHooks hooks;
  hooks.accepting = [&s] { return s.accepting.load(); };
  hooks.engine = [&s] { return s.admin_engine; };
  hooks.metrics = [&s] { return s.render(); };
  hooks.flushed = [&s](const RecordId& id) {
    for (const auto& forget : s.forget_cached) forget(id);
  };
  s.admin = std::make_unique<AdminServer>(s.main_loop, std::move(hooks));

  auto bind_error = [&](std::string_view flag, const HostPort& hp,
                        const boost::system::system_error& e) {
    std::cerr << "idem-gateway: " << flag << " " << hp.text() << ": " << e.code().message() << '\n';
    log::shutdown();
    return 1;
  };
  tcp::endpoint listen_endpoint = s.listen_endpoint;
  try {
    for (auto& w : s.workers) {
      w->listen(listen_endpoint);
      // Port 0 picks a free port once; the other workers join the same one.
      listen_endpoint = w->local_endpoint();
    }
  } catch (const boost::system::system_error& e) {
    return bind_error("--listen", s.config.listen, e);
  }
  try {
    s.admin->listen(s.admin_endpoint);
  } catch (const boost::system::system_error& e) {
    return bind_error("--admin", s.config.admin, e);
  }

  s.signals.add(SIGINT);
  s.signals.add(SIGTERM);
  s.signals.add(SIGHUP);
  s.wait_signal();
  s.keep_running.emplace(s.main_loop.get_executor());

  for (auto& w : s.workers) {
    Worker* worker = w.get();
    s.threads.emplace_back([worker, &s] {
      worker->run();
      asio::post(s.main_loop, [&s] { s.worker_finished(); });
    });
  }
  s.accepting = true;
  auto admin_endpoint = s.admin->local_endpoint();
  log::info("idem-gateway started", LogFields()
                                        .add("listen", listen_endpoint.address().to_string() + ":" +
                                                           std::to_string(listen_endpoint.port()))
                                        .add("admin", admin_endpoint.address().to_string() + ":" +
                                                          std::to_string(admin_endpoint.port()))
                                        .add("upstream", "http://" + s.config.upstream.text())
                                        .add("store", s.store->kind())
                                        .add("threads", static_cast<std::int64_t>(s.workers.size()))
                                        .add("config", s.config.config_path));

  {
    ThreadLoop registration(s.main_loop);
    s.main_loop.run();
  }

  for (auto& t : s.threads) t.join();
  s.threads.clear();
  // Destroying the workers ends whatever the drain timeout cut short; their tickets
  // release their records on the way.
  std::int64_t cut = 0;
  for (auto& w : s.workers) cut += w->metrics_view().in_flight.get();
  // Completions the store failed and the engines still retry end here, while the loops
  // their timers are on still exist; their records follow on_expired_lease.
  s.stop_retries(nullptr);
  const auto unsettled = static_cast<std::int64_t>(s.retries_stopped.load());
  {
    std::lock_guard lock(s.engines_mutex);
    s.every_engine.clear();  // they hold the workers' stores, which go before their loops
  }
  s.worker_stores.clear();
  s.workers.clear();
  log::info("idem-gateway stopped",
            LogFields().add("cut_short", cut).add("completions_unsettled", unsettled));
  log::shutdown();
  return 0;
}

}  // namespace idem::gateway
