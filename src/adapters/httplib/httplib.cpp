// Translation between cpp-httplib messages and the engine, and the blocking flow that
// suits its thread-per-connection server.

#include "idem/httplib.hpp"

#include <array>
#include <optional>
#include <vector>

namespace idem::httplib {

namespace {

/// The engine's view of a request; the header list lives in this object.
class RequestFields {
 public:
  RequestView view(const ::httplib::Request& request) {
    std::size_t count = 0;
    for (const auto& [name, value] : request.headers) {
      HeaderField f{name, value};
      if (count < inline_.size()) {
        inline_[count] = f;
      } else {
        if (spill_.empty()) spill_.assign(inline_.begin(), inline_.end());
        spill_.push_back(f);
      }
      ++count;
    }
    RequestView view;
    view.method = request.method;
    // The target as sent (query included), as the gateway sees it; `path` is decoded.
    view.target = request.target.empty() ? std::string_view(request.path) : request.target;
    view.headers = spill_.empty() ? std::span<const HeaderField>(inline_.data(), count)
                                  : std::span<const HeaderField>(spill_);
    view.body = request.body;
    view.peer_address = normalize_peer(request.remote_addr);
    return view;
  }

 private:
  std::array<HeaderField, 24> inline_{};  ///< most requests: no allocation
  std::vector<HeaderField> spill_;
};

}  // namespace

Captured to_idem(const ::httplib::Response& response) {
  Captured out;
  // cpp-httplib sends 200 for a handler that set no status.
  out.response.status = response.status == -1 ? 200 : response.status;
  out.response.headers.reserve(response.headers.size());
  for (const auto& [name, value] : response.headers) out.response.headers.emplace_back(name, value);
  if (response.content_provider_) {
    out.body_complete = false;
  } else {
    out.response.body = response.body;
  }
  return out;
}

void to_httplib(Response answer, ::httplib::Response& out) {
  out.status = answer.status;
  out.headers.clear();
  for (auto& [name, value] : answer.headers) {
    // cpp-httplib frames the body itself; Date is this answer's own.
    if (iequals(name, "Content-Length") || iequals(name, "Date")) continue;
    out.headers.emplace(std::move(name), std::move(value));
  }
  out.headers.emplace("Date", std::string(http_date()));
  out.body = std::move(answer.body);
}

Guard::Guard(std::shared_ptr<Engine> engine, Options options)
    : engine_(std::move(engine)),
      keeper_(std::make_shared<LeaseKeeper>(engine_, std::move(options.scheduler))) {}

void Guard::handle(const ::httplib::Request& request, ::httplib::Response& response,
                   const Handler& handler) const {
  Decision decision;
  {
    RequestFields fields;
    decision = begin_and_wait(*engine_, fields.view(request));
  }
  switch (decision.action) {
    case Decision::Action::respond:
      return to_httplib(std::move(decision.response), response);
    case Decision::Action::pass_through:
      return handler(request, response);
    case Decision::Action::proceed:
      break;
  }
  Ticket ticket = std::move(*decision.ticket);
  {
    auto hold = keeper_->hold(ticket);
    try {
      handler(request, response);
    } catch (...) {
      hold.release();
      // Wait for the record to go, so the client's retry executes rather than meeting 409.
      (void)abandon_and_wait(*engine_, std::move(ticket));
      throw;
    }
  }
  // Only replays carry the replay mark, whatever the handler set.
  response.headers.erase(ticket.policy().replay_header);
  Captured captured = to_idem(response);
  // Return (and so answer) once the store has the response, so an immediate retry is
  // replayed rather than told the request is still in flight.
  (void)complete_and_wait(*engine_, std::move(ticket), captured.response, captured.body_complete);
}

Handler Guard::wrap(Handler handler) const {
  return [guard = *this, handler = std::move(handler)](const ::httplib::Request& request,
                                                       ::httplib::Response& response) {
    guard.handle(request, response, handler);
  };
}

Handler wrap(std::shared_ptr<Engine> engine, Handler handler, Options options) {
  return Guard(std::move(engine), std::move(options)).wrap(std::move(handler));
}

Routes& Routes::Post(const std::string& pattern, Handler handler) {
  server_->Post(pattern, guard_.wrap(std::move(handler)));
  return *this;
}

Routes& Routes::Put(const std::string& pattern, Handler handler) {
  server_->Put(pattern, guard_.wrap(std::move(handler)));
  return *this;
}

Routes& Routes::Patch(const std::string& pattern, Handler handler) {
  server_->Patch(pattern, guard_.wrap(std::move(handler)));
  return *this;
}

Routes& Routes::Delete(const std::string& pattern, Handler handler) {
  server_->Delete(pattern, guard_.wrap(std::move(handler)));
  return *this;
}

Routes protect(::httplib::Server& server, std::shared_ptr<Engine> engine, Options options) {
  return Routes(server, Guard(std::move(engine), std::move(options)));
}

}  // namespace idem::httplib
