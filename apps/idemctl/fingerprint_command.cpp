// `idemctl fingerprint`: the fingerprint the gateway would compute for a request, with the
// canonical form it hashes, so that a user can see why a retry was answered 422.

#include "fingerprint_command.hpp"

#include <toml++/toml.h>

#include <cctype>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <iterator>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "command.hpp"
#include "idem/fingerprint.hpp"
#include "idem/policy.hpp"
#include "idem/request.hpp"

namespace idemctl {

namespace {

struct Flags {
  std::string method;
  std::string target;
  std::optional<std::string> content_type;
  std::optional<std::string> body_file;
  std::optional<std::string> config;
  std::vector<std::string> headers;
};

/// RFC 9110 token characters: header names and methods.
bool is_token(std::string_view s) {
  if (s.empty()) return false;
  for (unsigned char c : s) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              std::strchr("!#$%&'*+-.^_`|~", c) != nullptr;
    if (!ok || c == '\0') return false;
  }
  return true;
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

std::string read_all(std::FILE* file) {
  std::string out;
  char chunk[1 << 16];
  std::size_t n;
  while ((n = std::fread(chunk, 1, sizeof chunk, file)) > 0) out.append(chunk, n);
  return out;
}

std::string read_body(const Flags& flags) {
  if (!flags.body_file) {
    std::string body = read_all(stdin);
    if (std::ferror(stdin)) throw UsageError("standard input: cannot read the body");
    return body;
  }
  std::unique_ptr<std::FILE, int (*)(std::FILE*)> file(std::fopen(flags.body_file->c_str(), "rb"),
                                                       &std::fclose);
  if (!file) {
    throw UsageError("--body-file: cannot read '" + *flags.body_file +
                     "': " + std::strerror(errno));
  }
  std::string body = read_all(file.get());
  if (std::ferror(file.get())) {
    throw UsageError("--body-file: cannot read '" + *flags.body_file + "'");
  }
  return body;
}

/// Reads the fingerprint settings of one table (the top level or a route) into `options`,
/// leaving the others alone: the file is the gateway's, with many settings idemctl ignores.
/// `prefix` names the table in errors ("" or "route[0].").
void apply_fingerprint_settings(const toml::table& table, const std::string& prefix,
                                idem::FingerprintOptions& options) {
  auto strings = [&](const char* key) -> std::optional<std::vector<std::string>> {
    const toml::node* node = table.get(key);
    if (node == nullptr) return std::nullopt;
    const toml::array* array = node->as_array();
    std::vector<std::string> out;
    if (array != nullptr) {
      for (const auto& element : *array) {
        if (!element.is_string()) array = nullptr;
        if (array == nullptr) break;
        out.push_back(element.as_string()->get());
      }
    }
    if (array == nullptr) throw UsageError(prefix + key + ": expected an array of strings");
    return out;
  };
  if (auto pointers = strings("fingerprint_ignore")) {
    try {
      idem::JsonPointerSet check(*pointers);
    } catch (const std::invalid_argument& e) {
      throw UsageError(prefix + e.what());  // the message starts with "fingerprint_ignore"
    }
    options.ignore = std::move(*pointers);
  }
  if (auto headers = strings("fingerprint_headers")) {
    for (const auto& name : *headers) {
      if (!is_token(name)) {
        throw UsageError(prefix + "fingerprint_headers: '" + name + "' is not a header name");
      }
    }
    options.headers = std::move(*headers);
  }
  if (const toml::node* node = table.get("fingerprint_algorithm")) {
    std::string value = node->is_string() ? node->as_string()->get() : std::string();
    for (char& c : value) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    // The spellings idem-gateway accepts.
    if (value == "sha256" || value == "sha-256") {
      options.algorithm = idem::FingerprintAlgorithm::sha256;
    } else if (value == "xxh3-128" || value == "xxh3_128" || value == "xxh3") {
      options.algorithm = idem::FingerprintAlgorithm::xxh3_128;
    } else {
      throw UsageError(prefix + "fingerprint_algorithm: expected \"sha256\" or \"xxh3-128\"");
    }
  }
}

/// Whether the route table `route` (named `prefix` in errors) applies to the request, as the
/// gateway decides it: its `methods` (if any) include the method and its `path` pattern
/// matches the path.
bool route_matches(const toml::table& route, const std::string& prefix, std::string_view method,
                   std::string_view path) {
  const toml::node* pattern = route.get("path");
  if (pattern == nullptr || !pattern->is_string()) {
    throw UsageError(prefix + "path: required, a pattern such as \"/v1/payments/*\"");
  }
  idem::PathPattern compiled;
  try {
    compiled = idem::PathPattern(pattern->as_string()->get());
  } catch (const std::invalid_argument& e) {
    throw UsageError(prefix + e.what());  // the message starts with "path"
  }
  if (const toml::node* methods = route.get("methods")) {
    const toml::array* array = methods->as_array();
    if (array == nullptr) throw UsageError(prefix + "methods: expected an array of strings");
    bool any = false;
    for (const auto& m : *array) {
      if (!m.is_string()) throw UsageError(prefix + "methods: expected an array of strings");
      any = any || idem::iequals(m.as_string()->get(), method);
    }
    if (!any) return false;
  }
  return compiled.matches(path);
}

/// The fingerprint settings of a parsed config for this request: the top level, then the
/// first matching [[route]] (which starts from the top-level values).
idem::FingerprintOptions options_for(const toml::table& root, std::string_view method,
                                     std::string_view path) {
  idem::FingerprintOptions options;
  apply_fingerprint_settings(root, "", options);
  const toml::node* routes = root.get("route");
  if (routes == nullptr) return options;
  const toml::array* array = routes->as_array();
  if (array == nullptr) throw UsageError("route: expected [[route]] tables");
  for (std::size_t i = 0; i < array->size(); ++i) {
    const std::string name = "route[" + std::to_string(i) + "]";
    const toml::table* route = array->get(i)->as_table();
    if (route == nullptr) throw UsageError(name + ": expected a table");
    if (route_matches(*route, name + ".", method, path)) {
      apply_fingerprint_settings(*route, name + ".", options);
      break;
    }
  }
  return options;
}

/// --config FILE, read as idem-gateway reads it; errors name the file and the setting.
idem::FingerprintOptions load_options(const std::string& file, std::string_view method,
                                      std::string_view path) {
  const std::string where = "--config " + file + ": ";
  if (std::FILE* f = std::fopen(file.c_str(), "rb")) {
    std::fclose(f);
  } else {
    throw UsageError(where + "cannot read the file: " + std::strerror(errno));
  }
  toml::table root;
  try {
    root = toml::parse_file(file);
  } catch (const toml::parse_error& e) {
    throw UsageError(where + "line " + std::to_string(e.source().begin.line) + ": " +
                     std::string(e.description()));
  }
  try {
    return options_for(root, method, path);
  } catch (const UsageError& e) {
    throw UsageError(where + e.what());
  }
}

int run(const Flags& flags) {
  if (!is_token(flags.method)) throw UsageError("--method: expected an HTTP method such as POST");
  if (flags.target.empty() || flags.target.front() != '/') {
    throw UsageError("--path: expected a path starting with '/' (a query may follow '?')");
  }
  // Owned header storage first, then the views the request is made of.
  std::vector<std::pair<std::string, std::string>> owned;
  if (flags.content_type) owned.emplace_back("Content-Type", *flags.content_type);
  for (const auto& line : flags.headers) {
    auto colon = line.find(':');
    std::string_view name =
        colon == std::string::npos ? "" : std::string_view(line).substr(0, colon);
    if (!is_token(name)) throw UsageError("--header: expected 'Name: value', got '" + line + "'");
    if (flags.content_type && idem::iequals(name, "Content-Type")) {
      throw UsageError("--header: Content-Type is already given by --content-type");
    }
    owned.emplace_back(std::string(name),
                       std::string(trim(std::string_view(line).substr(colon + 1))));
  }
  std::vector<idem::HeaderField> fields;
  for (const auto& [name, value] : owned) fields.push_back({name, value});

  const std::string body = read_body(flags);
  idem::RequestView request{flags.method, flags.target, fields, body, ""};
  idem::FingerprintOptions options;
  if (flags.config) options = load_options(*flags.config, request.method, request.path());
  const idem::Fingerprinter fingerprinter(options);

  std::cout << fingerprinter.canonical_form(request)
            << "fingerprint: " << fingerprinter.fingerprint(request).hex() << '\n';
  std::cout.flush();
  return std::cout ? 0 : 1;
}

}  // namespace

void add_fingerprint_command(CLI::App& app, int& exit_code) {
  auto flags = std::make_shared<Flags>();
  CLI::App* command = app.add_subcommand(
      "fingerprint",
      "Print the canonical form of a request and, last, 'fingerprint: <hex>'. The body is "
      "read from --body-file, or from standard input.");
  command->add_option("--method", flags->method, "HTTP method, e.g. POST")->required();
  command->add_option("--path", flags->target, "request target: path, optionally ?query")
      ->required();
  command->add_option("--content-type", flags->content_type, "Content-Type of the body");
  command->add_option("--body-file", flags->body_file, "file holding the body (else stdin)");
  command->add_option("--config", flags->config,
                      "idem TOML config: its fingerprint_* settings and matching [[route]]");
  command->add_option("--header", flags->headers, "'Name: value', may repeat")->take_all();
  command->callback([flags, &exit_code] { exit_code = run(*flags); });
}

}  // namespace idemctl
