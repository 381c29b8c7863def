// kill -9 at random moments: every record whose completion was reported before the kill is
// there, completed, when the store is opened again. Runs lmdb_crash_child ~20 times on one
// directory, alternating process and power durability. After a power round the store
// recovers as after a power cut or a kill -9 in the same boot: from the redo log's last
// checkpoint and the log.

#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "idem/lmdb_store.hpp"
#include "stores/lmdb/redo_log.hpp"
#include "stores/lmdb_test_support.hpp"
#include "unit/store_conformance.hpp"

namespace idem::testing {
namespace {

using namespace std::chrono_literals;

struct Child {
  pid_t pid = -1;
  int out = -1;
};

Child spawn_child(const std::string& dir, const char* durability) {
  int pipefd[2];
  if (::pipe(pipefd) != 0) return {};
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, pipefd[1], STDOUT_FILENO);
  posix_spawn_file_actions_addclose(&actions, pipefd[0]);
  posix_spawn_file_actions_addclose(&actions, pipefd[1]);
  std::string exe = IDEM_LMDB_CRASH_CHILD;
  std::vector<char*> argv = {exe.data(), const_cast<char*>(dir.c_str()),
                             const_cast<char*>(durability), nullptr};
  Child child;
  if (posix_spawn(&child.pid, exe.c_str(), &actions, nullptr, argv.data(), environ) != 0) {
    child.pid = -1;
  }
  posix_spawn_file_actions_destroy(&actions);
  ::close(pipefd[1]);
  child.out = pipefd[0];
  return child;
}

// Whole lines from the child's stdout; a partial last line is dropped, since the child had
// not finished saying it.
class LineReader {
 public:
  explicit LineReader(int fd) : fd_(fd) {}

  /// Reads until `deadline`, end of file, or (when `until_ready`) the "ready" line.
  void read_until(std::chrono::steady_clock::time_point deadline, bool until_ready = false) {
    char buf[65536];
    while (!(until_ready && ready_)) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0) return;
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, static_cast<int>(left.count())) <= 0) continue;
      const ssize_t n = ::read(fd_, buf, sizeof buf);
      if (n <= 0) return;
      partial_.append(buf, static_cast<std::size_t>(n));
      for (std::size_t nl; (nl = partial_.find('\n')) != std::string::npos;) {
        std::string line = partial_.substr(0, nl);
        partial_.erase(0, nl + 1);
        if (line == "ready") {
          ready_ = true;
        } else {
          ids_.push_back(std::move(line));
        }
      }
    }
  }
  bool ready() const noexcept { return ready_; }
  const std::vector<std::string>& ids() const noexcept { return ids_; }

 private:
  int fd_;
  std::string partial_;
  bool ready_ = false;
  std::vector<std::string> ids_;
};

RecordId from_hex(const std::string& hex) {
  std::vector<std::uint8_t> bytes;
  for (std::size_t i = 0; i + 1 < hex.size(); i += 2) {
    bytes.push_back(static_cast<std::uint8_t>(std::stoi(hex.substr(i, 2), nullptr, 16)));
  }
  return RecordId(bytes);
}

TEST(LmdbCrashTest, CompletionsReportedBeforeKillNineSurviveIt) {
  TempDir dir;
  std::mt19937 rng(std::random_device{}());
  std::vector<std::string> reported;
  constexpr int kRounds = 20;
  for (int round = 0; round < kRounds; ++round) {
    const char* durability = round % 2 == 0 ? "process" : "power";
    Child child = spawn_child(dir.path().string(), durability);
    ASSERT_GT(child.pid, 0) << "cannot start " << IDEM_LMDB_CRASH_CHILD;
    LineReader reader(child.out);
    const auto now = std::chrono::steady_clock::now;
    reader.read_until(now() + 10s, /*until_ready=*/true);
    ASSERT_TRUE(reader.ready()) << "round " << round << ": the child did not open the store";
    // Let it write for a random while, then kill it wherever it is.
    reader.read_until(now() +
                      std::chrono::milliseconds(std::uniform_int_distribution(5, 150)(rng)));
    ::kill(child.pid, SIGKILL);
    int status = 0;
    ::waitpid(child.pid, &status, 0);
    // What the child wrote to the pipe before it died is still in it.
    reader.read_until(now() + 5s);
    ::close(child.out);
    ASSERT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL)
        << "round " << round << ": the child exited on its own, status " << status;
    reported.insert(reported.end(), reader.ids().begin(), reader.ids().end());
    const std::size_t ids = reader.ids().size();
    SCOPED_TRACE("round " + std::to_string(round) + " (" + durability +
                 "): " + std::to_string(ids) + " completions reported");

    // After every other power round, reopen as after a power cut (a new boot); after the
    // others, as after a kill -9 in the same boot. Either way the store goes back to the
    // redo log's last checkpoint and replays the log from there: completions held in
    // memory are only in the log.
    lmdb::set_boot_id_for_testing(round % 4 == 1 ? "after round " + std::to_string(round) : "");
    LmdbStoreOptions options;
    options.path = dir.path();
    auto store = make_lmdb_store(options);
    lmdb::set_boot_id_for_testing("");
    int missing = 0;
    for (const auto& hex : reported) {
      auto rec = await<std::optional<Record>>([&](auto cb) { store->get(from_hex(hex), cb); });
      ASSERT_TRUE(rec && rec->has_value()) << hex;
      const auto& r = **rec;
      if (!r || r->state != RecordState::completed || !r->response || r->response->body != hex) {
        ++missing;
      }
    }
    EXPECT_EQ(missing, 0) << "of " << reported.size() << " reported completions";
  }
  EXPECT_GT(reported.size(), 100u) << "the child hardly ran";
  std::printf("%zu completions reported over %d kill -9s, all found completed\n", reported.size(),
              kRounds);
}

}  // namespace
}  // namespace idem::testing
