// Translation between Boost.Beast messages and the engine, and the synchronous flow. The
// coroutine flow is a template in idem/beast.hpp, built on the same pieces.

#include "idem/beast.hpp"

namespace idem::beast {

namespace {

std::string_view sv(boost::beast::string_view s) noexcept { return {s.data(), s.size()}; }

}  // namespace

RequestView RequestFields::view(const Request& request, std::string_view peer) {
  std::size_t count = 0;
  spill_.clear();
  for (const auto& field : request) {
    HeaderField f{sv(field.name_string()), sv(field.value())};
    if (count < inline_.size()) {
      inline_[count] = f;
    } else {
      if (spill_.empty()) spill_.assign(inline_.begin(), inline_.end());
      spill_.push_back(f);
    }
    ++count;
  }
  RequestView view;
  view.method = sv(request.method_string());
  view.target = sv(request.target());
  view.headers = spill_.empty() ? std::span<const HeaderField>(inline_.data(), count)
                                : std::span<const HeaderField>(spill_);
  view.body = request.body();
  view.peer_address = normalize_peer(peer);
  return view;
}

Response to_beast(idem::Response answer, const Request& request) {
  Response response{static_cast<http::status>(answer.status), request.version()};
  for (auto& [name, value] : answer.headers) {
    // Framing and Date belong to this hop; the engine's answers carry neither, but a
    // stored response from an older version might.
    if (iequals(name, "Content-Length") || iequals(name, "Date")) continue;
    response.insert(name, value);
  }
  response.set(http::field::date, http_date());
  response.body() = std::move(answer.body);
  response.keep_alive(request.keep_alive());
  response.prepare_payload();
  return response;
}

idem::Response to_idem(const Response& response) {
  idem::Response out;
  out.status = static_cast<int>(response.result_int());
  for (const auto& field : response) {
    out.headers.emplace_back(sv(field.name_string()), sv(field.value()));
  }
  out.body = response.body();
  return out;
}

void prepare_original(Response& response, const Policy& policy) {
  response.erase(policy.replay_header);
}

Guard::Guard(std::shared_ptr<Engine> engine, Options options)
    : engine_(std::move(engine)),
      keeper_(std::make_shared<LeaseKeeper>(engine_, std::move(options.scheduler))) {}

Response Guard::run(const Request& request, std::string_view peer, HandlerRef handler) const {
  Decision decision;
  {
    RequestFields fields;
    decision = begin_and_wait(*engine_, fields.view(request, peer));
  }
  switch (decision.action) {
    case Decision::Action::respond:
      return to_beast(std::move(decision.response), request);
    case Decision::Action::pass_through:
      return handler(request);
    case Decision::Action::proceed:
      break;
  }
  Ticket ticket = std::move(*decision.ticket);
  std::optional<Response> response;
  {
    auto hold = keeper_->hold(ticket);
    try {
      response.emplace(handler(request));
    } catch (...) {
      hold.release();
      // Wait for the record to go, so the client's retry executes rather than meeting 409.
      (void)abandon_and_wait(*engine_, std::move(ticket));
      throw;
    }
  }
  prepare_original(*response, ticket.policy());
  // Answer once the store has the response, so that an immediate retry is replayed.
  (void)complete_and_wait(*engine_, std::move(ticket), to_idem(*response));
  return std::move(*response);
}

}  // namespace idem::beast
