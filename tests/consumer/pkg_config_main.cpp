// idem.pc: a program built with nothing but `pkg-config --cflags --libs idem`.

#include <cstdio>
#include <idem/engine.hpp>
#include <idem/memory_store.hpp>
#include <idem/record_name.hpp>
#include <optional>
#include <string>
#include <vector>

int main() {
  idem::EngineOptions options;
  options.store = idem::make_memory_store();
  options.secret = idem::RecordNamer::generate_secret();
  auto engine = idem::Engine::create(std::move(options));
  std::vector<idem::HeaderField> headers{{"Idempotency-Key", "pc-1"}};
  idem::RequestView view{"POST", "/payments", headers, "{}", "127.0.0.1"};
  std::optional<idem::Decision> first;
  engine->begin(view, [&](idem::Decision d) { first = std::move(d); });
  if (!first || first->action != idem::Decision::Action::proceed) return 1;
  idem::Response created;
  created.status = 201;
  engine->complete(std::move(*first->ticket), created, true, {});
  std::optional<idem::Decision> retry;
  engine->begin(view, [&](idem::Decision d) { retry = std::move(d); });
  bool ok = retry && retry->outcome == idem::Outcome::replayed;
  std::printf("consumer (pkg-config): %s\n", ok ? "replayed" : "FAILED");
  return ok ? 0 : 1;
}
