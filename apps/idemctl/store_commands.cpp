// `idemctl store ...`: the offline tools of lmdb_tools.hpp behind flags. Records are named
// by HMAC, so --key/--scope needs the secret kept in the data directory and names the
// record the way the engine does under the default scope rule (identity): the scope value
// is the identity (the Authorization header's value, e.g. "Bearer tok_1"; none for the
// anonymous scope). Records of routes with another scope rule are found by --id.

#include "store_commands.hpp"

#include <time.h>

#include <chrono>
#include <cstdio>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "command.hpp"
#include "idem/key.hpp"
#include "idem/lmdb_store.hpp"
#include "idem/lmdb_tools.hpp"
#include "idem/record_name.hpp"
#include "idem/scope.hpp"

namespace idemctl {
using namespace idem;
namespace {

namespace fs = std::filesystem;

// Why a command could not do its work (not bad input): one line, exit code 1.
class Failed : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

[[noreturn]] void bad_input(const std::string& line) { throw UsageError(line); }
[[noreturn]] void failed(const std::string& line) { throw Failed(line); }

struct Args {
  std::string store;
  std::string id;
  std::string key;  ///< empty: not given (a key is never empty)
  std::string scope;
  bool all = false;
  bool body = false;
  std::size_t limit = 0;
};

fs::path store_dir(const Args& a) {
  constexpr std::string_view kPrefix = "lmdb:";
  if (!std::string_view(a.store).starts_with(kPrefix) || a.store.size() == kPrefix.size()) {
    bad_input("--store: expected lmdb:PATH (offline tools work on the lmdb store only)");
  }
  return fs::path(a.store.substr(kPrefix.size()));
}

std::optional<RecordId> parse_hex_id(std::string_view hex) {
  if (hex.size() != 2 * Digest::kMaxSize) return std::nullopt;
  std::vector<std::uint8_t> bytes;
  for (std::size_t i = 0; i < hex.size(); i += 2) {
    unsigned v = 0;
    for (char c : hex.substr(i, 2)) {
      v <<= 4;
      if (c >= '0' && c <= '9')
        v |= static_cast<unsigned>(c - '0');
      else if (c >= 'a' && c <= 'f')
        v |= static_cast<unsigned>(c - 'a' + 10);
      else if (c >= 'A' && c <= 'F')
        v |= static_cast<unsigned>(c - 'A' + 10);
      else
        return std::nullopt;
    }
    bytes.push_back(static_cast<std::uint8_t>(v));
  }
  return RecordId(bytes);
}

// The record named by --id, or by --key/--scope with the directory's secret.
RecordId record_id(const Args& a, const fs::path& dir) {
  if (!a.id.empty() && !a.key.empty()) bad_input("--id: give --id or --key, not both");
  if (!a.id.empty()) {
    auto id = parse_hex_id(a.id);
    if (!id) bad_input("--id: expected the record's 64 hex digits");
    return *id;
  }
  if (a.key.empty()) bad_input("--id: name the record with --id HEX or --key K [--scope S]");
  auto key = parse_key(a.key, KeyFormat{});
  if (auto* error = std::get_if<KeyError>(&key)) {
    bad_input("--key: " + std::string(describe(*error)));
  }
  std::string secret;
  try {
    secret = lmdb_read_secret(dir);
  } catch (const LmdbStoreError& e) {
    failed(std::string(e.what()) + " (use --id when the gateway's config names the secret)");
  }
  const std::string scope = scope_string_from_value(ScopeRule{}, a.scope, "/");
  return RecordNamer(std::move(secret)).name(scope, std::get<std::string>(key));
}

std::string iso_time(TimePoint t) {
  const auto ms = std::chrono::floor<std::chrono::milliseconds>(t.time_since_epoch()).count();
  const time_t secs = static_cast<time_t>(ms >= 0 ? ms / 1000 : (ms - 999) / 1000);
  tm utc{};
  gmtime_r(&secs, &utc);
  char buf[48];
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", utc.tm_year + 1900,
                utc.tm_mon + 1, utc.tm_mday, utc.tm_hour, utc.tm_min, utc.tm_sec,
                static_cast<int>(((ms % 1000) + 1000) % 1000));
  return buf;
}

std::string state_of(const LmdbRecordInfo& r) {
  if (!r.record) return "corrupt";
  std::string s = r.record->state == RecordState::completed ? "completed" : "in_flight";
  return r.expired ? s + ",expired" : s;
}

void list(const Args& a) {
  const fs::path dir = store_dir(a);
  const auto records = lmdb_list_records(dir, std::chrono::system_clock::now(), a.limit);
  std::printf("%-64s  %-19s  %6s  %-24s  %s\n", "id", "state", "status", "expires_at", "bytes");
  for (const auto& r : records) {
    const std::string status = r.record && r.record->response
                                   ? std::to_string(r.record->response->status)
                                   : std::string("-");
    const std::string expires = r.record ? iso_time(r.record->expires_at) : std::string("-");
    std::printf("%-64s  %-19s  %6s  %-24s  %zu\n", r.id.hex().c_str(), state_of(r).c_str(),
                status.c_str(), expires.c_str(), r.size);
  }
  std::printf("%zu record%s\n", records.size(), records.size() == 1 ? "" : "s");
}

void inspect(const Args& a) {
  const fs::path dir = store_dir(a);
  const RecordId id = record_id(a, dir);
  const auto found = lmdb_inspect_record(dir, id, std::chrono::system_clock::now());
  if (!found) failed("no record " + id.hex() + " in " + dir.string());
  std::printf("id: %s\nstate: %s\nbytes: %zu\n", id.hex().c_str(), state_of(*found).c_str(),
              found->size);
  if (!found->record) {
    std::printf("error: %s\n", found->error.c_str());
    return;
  }
  const Record& r = *found->record;
  std::printf("fingerprint: %s\nfencing_token: %llu\nlease_owner: %s\ncreated_at: %s\n",
              r.fingerprint.hex().c_str(), static_cast<unsigned long long>(r.fencing_token),
              r.lease_owner.c_str(), iso_time(r.created_at).c_str());
  if (r.state == RecordState::in_flight) {
    std::printf("lease_expires_at: %s\n", iso_time(r.lease_expires_at).c_str());
  }
  std::printf("expires_at: %s\n", iso_time(r.expires_at).c_str());
  if (!r.response) return;
  std::printf("status: %d\nbody_stored: %s\nbody_bytes: %zu\n", r.response->status,
              r.response->body_stored ? "true" : "false", r.response->body.size());
  for (const auto& [name, value] : r.response->headers) {
    std::printf("header: %s: %s\n", name.c_str(), value.c_str());
  }
  if (a.body) {
    std::printf("body:\n");
    std::fwrite(r.response->body.data(), 1, r.response->body.size(), stdout);
    std::printf("\n");
  }
}

void flush(const Args& a) {
  const fs::path dir = store_dir(a);
  if (a.all) {
    if (!a.id.empty() || !a.key.empty())
      bad_input("--all: give --all alone, without --id or --key");
    const auto n = lmdb_erase_all(dir);
    std::printf("erased %llu record%s from %s\n", static_cast<unsigned long long>(n),
                n == 1 ? "" : "s", dir.string().c_str());
    return;
  }
  if (a.id.empty() && a.key.empty()) {
    bad_input("--id: name the record with --id HEX or --key K [--scope S], or give --all");
  }
  const RecordId id = record_id(a, dir);
  if (lmdb_erase_record(dir, id)) {
    std::printf("erased %s\n", id.hex().c_str());
  } else {
    std::printf("no record %s (nothing to erase)\n", id.hex().c_str());
  }
}

void compact(const Args& a) {
  const fs::path dir = store_dir(a);
  const auto report = lmdb_compact(dir);
  std::printf("compacted %s: %llu bytes -> %llu bytes\n", dir.string().c_str(),
              static_cast<unsigned long long>(report.bytes_before),
              static_cast<unsigned long long>(report.bytes_after));
}

// Runs a command; what stops it (an unusable directory, a missing record) is one line on
// stderr and exit code 1. UsageError goes on to main(): exit code 2.
int run(void (*command)(const Args&), const Args& a) {
  try {
    command(a);
    return 0;
  } catch (const LmdbStoreError& e) {
    std::fprintf(stderr, "idemctl: %s\n", e.what());
  } catch (const Failed& e) {
    std::fprintf(stderr, "idemctl: %s\n", e.what());
  }
  return 1;
}

}  // namespace

void add_store_commands(CLI::App& app, int& exit_code) {
  auto args = std::make_shared<Args>();
  CLI::App* store =
      app.add_subcommand("store", "Offline tools for the lmdb store's data directory");
  store->require_subcommand(1);
  auto add_store_flag = [&](CLI::App* cmd) {
    cmd->add_option("--store", args->store, "The store: lmdb:PATH")->required();
  };
  auto add_name_flags = [&](CLI::App* cmd) {
    cmd->add_option("--id", args->id, "The record's id (64 hex digits)");
    cmd->add_option("--key", args->key, "The Idempotency-Key, named with the directory's secret");
    cmd->add_option("--scope", args->scope,
                    "The identity the key belongs to (e.g. 'Bearer tok_1'); none: anonymous");
  };

  CLI::App* list_cmd = store->add_subcommand("list", "One line per record");
  add_store_flag(list_cmd);
  list_cmd->add_option("--limit", args->limit, "At most this many records (0: all)");
  list_cmd->callback([args, &exit_code] { exit_code = run(list, *args); });

  CLI::App* inspect_cmd = store->add_subcommand("inspect", "Everything about one record");
  add_store_flag(inspect_cmd);
  add_name_flags(inspect_cmd);
  inspect_cmd->add_flag("--body", args->body, "Print the stored body too");
  inspect_cmd->callback([args, &exit_code] { exit_code = run(inspect, *args); });

  CLI::App* flush_cmd = store->add_subcommand("flush", "Erase one record, or all of them");
  add_store_flag(flush_cmd);
  add_name_flags(flush_cmd);
  flush_cmd->add_flag("--all", args->all, "Erase every record");
  flush_cmd->callback([args, &exit_code] { exit_code = run(flush, *args); });

  CLI::App* compact_cmd = store->add_subcommand(
      "compact", "Rewrite data.mdb without free pages (stop the gateway first)");
  add_store_flag(compact_cmd);
  compact_cmd->callback([args, &exit_code] { exit_code = run(compact, *args); });
}

}  // namespace idemctl
