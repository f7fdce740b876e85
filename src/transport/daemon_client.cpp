// SPDX-License-Identifier: MIT
// DaemonClient: the blocking IPC client (include/claudemesh/daemon_client.hpp) over HttpClient, on an
// io_context of its own that each call runs until its answer.
#include <claudemesh/daemon_client.hpp>

#include "transport/http/client.hpp"
#include "transport/sse/sse.hpp"
#include "transport/stream.hpp"

#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/io_context.hpp>
#include <asio/steady_timer.hpp>

#include <nlohmann/json.hpp>

#include <optional>

namespace claudemesh {
namespace {

namespace http = transport::http;
namespace sse = transport::sse;
using Json = nlohmann::json;

// An answer larger than this is refused as malformed (an inbox page of 1000 long messages fits easily).
constexpr std::size_t max_reply_bytes = std::size_t{64} << 20;
// How much of a refused event stream's body is kept for its error message.
constexpr std::size_t max_refusal_bytes = std::size_t{64} << 10;

// The part of an answer's `error` object named `field`, or empty.
std::string error_field(const std::string& body, const char* field) {
  const Json doc = Json::parse(body, nullptr, false);
  if (doc.is_discarded() || !doc.is_object()) return {};
  const auto error = doc.find("error");
  if (error == doc.end()) return {};
  if (error->is_string() && std::string_view(field) == "message") return error->get<std::string>();
  if (!error->is_object()) return {};
  const auto value = error->find(field);
  return value != error->end() && value->is_string() ? value->get<std::string>() : std::string();
}

std::string one_line(std::string_view text, std::size_t max) {
  std::string out;
  for (const char c : text.substr(0, max)) out += (c == '\n' || c == '\r') ? ' ' : c;
  return out;
}

asio::awaitable<Result<http::HttpResponse>> exchange(http::HttpClient& client, http::HttpRequest request) {
  co_return co_await client.request(std::move(request));
}

struct StreamState {
  sse::SseParser parser;
  std::vector<sse::SseEvent> batch;
  std::string refusal_body;  // the body of an answer that is not an event stream
  std::optional<Error> failure;
  bool stopped_by_caller = false;
  bool limit_passed = false;
};

asio::awaitable<Result<http::HttpResponse>> stream(http::HttpClient& client, http::HttpRequest request,
                                                   std::function<bool(std::string_view)> on_body) {
  co_return co_await client.stream(std::move(request), std::move(on_body));
}

asio::awaitable<void> close_after(http::HttpClient& client, asio::steady_timer& timer, StreamState& state) {
  auto [ec] = co_await timer.async_wait(transport::use_tuple);
  if (ec) co_return;  // cancelled: the stream ended first
  state.limit_passed = true;
  client.close();
}

}  // namespace

std::string DaemonReply::error_code() const {
  std::string code = error_field(body, "code");
  return code.empty() ? "http_" + std::to_string(status) : code;
}

std::string DaemonReply::error_message() const {
  std::string message = error_field(body, "message");
  if (!message.empty()) return message;
  return "the daemon answered " + std::to_string(status) + (body.empty() ? std::string() : ": " + one_line(body, 200));
}

struct DaemonClient::Impl {
  DaemonEndpoint endpoint;
  std::chrono::milliseconds timeout;
  std::unique_ptr<asio::io_context> io = std::make_unique<asio::io_context>();
  std::unique_ptr<http::HttpClient> client;

  http::HttpClient& http_client() {
    if (!client) {
      http::ClientEndpoint where;
      if (!endpoint.socket.empty()) {
        where.unix_path = endpoint.socket;
      } else {
        where.host = endpoint.tcp_host;
        where.port = endpoint.tcp_port;
      }
      http::ClientConfig config;
      config.connect_timeout = timeout;
      config.request_timeout = timeout;
      config.limits.max_body_bytes = max_reply_bytes;
      client = std::make_unique<http::HttpClient>(io->get_executor(), std::move(where), config);
    }
    return *client;
  }

  http::HttpRequest request(std::string_view method, std::string_view target) const {
    http::HttpRequest request;
    request.method = std::string(method);
    request.target = std::string(target);
    // The daemon accepts only loopback Host values on TCP; the socket does not care.
    request.headers.set("Host", endpoint.socket.empty() ? "localhost:" + std::to_string(endpoint.tcp_port) : "localhost");
    request.headers.set("Accept", "application/json");
    if (!endpoint.socket.empty()) {
      if (!endpoint.session_token.empty()) request.headers.set("Authorization", "ClaudeMesh-Session " + endpoint.session_token);
    } else {
      if (!endpoint.bearer_token.empty()) request.headers.set("Authorization", "Bearer " + endpoint.bearer_token);
      if (!endpoint.session_token.empty()) request.headers.set("ClaudeMesh-Session", endpoint.session_token);
    }
    return request;
  }

  // Run the io_context until `done`, at most `bound`. A call that overstays is cut off by closing the
  // connection; if even that does not finish it, the io_context (and with it the call) is dropped.
  bool run_until(const bool& done, std::chrono::milliseconds bound) {
    io->restart();
    io->run_for(bound);
    if (done) return true;
    if (client) client->close();
    io->restart();
    io->run_for(std::chrono::seconds(1));
    if (done) return true;
    client.reset();
    io = std::make_unique<asio::io_context>();  // destroys the stuck operation without running its handler
    return false;
  }
};

DaemonClient::DaemonClient(DaemonEndpoint endpoint, std::chrono::milliseconds timeout)
    : impl_(std::make_unique<Impl>(Impl{.endpoint = std::move(endpoint), .timeout = timeout})) {}
DaemonClient::DaemonClient(DaemonClient&&) noexcept = default;
DaemonClient& DaemonClient::operator=(DaemonClient&&) noexcept = default;
DaemonClient::~DaemonClient() = default;

const DaemonEndpoint& DaemonClient::endpoint() const noexcept { return impl_->endpoint; }

Result<DaemonReply> DaemonClient::call(std::string_view method, std::string_view target, std::string_view json_body,
                                       const std::vector<std::pair<std::string, std::string>>& headers) {
  http::HttpRequest request = impl_->request(method, target);
  if (!json_body.empty()) {
    request.headers.set("Content-Type", "application/json");
    request.body = std::string(json_body);
  }
  for (const auto& [name, value] : headers) request.headers.set(name, value);

  bool done = false;
  std::optional<Result<http::HttpResponse>> answer;
  asio::co_spawn(*impl_->io, exchange(impl_->http_client(), std::move(request)),
                 [&done, &answer](const std::exception_ptr& error, Result<http::HttpResponse> response) {
                   done = true;
                   if (error) {
                     answer = fail(Errc::internal, "the IPC call failed unexpectedly");
                   } else {
                     answer = std::move(response);
                   }
                 });
  if (!impl_->run_until(done, impl_->timeout + std::chrono::seconds(1))) {
    return fail(Errc::io_error, "the daemon did not answer within " + std::to_string(impl_->timeout.count()) + " ms");
  }
  if (!*answer) {
    const auto where = impl_->endpoint.socket.empty()
                           ? impl_->endpoint.tcp_host + ":" + std::to_string(impl_->endpoint.tcp_port)
                           : impl_->endpoint.socket.string();
    return fail(answer->error(), "daemon at " + where);
  }
  DaemonReply reply;
  reply.status = (*answer)->status;
  if (auto type = (*answer)->headers.get("Content-Type")) reply.content_type = std::string(*type);
  reply.body = std::move((*answer)->body);
  return reply;
}

Result<void> DaemonClient::events(
    std::string_view target, std::string_view last_event_id,
    const std::function<bool(std::string_view event, std::string_view data, std::string_view id)>& on_event,
    std::chrono::milliseconds limit) {
  http::HttpRequest request = impl_->request("GET", target);
  request.headers.set("Accept", "text/event-stream");
  request.headers.set("Cache-Control", "no-cache");
  if (!last_event_id.empty()) request.headers.set("Last-Event-ID", std::string(last_event_id));

  auto& client = impl_->http_client();
  StreamState state;
  asio::steady_timer limit_timer(*impl_->io, limit);
  bool done = false;
  std::optional<Result<http::HttpResponse>> head;

  auto on_body = [&state, &on_event](std::string_view bytes) {
    if (state.refusal_body.size() < max_refusal_bytes) state.refusal_body.append(bytes.substr(0, max_refusal_bytes));
    state.batch.clear();
    if (auto fed = state.parser.feed(bytes, state.batch); !fed) {
      state.failure = fed.error();
      return false;
    }
    for (const auto& event : state.batch) {
      if (!on_event(event.event, event.data, event.id.value_or(std::string()))) {
        state.stopped_by_caller = true;
        return false;
      }
    }
    return true;
  };
  asio::co_spawn(*impl_->io, close_after(client, limit_timer, state), asio::detached);
  asio::co_spawn(*impl_->io, stream(client, std::move(request), on_body),
                 [&](const std::exception_ptr& error, Result<http::HttpResponse> response) {
                   done = true;
                   limit_timer.cancel();
                   if (error) {
                     head = fail(Errc::internal, "the event stream failed unexpectedly");
                   } else {
                     head = std::move(response);
                   }
                 });
  if (!impl_->run_until(done, limit + impl_->timeout + std::chrono::seconds(1))) {
    return fail(Errc::io_error, "the event stream did not stop in time");
  }
  if (state.failure) return fail(*state.failure);
  if (state.stopped_by_caller) return {};
  if (!*head) {
    if (state.limit_passed) return {};
    return fail(head->error(), "daemon event stream");
  }
  const auto content_type = (*head)->headers.get("Content-Type");
  if ((*head)->status != 200 || !content_type || content_type->find("text/event-stream") == std::string_view::npos) {
    DaemonReply refusal{.status = (*head)->status, .content_type = std::string(content_type.value_or("")),
                        .body = std::move(state.refusal_body)};
    return fail(Errc::invalid_value, "the event stream was refused (" + std::to_string(refusal.status) + " " +
                                         refusal.error_code() + "): " + refusal.error_message());
  }
  return {};
}

}  // namespace claudemesh
