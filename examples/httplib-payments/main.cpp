// httplib-payments: a cpp-httplib payments API with idem embedded, no gateway in front.
//
//   POST /payments  {"amount": 1000}  -> 201 {"id": "pay_N", ...}; runs once per key
//   GET  /stats     {"executions": N}: how many times the payment handler ran
//
// For trying the edge cases, two headers (outside the fingerprint) steer the handler:
// `X-Delay-Ms: 500` makes it slow (a duplicate meanwhile gets 409), `X-Fail: 1` makes it
// throw (no record is left, so the retry executes).
//
// Usage: httplib-payments [--port N]   (--port 0 picks a free port)

#include <httplib.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <stdexcept>
#include <string>
#include <thread>

#include "idem/httplib.hpp"
#include "idem/memory_store.hpp"
#include "idem/record_name.hpp"

namespace {

std::atomic<int> executions{0};

/// The application's handler, exactly as it would be without idem.
void create_payment(const httplib::Request& req, httplib::Response& res) {
  int n = ++executions;
  if (req.has_header("X-Delay-Ms")) {
    std::this_thread::sleep_for(
        std::chrono::milliseconds(std::atoi(req.get_header_value("X-Delay-Ms").c_str())));
  }
  if (req.get_header_value("X-Fail") == "1") throw std::runtime_error("card network down");
  res.status = 201;
  res.set_content("{\"id\":\"pay_" + std::to_string(n) + "\",\"request\":" + req.body + "}",
                  "application/json");
}

}  // namespace

int main(int argc, char** argv) {
  int port = argc == 3 && argv[1] == std::string("--port") ? std::atoi(argv[2]) : 8080;
  idem::EngineOptions options;
  options.store = idem::make_memory_store();
  options.secret = idem::RecordNamer::generate_secret();
  auto engine = idem::Engine::create(std::move(options));

  httplib::Server server;
  auto api = idem::httplib::protect(server, engine);
  api.Post("/payments", create_payment);  // was: server.Post("/payments", create_payment)
  server.Get("/stats", [](const httplib::Request&, httplib::Response& res) {
    res.set_content("{\"executions\":" + std::to_string(executions.load()) + "}",
                    "application/json");
  });
  // Exceptions become a bare 500 (cpp-httplib would echo the message in a header).
  server.set_exception_handler(
      [](const httplib::Request&, httplib::Response& res, std::exception_ptr) {
        res.status = 500;
        res.set_content("{\"error\":\"internal\"}", "application/json");
      });

  if (port == 0) {
    port = server.bind_to_any_port("127.0.0.1");
  } else if (!server.bind_to_port("127.0.0.1", port)) {
    port = -1;
  }
  if (port < 0) {
    std::fprintf(stderr, "httplib-payments: cannot listen\n");
    return 1;
  }
  std::printf("listening on 127.0.0.1:%d\n", port);
  std::fflush(stdout);
  return server.listen_after_bind() ? 0 : 1;
}
