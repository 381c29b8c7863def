#pragma once

// A real redis-server for tests: started on a free loopback port with persistence off,
// stopped (or killed, paused, restarted) by the test. Never a mock, never the system Redis.
// The child dies with the test process (PR_SET_PDEATHSIG), so a crashed test leaves no
// server behind.

#include <arpa/inet.h>
#include <fcntl.h>
#include <hiredis/hiredis.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <random>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace idem::testing {

/// Whether nothing is bound to `port` on loopback right now.
inline bool bindable(std::uint16_t port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(port);
  const bool ok = ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0;
  ::close(fd);
  return ok;
}

/// A loopback port that nothing listens on, held for this process until it exits.
///
/// Reserved, not just found free: a port from bind(0) lies in the kernel's ephemeral range,
/// and once closed the kernel may hand it out again, to another test process or as the
/// source port of an outgoing connection. A server restarted on its port, or an address
/// that must stay unreachable, would then meet a stranger. So ports come from just below
/// the ephemeral range, which the kernel never assigns, each held by an flock(2) on a file
/// that every test process shares (tests/integration/harness.py does the same).
inline std::uint16_t free_port() {
  int ephemeral_low = 0;
  if (std::ifstream range("/proc/sys/net/ipv4/ip_local_port_range"); range) range >> ephemeral_low;
  const int low = std::max(1024, ephemeral_low - 12000);
  if (ephemeral_low - low >= 1000) {
    const char* tmp = std::getenv("TMPDIR");
    const std::string dir = std::string(tmp && *tmp ? tmp : "/tmp") + "/idem-test-ports";
    ::mkdir(dir.c_str(), 0777);
    std::random_device seed;
    std::mt19937 pick(seed());
    std::uniform_int_distribution<int> in_range(low, ephemeral_low - 1);
    for (int attempt = 0; attempt < 200; ++attempt) {
      const auto port = static_cast<std::uint16_t>(in_range(pick));
      const std::string file = dir + "/" + std::to_string(port);
      const int fd = ::open(file.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0666);
      if (fd < 0) break;
      if (::flock(fd, LOCK_EX | LOCK_NB) == 0 && bindable(port)) return port;  // fd stays open
      ::close(fd);
    }
  }
  // No room below the ephemeral range (an unusual kernel setting): take the kernel's pick.
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  socklen_t len = sizeof(addr);
  if (fd < 0 || ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    if (fd >= 0) ::close(fd);
    throw std::runtime_error("no free port");
  }
  ::close(fd);
  return ntohs(addr.sin_port);
}

/// A blocking hiredis connection for the test's own look at the server (INFO, SCRIPT FLUSH).
class RedisProbe {
 public:
  explicit RedisProbe(std::uint16_t port) {
    timeval tv{2, 0};
    ctx_ = redisConnectWithTimeout("127.0.0.1", port, tv);
    if (ctx_ && !ctx_->err) redisSetTimeout(ctx_, tv);
  }
  ~RedisProbe() {
    if (ctx_) redisFree(ctx_);
  }
  RedisProbe(const RedisProbe&) = delete;
  RedisProbe& operator=(const RedisProbe&) = delete;

  bool ok() const { return ctx_ && !ctx_->err; }

  /// Runs a command; returns the reply as text (strings, status, errors, integers), or
  /// "<nil>" / "<array N>" / "<io error>".
  std::string run(std::vector<std::string> args) {
    if (!ok()) return "<io error>";
    std::vector<const char*> argv;
    std::vector<std::size_t> lens;
    for (const auto& a : args) {
      argv.push_back(a.data());
      lens.push_back(a.size());
    }
    auto* r = static_cast<redisReply*>(
        redisCommandArgv(ctx_, static_cast<int>(args.size()), argv.data(), lens.data()));
    if (!r) return "<io error>";
    std::string out;
    switch (r->type) {
      case REDIS_REPLY_STRING:
      case REDIS_REPLY_STATUS:
      case REDIS_REPLY_ERROR:
        out.assign(r->str, r->len);
        break;
      case REDIS_REPLY_INTEGER:
        out = std::to_string(r->integer);
        break;
      case REDIS_REPLY_NIL:
        out = "<nil>";
        break;
      default:
        out = "<array " + std::to_string(r->elements) + ">";
    }
    freeReplyObject(r);
    return out;
  }

  /// `calls=` of one command in INFO commandstats (0 when never called).
  long calls(const std::string& command) {
    const std::string info = run({"INFO", "commandstats"});
    const std::string key = "cmdstat_" + command + ":calls=";
    const auto at = info.find(key);
    if (at == std::string::npos) return 0;
    return std::strtol(info.c_str() + at + key.size(), nullptr, 10);
  }

 private:
  redisContext* ctx_ = nullptr;
};

class RedisServer {
 public:
  /// Starts on a free port; throws if redis-server does not come up (a test setup failure).
  RedisServer() {
    for (int attempt = 0; attempt < 5; ++attempt) {
      port_ = free_port();
      if (start()) return;
    }
    throw std::runtime_error("redis-server did not start");
  }
  ~RedisServer() { kill(); }
  RedisServer(const RedisServer&) = delete;
  RedisServer& operator=(const RedisServer&) = delete;

  std::uint16_t port() const { return port_; }
  std::string url() const { return "redis://127.0.0.1:" + std::to_string(port_); }

  /// Starts again on the same port (after kill()); true once it answers PING.
  bool start() {
    const std::string port = std::to_string(port_);
    pid_ = ::fork();
    if (pid_ == 0) {
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);
      // Only async-signal-safe calls between fork and exec: the test has threads.
      const int devnull = ::open("/dev/null", O_WRONLY);
      if (devnull >= 0) ::dup2(devnull, STDOUT_FILENO);
      execlp("redis-server", "redis-server", "--port", port.c_str(), "--bind", "127.0.0.1",
             "--save", "", "--appendonly", "no", "--dir", "/tmp", "--loglevel", "warning",
             static_cast<char*>(nullptr));
      _exit(127);
    }
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    while (std::chrono::steady_clock::now() < deadline) {
      int status = 0;
      if (::waitpid(pid_, &status, WNOHANG) == pid_) {  // exited: port taken?
        pid_ = -1;
        return false;
      }
      RedisProbe probe(port_);
      if (probe.ok() && probe.run({"PING"}) == "PONG") return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    kill();
    return false;
  }

  /// SIGKILL: the server vanishes, its sockets are reset by the kernel. Also when paused,
  /// and without a SIGCONT first, which would let it answer what it had read.
  void kill() {
    if (pid_ <= 0) return;
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, nullptr, 0);
    pid_ = -1;
  }
  /// SIGSTOP / SIGCONT: the server stays connected but answers nothing, like a hung host.
  /// Returns once the process is stopped: the signal is delivered asynchronously.
  void pause() {
    ::kill(pid_, SIGSTOP);
    const std::string stat = "/proc/" + std::to_string(pid_) + "/stat";
    for (int i = 0; i < 1000; ++i) {
      std::ifstream in(stat);
      std::string pid, name, state;
      in >> pid >> name >> state;  // redis-server's name has no spaces
      if (state == "T") return;
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
  }
  void resume() { ::kill(pid_, SIGCONT); }

 private:
  std::uint16_t port_ = 0;
  pid_t pid_ = -1;
};

/// One server per test process, started on first use: ctest runs each test in its own
/// process, so tests never share a server with another process.
inline RedisServer& shared_redis() {
  static RedisServer server;
  return server;
}

}  // namespace idem::testing
