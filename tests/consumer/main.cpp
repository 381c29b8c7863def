// An installed idem used from outside its tree: a cpp-httplib server protected by idem on
// a free port, a request and its retry. Exits 0 when the retry was replayed.

#include <httplib.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <idem/httplib.hpp>
#include <idem/memory_store.hpp>
#include <idem/record_name.hpp>
#include <thread>

int main() {
  idem::EngineOptions options;
  options.store = idem::make_memory_store();
  options.secret = idem::RecordNamer::generate_secret();
  auto engine = idem::Engine::create(std::move(options));

  std::atomic<int> runs = 0;
  httplib::Server server;
  idem::httplib::protect(server, engine)
      .Post("/payments", [&](const httplib::Request&, httplib::Response& res) {
        res.status = 201;
        res.set_content("{\"run\":" + std::to_string(++runs) + "}", "application/json");
      });
  int port = server.bind_to_any_port("127.0.0.1");
  if (port <= 0) return 2;
  std::thread listener([&] { server.listen_after_bind(); });
  while (!server.is_running()) std::this_thread::sleep_for(std::chrono::milliseconds(1));

  httplib::Client client("127.0.0.1", port);
  httplib::Headers key{{"Idempotency-Key", "consumer-1"}};
  auto first = client.Post("/payments", key, "{\"amount\":1}", "application/json");
  auto retry = client.Post("/payments", key, "{\"amount\":1}", "application/json");
  server.stop();
  listener.join();

  bool ok = first && retry && first->status == 201 && retry->status == 201 &&
            retry->body == first->body &&
            retry->get_header_value("Idempotent-Replayed") == "true" && runs == 1;
  std::printf("consumer: %s (handler runs: %d)\n", ok ? "replayed" : "FAILED", runs.load());
  return ok ? 0 : 1;
}
