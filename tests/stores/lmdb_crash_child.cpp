// The victim of lmdb_crash_test: opens the store in the directory given, then claims and
// completes records as fast as it can from a few threads, many operations outstanding, and
// prints each record's id (hex) on stdout only after its completion callback. Whatever it
// printed must survive a SIGKILL at any moment.
//
//   lmdb_crash_child DIR process|power

#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <semaphore>
#include <string>
#include <thread>
#include <vector>

#include "idem/lmdb_store.hpp"

namespace {

constexpr int kThreads = 4;
constexpr int kOutstanding = 32;  // per thread

idem::RecordId id_of(std::uint64_t pid, std::uint64_t thread, std::uint64_t n) {
  std::uint8_t bytes[32] = {};
  std::memcpy(bytes, &pid, 8);
  std::memcpy(bytes + 8, &thread, 8);
  std::memcpy(bytes + 16, &n, 8);
  return idem::RecordId(bytes);
}

void print_line(const std::string& line) {
  // One write of less than PIPE_BUF bytes: lines from several threads never interleave.
  const std::string out = line + "\n";
  if (::write(STDOUT_FILENO, out.data(), out.size()) < 0) std::_Exit(3);
}

}  // namespace

int main(int argc, char** argv) {
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
