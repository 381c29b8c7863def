// The programmatic admin API that the seed packages expose (`has`, `flush` by scope and
// key), kept apart from the request path in engine.cpp: both only name the record and
// hand the question to the store.

#include "idem/engine.hpp"

namespace idem {

void Engine::has(std::string_view scope_value, std::string_view key, Callback<bool> done,
                 std::string_view method, std::string_view path) {
  lookup(record_id(scope_value, key, method, path),
         [done = std::move(done)](Result<std::optional<Record>> record) {
           if (!record) return done(record.error());
           done(record->has_value());
         });
}

void Engine::flush(std::string_view scope_value, std::string_view key, Callback<bool> done,
                   std::string_view method, std::string_view path) {
  flush(record_id(scope_value, key, method, path), std::move(done));
}

}  // namespace idem
