// The victim of lmdb_crash_test: opens the store in the directory given, then claims and
// completes records as fast as it can from a few threads, many operations outstanding, and
// prints each record's id (hex) on stdout only after its completion callback. Whatever it
// printed must survive a SIGKILL at any moment.
//
//   lmdb_crash_child DIR process|power
//
// It also plays "another process" for the store's cache tests:
//
//   lmdb_crash_child erase DIR HEX      erases one record with the offline tool
//
// and writes a record as a gateway would name it, for idemctl's tests (prints its id):
//
//   lmdb_crash_child put DIR KEY SCOPE  completes KEY in the identity scope SCOPE (201, "{}")
//
// and reads the directory as idemctl store list does (prints how many records it holds):
//
//   lmdb_crash_child count DIR

#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <future>
#include <semaphore>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "idem/lmdb_store.hpp"
#include "idem/lmdb_tools.hpp"
#include "idem/record_name.hpp"
#include "idem/scope.hpp"

namespace {

constexpr int kThreads = 4;
constexpr int kOutstanding = 32;  // per thread

// Unique per (process, thread, n), and uniform in its first 8 bytes like the HMAC names
// the engine makes (stores hash ids by those bytes).
idem::RecordId id_of(std::uint64_t pid, std::uint64_t thread, std::uint64_t n) {
  std::uint64_t mixed = (pid << 40) ^ (thread << 32) ^ n;
  mixed = (mixed ^ (mixed >> 30)) * 0xbf58476d1ce4e5b9ull;  // splitmix64's finaliser
  mixed = (mixed ^ (mixed >> 27)) * 0x94d049bb133111ebull;
  mixed ^= mixed >> 31;
  std::uint8_t bytes[32] = {};
  std::memcpy(bytes, &mixed, 8);
  std::memcpy(bytes + 8, &pid, 8);
  std::memcpy(bytes + 16, &thread, 8);
  std::memcpy(bytes + 24, &n, 8);
  return idem::RecordId(bytes);
}

void print_line(const std::string& line) {
  // One write of less than PIPE_BUF bytes: lines from several threads never interleave.
  const std::string out = line + "\n";
  if (::write(STDOUT_FILENO, out.data(), out.size()) < 0) std::_Exit(3);
}

int erase(const char* dir, std::string_view hex) {
  std::vector<std::uint8_t> bytes;
  for (std::size_t i = 0; i + 1 < hex.size(); i += 2) {
    bytes.push_back(
        static_cast<std::uint8_t>(std::stoi(std::string(hex.substr(i, 2)), nullptr, 16)));
  }
  try {
    return idem::lmdb_erase_record(dir, idem::RecordId(bytes)) ? 0 : 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s\n", e.what());
    return 2;
  }
}

int count(const char* dir) {
  try {
    const auto records = idem::lmdb_list_records(dir, idem::SystemClock().now(), 1u << 20);
    std::printf("%zu\n", records.size());
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s\n", e.what());
    return 2;
  }
}

int put(const char* dir, const std::string& key, const std::string& scope) {
  try {
    idem::RecordNamer namer(idem::load_or_create_secret(dir));
    const idem::RecordId id =
        namer.name(idem::scope_string_from_value(idem::ScopeRule{}, scope, "/"), key);
    idem::LmdbStoreOptions options;
    options.path = dir;
    auto store = idem::make_lmdb_store(options);
    idem::ClaimRequest request;
    request.id = id;
    request.fingerprint = id;
    request.owner = "idemctl-test";
    request.lease = std::chrono::seconds(30);
    request.ttl = std::chrono::hours(1);
    std::promise<bool> done;
    store->claim(request, [&](idem::Result<idem::ClaimOutcome> r) {
      if (!r || !r->acquired) return done.set_value(false);
      idem::StoredResponse response;
      response.status = 201;
      response.headers = {{"Content-Type", "application/json"}};
      response.body = "{}";
      store->complete(id, r->fencing_token, response, std::chrono::hours(1),
                      [&](idem::Result<idem::TokenCheck> c) {
                        done.set_value(c && *c == idem::TokenCheck::ok);
                      });
    });
    if (!done.get_future().get()) return 1;
    std::printf("%s\n", id.hex().c_str());
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s\n", e.what());
    return 2;
  }
}

}  // namespace

int main(int argc, char** argv) {
  if (argc == 4 && std::strcmp(argv[1], "erase") == 0) return erase(argv[2], argv[3]);
  if (argc == 3 && std::strcmp(argv[1], "count") == 0) return count(argv[2]);
  if (argc == 5 && std::strcmp(argv[1], "put") == 0) return put(argv[2], argv[3], argv[4]);
  if (argc != 3) {
    std::fprintf(stderr, "usage: lmdb_crash_child DIR process|power\n");
    return 2;
  }
  idem::LmdbStoreOptions options;
  options.path = argv[1];
  options.durability =
      std::strcmp(argv[2], "power") == 0 ? idem::Durability::power : idem::Durability::process;
  std::shared_ptr<idem::LmdbStore> store;
  try {
    store = idem::make_lmdb_store(options);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s\n", e.what());
    return 1;
  }
  print_line("ready");
  const std::uint64_t pid = static_cast<std::uint64_t>(::getpid());
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      auto slots = std::make_shared<std::counting_semaphore<kOutstanding>>(kOutstanding);
      for (std::uint64_t n = 0;; ++n) {
        slots->acquire();
        const idem::RecordId id = id_of(pid, t, n);
        idem::ClaimRequest request;
        request.id = id;
        request.fingerprint = id;
        request.owner = "crash-child";
        request.lease = std::chrono::seconds(30);
        request.ttl = std::chrono::hours(1);
        store->claim(request, [store = store.get(), id, slots](idem::Result<idem::ClaimOutcome> r) {
          if (!r || !r->acquired) std::_Exit(4);
          idem::StoredResponse response;
          response.status = 201;
          response.body = id.hex();
          store->complete(id, r->fencing_token, std::move(response), std::chrono::hours(1),
                          [id, slots](idem::Result<idem::TokenCheck> done) {
                            if (!done || *done != idem::TokenCheck::ok) std::_Exit(5);
                            print_line(id.hex());
                            slots->release();
                          });
        });
      }
    });
  }
  for (auto& t : threads) t.join();  // never: the test kills this process
}
