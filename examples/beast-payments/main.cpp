// beast-payments: a Boost.Beast coroutine payments API with idem embedded.
//   POST /payments  {"amount": 1000}  -> 201 {"id": "pay_N", ...}; runs once per key
//   GET  /stats     {"executions": N}: how many times the payment handler ran
//
// Headers outside the fingerprint steer the handler: `X-Delay-Ms: 500` (slow: a duplicate
// gets 409 meanwhile), `X-Fail: 1` (throws: no record is left, the retry executes).
// Usage: beast-payments [--port N]   (--port 0 picks a free port)

#include <boost/asio.hpp>
#include <boost/beast.hpp>
#include <cstdlib>
#include <iostream>
#include <string>

#include "idem/beast.hpp"
#include "idem/memory_store.hpp"
#include "idem/record_name.hpp"

namespace asio = boost::asio;
namespace http = boost::beast::http;
using tcp = asio::ip::tcp;
using idem::beast::Request;
using idem::beast::Response;

namespace {

int executions = 0;  // one thread runs the io_context

Response json(const Request& req, http::status status, std::string body) {
  Response res{status, req.version(), std::move(body)};
  res.set(http::field::content_type, "application/json");
  res.keep_alive(req.keep_alive());
  res.prepare_payload();
  return res;
}

/// The application's coroutine handler, exactly as it would be without idem.
asio::awaitable<Response> handle(const Request& req) {
  if (req.method() == http::verb::get && req.target() == "/stats") {
    co_return json(req, http::status::ok, "{\"executions\":" + std::to_string(executions) + "}");
  }
  if (req.method() != http::verb::post || req.target() != "/payments") {
    co_return json(req, http::status::not_found, "{\"error\":\"not found\"}");
  }
  int n = ++executions;
  if (int ms = std::atoi(std::string(req["X-Delay-Ms"]).c_str()); ms > 0) {
    asio::steady_timer timer(co_await asio::this_coro::executor, std::chrono::milliseconds(ms));
    co_await timer.async_wait(asio::use_awaitable);
  }
  if (req["X-Fail"] == "1") throw std::runtime_error("card network down");
  co_return json(req, http::status::created,
                 "{\"id\":\"pay_" + std::to_string(n) + "\",\"request\":" + req.body() + "}");
}

asio::awaitable<void> session(tcp::socket socket, idem::beast::Protected<decltype(&handle)> api) {
  boost::beast::flat_buffer buffer;
  boost::system::error_code ec;
  std::string peer = socket.remote_endpoint(ec).address().to_string();
  for (;;) {
    Request req;
    auto [read_error, n] =
        co_await http::async_read(socket, buffer, req, asio::as_tuple(asio::use_awaitable));
    if (read_error) co_return;
    Response res;
    try {
      res = co_await api(req, peer);
    } catch (const std::exception&) {  // the record is already gone: a retry executes
      res = json(req, http::status::internal_server_error, "{\"error\":\"internal\"}");
    }
    co_await http::async_write(socket, res, asio::as_tuple(asio::use_awaitable));
    if (!res.keep_alive()) co_return;
  }
}

asio::awaitable<void> listen(tcp::acceptor& acceptor,
                             idem::beast::Protected<decltype(&handle)> api) {
  for (;;) {
    tcp::socket socket = co_await acceptor.async_accept(asio::use_awaitable);
    asio::co_spawn(acceptor.get_executor(), session(std::move(socket), api), asio::detached);
  }
}

}  // namespace

int main(int argc, char** argv) {
  auto port = static_cast<unsigned short>(
      argc == 3 && argv[1] == std::string("--port") ? std::atoi(argv[2]) : 8080);
  idem::EngineOptions options;
  options.store = idem::make_memory_store();
  options.secret = idem::RecordNamer::generate_secret();
  auto api = idem::beast::protect(idem::Engine::create(std::move(options)), &handle);

  asio::io_context io;
  tcp::acceptor acceptor(io, {asio::ip::make_address("127.0.0.1"), port});
  std::cout << "listening on 127.0.0.1:" << acceptor.local_endpoint().port() << std::endl;
  asio::co_spawn(io, listen(acceptor, api), asio::detached);
  io.run();
}
