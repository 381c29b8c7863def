// demo-api: a tiny payments API to put idem-gateway in front of.
//
//   POST /payments        {"amount": 1000, "currency": "eur"}  -> 201, a new charge
//   GET  /payments/{id}   the charge
//   GET  /payments/count  {"charges": N}: how many charges were executed
//
// Every POST executes a charge, even a retry of one already made: this API has no
// idempotency of its own. That is the gap idem-gateway closes. Each charge gets a fresh
// id, so a replayed response (same id) is easy to tell from a second execution (new id).
//
// Usage: demo-api [--port N] [--delay-ms MS]   (--port 0 picks a free port)

#include <httplib.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <boost/json.hpp>
#include <chrono>
#include <cstdio>
#include <iostream>
#include <map>
#include <mutex>
#include <random>
#include <string>
#include <thread>

namespace {

namespace json = boost::json;

struct Options {
  int port = 8080;
  int delay_ms = 0;  // simulated processing time of a charge
};

bool parse_options(int argc, char** argv, Options& options) {
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if ((arg == "--port" || arg == "--delay-ms") && i + 1 < argc) {
      try {
        int value = std::stoi(argv[++i]);
        if (value < 0) return false;
        (arg == "--port" ? options.port : options.delay_ms) = value;
      } catch (const std::exception&) {
        return false;
      }
    } else {
      return false;
    }
  }
  return options.port <= 65535;
}

/// The "bank": every call to charge() moves money, which is why it must run once.
class Ledger {
 public:
  std::string charge(std::int64_t amount, const std::string& currency) {
    std::lock_guard lock(mutex_);
    std::string id = "ch_" + random_hex(12);
    json::object charge{{"id", id},
                        {"amount", amount},
                        {"currency", currency},
                        {"status", "succeeded"},
                        {"number", charges_.size() + 1}};
    charges_.emplace(id, json::serialize(charge));
    return id;
  }
  std::optional<std::string> find(const std::string& id) {
    std::lock_guard lock(mutex_);
    auto it = charges_.find(id);
    if (it == charges_.end()) return std::nullopt;
    return it->second;
  }
  std::size_t count() {
    std::lock_guard lock(mutex_);
    return charges_.size();
  }

 private:
  std::string random_hex(int bytes) {
    static constexpr char kDigits[] = "0123456789abcdef";
    std::string out;
    for (int i = 0; i < bytes; ++i) {
      auto b = static_cast<unsigned>(rng_());
      out += kDigits[(b >> 4) & 15];
      out += kDigits[b & 15];
    }
    return out;
  }

  std::mutex mutex_;
  std::mt19937_64 rng_{std::random_device{}()};
  std::map<std::string, std::string> charges_;
};

void send_error(httplib::Response& res, int status, const std::string& detail) {
  json::object problem{{"title", "invalid payment"}, {"status", status}, {"detail", detail}};
  res.status = status;
  res.set_content(json::serialize(problem), "application/problem+json");
}

}  // namespace

int main(int argc, char** argv) {
  Options options;
  if (!parse_options(argc, argv, options)) {
    std::cerr << "usage: demo-api [--port N] [--delay-ms MS]\n";
    return 2;
  }

  // SIGINT/SIGTERM are handled by a thread below, not asynchronously.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  Ledger ledger;
  httplib::Server server;

  server.Post("/payments", [&](const httplib::Request& req, httplib::Response& res) {
    json::error_code ec;
    json::value body = json::parse(req.body, ec);
    const json::object* fields = ec ? nullptr : body.if_object();
    const json::value* amount = fields ? fields->if_contains("amount") : nullptr;
    const json::value* currency = fields ? fields->if_contains("currency") : nullptr;
    if (!amount || !amount->is_int64() || amount->as_int64() <= 0) {
      return send_error(res, 400, "amount must be a positive integer (minor units)");
    }
    if (!currency || !currency->is_string() || currency->as_string().size() != 3) {
      return send_error(res, 400, "currency must be a three-letter code");
    }
    if (options.delay_ms > 0) {
      std::this_thread::sleep_for(std::chrono::milliseconds(options.delay_ms));
    }
    std::string id = ledger.charge(amount->as_int64(), std::string(currency->as_string()));
    res.status = 201;
    res.set_header("Location", "/payments/" + id);
    res.set_content(*ledger.find(id), "application/json");
  });

  server.Get("/payments/count", [&](const httplib::Request&, httplib::Response& res) {
    json::object count{{"charges", ledger.count()}};
    res.set_content(json::serialize(count), "application/json");
  });

  server.Get(R"(/payments/(ch_[0-9a-f]+))",
             [&](const httplib::Request& req, httplib::Response& res) {
               if (auto charge = ledger.find(req.matches[1])) {
                 res.set_content(*charge, "application/json");
               } else {
                 send_error(res, 404, "no such charge");
               }
             });

  int port = options.port;
  if (port == 0) {
    port = server.bind_to_any_port("127.0.0.1");
  } else if (!server.bind_to_port("127.0.0.1", port)) {
    port = -1;
  }
  if (port < 0) {
    std::cerr << "demo-api: cannot listen on 127.0.0.1:" << options.port << "\n";
    return 1;
  }
  std::cout << "listening on 127.0.0.1:" << port << std::endl;  // endl flushes

  std::atomic<bool> signalled{false};
  std::thread stopper([&] {
    int signal = 0;
    sigwait(&signals, &signal);
    signalled = true;
    server.stop();
  });
  bool ok = server.listen_after_bind();
  if (!signalled) kill(getpid(), SIGTERM);  // wakes the stopper thread
  stopper.join();
  return ok || signalled ? 0 : 1;
}
