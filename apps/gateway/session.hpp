#pragma once

// One client connection: reads requests, asks the engine what to do with each, and either
// answers (replay, problem) or forwards to the upstream and streams the answer back.
//
// Requests on a connection are handled one at a time, so pipelined requests are answered
// in order. The upstream exchange never depends on the client: a client that goes away
// while the upstream works only stops the writes; the response is still read whole and
// handed to the engine, so that the client's retry is replayed.
//
// The class is defined in three files, one per side of the exchange: session.cpp (the
// connection, reading requests, the engine's decision), session_upstream.cpp (forwarding
// and the upstream's response head) and session_response.cpp (answers, the streamed
// response body, completion). Only start_session() (listener.hpp) is used elsewhere.

#include <boost/asio/write.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <optional>

#include "listener.hpp"

namespace idem::gateway::session_detail {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;
using boost::system::error_code;
using Clock = std::chrono::steady_clock;

constexpr std::size_t kUpstreamHeaderLimit = 64 * 1024;
constexpr std::size_t kFirstReadSize = 8 * 1024;
constexpr std::size_t kBodyReadSize = 64 * 1024;
constexpr std::size_t kRetainedBytes = 64 * 1024;  ///< larger buffers are freed after use
constexpr auto kLingerTime = std::chrono::seconds(2);

constexpr SteadyTime kNever = SteadyTime::max();

/// A reused keep-alive connection that the upstream closed before reading our request
/// fails in one of these ways; the request was not processed, so it may be resent.
inline bool is_stale_connection(const error_code& ec) {
  return ec == http::error::end_of_stream || ec == asio::error::eof ||
         ec == asio::error::connection_reset || ec == asio::error::broken_pipe ||
         ec == asio::error::connection_aborted || ec == http::error::partial_message;
}

/// Writes `buffers` at once if the socket takes them (the common case: a response fits
/// the send buffer), calling `done` inline; else writes the rest asynchronously. Saves a
/// posted completion and a turn of the event loop per write. The socket is non-blocking.
template <class Stream, class Buffers, class Done>
void write_now_or_later(Stream& stream, const Buffers& buffers, Done&& done) {
  error_code ec;
  std::size_t total = asio::buffer_size(buffers);
  std::size_t n = total == 0 ? 0 : stream.write_some(buffers, ec);
  if (!ec && n == total) return done(ec, n);
  if (ec && ec != asio::error::would_block && ec != asio::error::try_again) return done(ec, n);
  beast::buffers_suffix<Buffers> rest(buffers);
  rest.consume(n);
  asio::async_write(stream, rest,
                    [done = std::forward<Done>(done), n](error_code ec, std::size_t m) mutable {
                      done(ec, n + m);
                    });
}

template <class T>
void release_if_large(T& buffer) {
  if (buffer.capacity() > kRetainedBytes) T().swap(buffer);
}

class Session final : public SessionBase, public std::enable_shared_from_this<Session> {
 public:
  Session(Worker& worker, Socket socket);
  ~Session() override;

  void start() { await_request(); }

  void on_drain() override;
  void abort() override;
  void on_tick(SteadyTime now) override;

 private:
  enum class Phase { idle, reading, handling, closed };

  const Timeouts& timeouts() const { return worker_.runtime().timeouts; }

  // ---- client: reading requests (session.cpp) ----

  void await_request();
  void on_first_bytes(error_code ec, std::size_t n);
  void read_header();
  void on_header(error_code ec);
  bool normalize_target();
  void read_body();
  void on_body(error_code ec);
  void begin_request();
  void reject_too_large(std::size_t limit);

  static std::string_view path_of(std::string_view target) {
    return target.substr(0, target.find('?'));
  }

  // ---- the engine (session.cpp) ----

  void handle_request();
  void deliver(Decision decision);
  void on_decision(Decision decision);

  // ---- client: whole responses (session_response.cpp) ----

  void send_problem(int status, std::string_view name, std::string_view title,
                    std::string_view detail, bool close, bool linger = false);
  void write_response(Response response, bool close, bool linger);
  void end_request();
  void close_client();
  void linger_close();
  void drain_input();

  // ---- upstream: forwarding (session_upstream.cpp) ----

  void forward();
  void connect_upstream();
  void on_upstream_connected(error_code ec);
  void send_upstream(bool reused);
  void upstream_failed_or_retry(error_code ec);
  void read_upstream_header();
  void read_upstream_head_now();
  void on_upstream_header(error_code ec);
  void upstream_failed(UpstreamError why, error_code ec);
  void answer_upstream_failure();

  // ---- the response body: upstream reader and client writer, decoupled ----
  // (session_response.cpp)
  //
  // The reader appends the upstream's body to segments (pieces of Worker::kPieceSize) and
  // the writer sends them on at the client's pace. The reader runs ahead of the writer by
  // up to `window_` bytes: the whole captured response for a keyed request (so a slow
  // client never holds its record in flight), a few pieces otherwise (bounded memory).
  // The end of the response (its last bytes, or the chunked terminator) goes to the
  // client only once the store has the record, so that a client that has its whole answer
  // and retries at once is replayed, never told the request is still in flight.

  static constexpr std::size_t kStreamWindow = 2 * Worker::kPieceSize;

  void start_body();
  void read_upstream_body();
  void on_upstream_body(error_code ec);
  void body_done();
  void pump_client();
  void on_client_written(error_code ec);
  void drop_sent_segments();
  void maybe_end();
  void release_segments();
  void complete_ticket();
  void count_completion(const Result<Completion>& result);
  void on_completed();

  // ---- lease renewal (session_response.cpp) ----

  void renew_lease();

  // ---- deadlines, checked by on_tick ----

  void client_deadline(Duration d) {
    client_deadline_ = worker_.now() + d;
    client_timed_out_ = false;
  }

  void up_deadline(Duration d) {
    up_deadline_ = worker_.now() + d;
    up_timed_out_ = false;
  }

  // Client side.
  Socket stream_;
  beast::flat_buffer buffer_;
  std::string peer_;
  std::optional<http::request_parser<http::string_body>> parser_;
  std::vector<HeaderField> view_headers_;
  std::string type_base_;
  std::string head_;      ///< the response head being written to the client
  std::string body_out_;  ///< the body of a whole response being written
  char chunk_line_[24] = {};
  Phase phase_ = Phase::idle;
  bool keep_alive_ = true;
  bool http11_ = true;
  bool is_head_ = false;
  bool close_after_ = false;
  bool client_gone_ = false;
  bool counted_ = false;
  SteadyTime client_deadline_ = kNever;  ///< the pending client operation's, for on_tick
  bool client_timed_out_ = false;

  // The engine.
  std::shared_ptr<Engine> engine_;
  std::shared_ptr<Session> self_;
  std::optional<Decision> inline_decision_;
  std::optional<Ticket> ticket_;
  bool in_begin_ = false;
  bool in_complete_ = false;
  bool completed_inline_ = false;
  Clock::time_point completion_started_{};
  Clock::time_point begin_time_{};
  SteadyTime renew_at_ = kNever;

  // Upstream side.
  std::unique_ptr<UpstreamConnection> up_;
  std::optional<http::response_parser<http::buffer_body>> up_parser_;
  std::string up_head_;
  std::vector<std::unique_ptr<char[]>> segs_;  ///< the response body, see start_body()
  std::size_t seg_base_ = 0;                   ///< offset in the body of segs_.front()
  std::size_t received_ = 0;                   ///< body bytes read from the upstream
  std::size_t sent_ = 0;                       ///< body bytes written to the client
  std::size_t window_ = 0;
  std::size_t read_size_ = 0;
  std::size_t write_size_ = 0;
  std::array<asio::const_buffer, 16> out_buffers_;
  bool reading_ = false;
  bool writing_ = false;
  bool write_final_ = false;
  bool final_sent_ = false;
  bool upstream_done_ = false;
  bool upstream_error_ = false;   ///< the exchange failed: read no further
  bool upstream_broken_ = false;  ///< ...and the client's response is to be cut short
  bool in_abandon_ = false;
  bool abandoned_inline_ = false;
  UpstreamError failure_ = UpstreamError::reset;
  bool stored_ = true;
  Response captured_;
  Clock::time_point forward_time_{};
  bool reused_ = false;
  bool retried_ = false;
  bool capture_ = false;
  bool body_complete_ = true;
  bool chunked_out_ = false;
  bool head_pending_ = false;
  SteadyTime up_deadline_ = kNever;
  bool up_timed_out_ = false;
  bool response_started_ = false;  ///< some of the upstream's response went to the client
};

}  // namespace idem::gateway::session_detail
