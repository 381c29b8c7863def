// The record-naming secret kept in the data directory. Whoever reads it can tell which
// (scope, key) a record belongs to by trying candidates, so it is created private (0600)
// and refused when it is not; and it is created atomically, so two gateways starting on
// one fresh directory end up with the same secret rather than one each.

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <string>
#include <system_error>

#include "idem/lmdb_store.hpp"
#include "idem/lmdb_tools.hpp"
#include "idem/record_name.hpp"
#include "stores/lmdb/env.hpp"

namespace idem {
namespace {

namespace fs = std::filesystem;
constexpr std::size_t kSecretBytes = 32;

[[noreturn]] void fail(const fs::path& file, const std::string& what) {
  throw LmdbStoreError("secret file " + file.string() + ": " + what);
}

std::string errno_text() { return std::strerror(errno); }

struct Fd {
  int fd = -1;
  ~Fd() {
    if (fd >= 0) ::close(fd);
  }
};

std::string read_secret(const fs::path& file) {
  Fd f{::open(file.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW)};
  if (f.fd < 0) fail(file, "cannot open: " + errno_text());
  struct stat st {};
  if (::fstat(f.fd, &st) != 0) fail(file, "fstat: " + errno_text());
  if (!S_ISREG(st.st_mode)) fail(file, "not a regular file");
  if ((st.st_mode & 077) != 0) {
    char mode[8];
    std::snprintf(mode, sizeof mode, "%04o", static_cast<unsigned>(st.st_mode & 07777));
    fail(file, std::string("mode ") + mode +
                   " lets group or others read it; run chmod 600 on it (it names every record)");
  }
  if (static_cast<std::size_t>(st.st_size) != kSecretBytes) {
    fail(file, std::to_string(st.st_size) + " bytes, expected " + std::to_string(kSecretBytes));
  }
  std::string secret(kSecretBytes, '\0');
  std::size_t got = 0;
  while (got < secret.size()) {
    const ssize_t n = ::read(f.fd, secret.data() + got, secret.size() - got);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) fail(file, "read: " + (n < 0 ? errno_text() : std::string("short file")));
    got += static_cast<std::size_t>(n);
  }
  return secret;
}

// Writes a new secret to a private temporary file, flushes it, then links it into place:
// link() fails when `file` exists, so a concurrent creator's secret wins and is read.
void create_secret(const fs::path& file) {
  const fs::path tmp = file.parent_path() / (".secret." + std::to_string(::getpid()) + ".tmp");
  ::unlink(tmp.c_str());  // a leftover of a crashed start of this same pid
  {
    Fd f{::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600)};
    if (f.fd < 0) fail(file, "cannot create " + tmp.string() + ": " + errno_text());
    const std::string secret = RecordNamer::generate_secret();
    std::size_t put = 0;
    while (put < secret.size()) {
      const ssize_t n = ::write(f.fd, secret.data() + put, secret.size() - put);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) {
        ::unlink(tmp.c_str());
        fail(file, "write: " + errno_text());
      }
      put += static_cast<std::size_t>(n);
    }
    if (::fsync(f.fd) != 0) {
      ::unlink(tmp.c_str());
      fail(file, "fsync: " + errno_text());
    }
  }
  const int linked = ::link(tmp.c_str(), file.c_str());
  const int link_errno = errno;
  ::unlink(tmp.c_str());
  if (linked != 0 && link_errno != EEXIST) {
    errno = link_errno;
    fail(file, "cannot create: " + errno_text());
  }
  lmdb::fsync_path(file.parent_path());
}

}  // namespace

std::string lmdb_read_secret(const fs::path& dir) {
  const fs::path file = dir / "secret";
  std::error_code ec;
  if (!fs::exists(fs::symlink_status(file, ec))) fail(file, "missing");
  return read_secret(file);
}

std::string load_or_create_secret(const fs::path& dir) {
  const fs::path file = dir / "secret";
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) fail(file, "cannot create the directory: " + ec.message());
  if (!fs::exists(fs::symlink_status(file, ec))) create_secret(file);
  return read_secret(file);
}

}  // namespace idem
