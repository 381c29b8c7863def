// The installed idem::beast, in process: a protected synchronous handler and its retry.

#include <boost/beast/http.hpp>
#include <cstdio>
#include <idem/beast.hpp>
#include <idem/memory_store.hpp>
#include <idem/record_name.hpp>

namespace http = boost::beast::http;

int main() {
  idem::EngineOptions options;
  options.store = idem::make_memory_store();
  options.secret = idem::RecordNamer::generate_secret();
  int runs = 0;
  auto api = idem::beast::protect(idem::Engine::create(std::move(options)),
                                  [&](const idem::beast::Request& req) {
                                    idem::beast::Response res{http::status::created, req.version()};
                                    res.body() = "{\"run\":" + std::to_string(++runs) + "}";
                                    res.prepare_payload();
                                    return res;
                                  });
  idem::beast::Request req{http::verb::post, "/payments", 11};
  req.set("Idempotency-Key", "consumer-1");
  req.body() = "{}";
  req.prepare_payload();
  auto first = api(req, "127.0.0.1");
  auto retry = api(req, "127.0.0.1");
  bool ok = runs == 1 && retry.body() == first.body() && retry["Idempotent-Replayed"] == "true";
  std::printf("consumer (beast): %s\n", ok ? "replayed" : "FAILED");
  return ok ? 0 : 1;
}
