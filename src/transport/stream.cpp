// SPDX-License-Identifier: MIT
#include "transport/stream.hpp"

#include <asio/connect.hpp>
#include <asio/experimental/awaitable_operators.hpp>
#include <asio/ssl/host_name_verification.hpp>
#include <asio/steady_timer.hpp>
#include <asio/this_coro.hpp>
#include <asio/write.hpp>

#include <sys/stat.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

namespace claudemesh::transport {
namespace {

using namespace asio::experimental::awaitable_operators;

template <class F>
decltype(auto) visit_lowest(std::variant<Tcp::socket, std::unique_ptr<TlsStream>, UnixSocket::socket>& socket, F&& f) {
  return std::visit(
      [&](auto& s) -> decltype(auto) {
        using T = std::decay_t<decltype(s)>;
        if constexpr (std::is_same_v<T, std::unique_ptr<TlsStream>>) {
          return f(s->lowest_layer());
        } else {
          return f(s);
        }
      },
      socket);
}

Error io_error(const std::string& what, const std::error_code& ec) {
  return Error(Errc::io_error, what + ": " + ec.message());
}

// Is something accepting on this Unix socket path? (A synchronous probe: it runs once, at startup.)
bool unix_socket_is_live(const std::filesystem::path& path) {
  const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  const auto& native = path.native();
  std::copy(native.begin(), native.end(), addr.sun_path);
  const bool live = ::connect(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) == 0;
  ::close(fd);
  return live;
}

}  // namespace

Stream::Stream(Tcp::socket socket) : socket_(std::move(socket)) {}
Stream::Stream(std::unique_ptr<TlsStream> tls) : socket_(std::move(tls)) {}
Stream::Stream(UnixSocket::socket socket) : socket_(std::move(socket)) {}
Stream::~Stream() = default;

asio::any_io_executor Stream::get_executor() {
  return visit_lowest(socket_, [](auto& s) -> asio::any_io_executor { return s.get_executor(); });
}

asio::awaitable<std::pair<std::error_code, std::size_t>> Stream::read_some(asio::mutable_buffer buffer) {
  auto [ec, n] = co_await std::visit(
      [&](auto& s) {
        using T = std::decay_t<decltype(s)>;
        if constexpr (std::is_same_v<T, std::unique_ptr<TlsStream>>) {
          return s->async_read_some(buffer, use_tuple);
        } else {
          return s.async_read_some(buffer, use_tuple);
        }
      },
      socket_);
  co_return std::pair{ec, n};
}

asio::awaitable<std::error_code> Stream::wait_readable() {
  if (is_tls()) co_return std::error_code{};
  auto [ec] = co_await visit_lowest(socket_, [](auto& s) { return s.async_wait(asio::socket_base::wait_read, use_tuple); });
  co_return ec;
}

std::pair<std::error_code, std::size_t> Stream::try_read(asio::mutable_buffer buffer) {
  return std::visit(
      [&](auto& s) -> std::pair<std::error_code, std::size_t> {
        using T = std::decay_t<decltype(s)>;
        if constexpr (std::is_same_v<T, std::unique_ptr<TlsStream>>) {
          return {asio::error::operation_not_supported, 0};
        } else {
          std::error_code ec;
          if (!s.non_blocking()) s.non_blocking(true, ec);
          const std::size_t n = s.read_some(buffer, ec);
          return {ec, n};
        }
      },
      socket_);
}

asio::awaitable<std::error_code> Stream::write(std::span<const asio::const_buffer> buffers) {
  auto [ec, n] = co_await std::visit(
      [&](auto& s) {
        using T = std::decay_t<decltype(s)>;
        if constexpr (std::is_same_v<T, std::unique_ptr<TlsStream>>) {
          return asio::async_write(*s, buffers, use_tuple);
        } else {
          return asio::async_write(s, buffers, use_tuple);
        }
      },
      socket_);
  (void)n;
  co_return ec;
}

asio::awaitable<std::error_code> Stream::write(asio::const_buffer buffer) {
  co_return co_await write(std::span<const asio::const_buffer>(&buffer, 1));
}

asio::awaitable<std::error_code> Stream::handshake(asio::ssl::stream_base::handshake_type type) {
  auto* tls = std::get_if<std::unique_ptr<TlsStream>>(&socket_);
  if (!tls) co_return std::error_code{};
  auto [ec] = co_await (*tls)->async_handshake(type, use_tuple);
  co_return ec;
}

// close() and shutdown_send() are noexcept, so they dispatch with get_if rather than std::visit (which may
// throw bad_variant_access).
template <class F>
void for_each_socket(std::variant<Tcp::socket, std::unique_ptr<TlsStream>, UnixSocket::socket>& socket, F f) noexcept {
  if (auto* tcp = std::get_if<Tcp::socket>(&socket)) {
    f(*tcp);
  } else if (auto* tls = std::get_if<std::unique_ptr<TlsStream>>(&socket); tls && *tls) {
    f((*tls)->lowest_layer());
  } else if (auto* local = std::get_if<UnixSocket::socket>(&socket)) {
    f(*local);
  }
}

void Stream::close() noexcept {
  for_each_socket(socket_, [](auto& s) noexcept {
    std::error_code ignored;
    s.shutdown(asio::socket_base::shutdown_both, ignored);
    s.close(ignored);
  });
}

void Stream::shutdown_send() noexcept {
  for_each_socket(socket_, [](auto& s) noexcept {
    std::error_code ignored;
    s.shutdown(asio::socket_base::shutdown_send, ignored);
  });
}

asio::awaitable<void> Stream::graceful_close() {
  if (auto* tls = std::get_if<std::unique_ptr<TlsStream>>(&socket_)) {
    // close_notify; the peer may never answer it, so callers bound this with their own timer.
    co_await (*tls)->async_shutdown(use_tuple);
  } else {
    visit_lowest(socket_, [](auto& s) {
      std::error_code ignored;
      s.shutdown(asio::socket_base::shutdown_send, ignored);
    });
  }
  close();
}

bool Stream::is_open() const {
  return std::visit(
      [](const auto& s) {
        using T = std::decay_t<decltype(s)>;
        if constexpr (std::is_same_v<T, std::unique_ptr<TlsStream>>) {
          return s->lowest_layer().is_open();
        } else {
          return s.is_open();
        }
      },
      socket_);
}

std::string Stream::peer_description() const {
  if (is_unix()) return "unix";
  const Tcp::socket& tcp = std::holds_alternative<Tcp::socket>(socket_)
                               ? std::get<Tcp::socket>(socket_)
                               : std::get<std::unique_ptr<TlsStream>>(socket_)->next_layer();
  std::error_code ec;
  const auto endpoint = tcp.remote_endpoint(ec);
  if (ec) return "unknown";
  const auto address = endpoint.address();
  const auto host = address.is_v6() ? "[" + address.to_string() + "]" : address.to_string();
  return host + ":" + std::to_string(endpoint.port());
}

// ---- TLS contexts ----

Result<std::shared_ptr<asio::ssl::context>> make_server_tls_context(const TlsServerConfig& config) {
  auto context = std::make_shared<asio::ssl::context>(asio::ssl::context::tls_server);
  context->set_options(asio::ssl::context::default_workarounds | asio::ssl::context::no_sslv2 |
                       asio::ssl::context::no_sslv3 | asio::ssl::context::no_tlsv1 | asio::ssl::context::no_tlsv1_1 |
                       asio::ssl::context::single_dh_use);
  std::error_code ec;
  context->use_certificate_chain_file(config.certificate_chain.string(), ec);
  if (ec) return fail(io_error("TLS certificate " + config.certificate_chain.string(), ec));
  context->use_private_key_file(config.private_key.string(), asio::ssl::context::pem, ec);
  if (ec) return fail(io_error("TLS private key " + config.private_key.string(), ec));
  return context;
}

Result<std::shared_ptr<asio::ssl::context>> make_client_tls_context(const TlsClientConfig& config) {
  auto context = std::make_shared<asio::ssl::context>(asio::ssl::context::tls_client);
  context->set_options(asio::ssl::context::default_workarounds | asio::ssl::context::no_sslv2 |
                       asio::ssl::context::no_sslv3 | asio::ssl::context::no_tlsv1 | asio::ssl::context::no_tlsv1_1);
  std::error_code ec;
  context->set_default_verify_paths(ec);
  if (ec) return fail(io_error("TLS system trust store", ec));
  if (!config.ca_file.empty()) {
    context->load_verify_file(config.ca_file.string(), ec);
    if (ec) return fail(io_error("TLS CA file " + config.ca_file.string(), ec));
  }
  context->set_verify_mode(config.verify_peer ? asio::ssl::verify_peer : asio::ssl::verify_none);
  return context;
}

// ---- Listener ----

Result<Listener> Listener::listen_tcp(const asio::any_io_executor& executor, const std::string& host, std::uint16_t port,
                                      std::shared_ptr<asio::ssl::context> tls) {
  std::error_code ec;
  const auto address = asio::ip::make_address(host, ec);
  if (ec) return fail(Errc::invalid_value, "listen address '" + host + "' is not an IP address");
  Listener listener;
  listener.tcp_ = std::make_unique<Tcp::acceptor>(executor);
  const Tcp::endpoint endpoint(address, port);
  auto& acceptor = *listener.tcp_;
  if (acceptor.open(endpoint.protocol(), ec); ec) return fail(io_error("socket", ec));
  if (acceptor.set_option(asio::socket_base::reuse_address(true), ec); ec) return fail(io_error("SO_REUSEADDR", ec));
  if (acceptor.bind(endpoint, ec); ec) return fail(io_error("bind " + host + ":" + std::to_string(port), ec));
  if (acceptor.listen(asio::socket_base::max_listen_connections, ec); ec) return fail(io_error("listen", ec));
  listener.tls_ = std::move(tls);
  return listener;
}

Result<Listener> Listener::listen_unix(const asio::any_io_executor& executor, const std::filesystem::path& path) {
  if (path.native().size() >= sizeof(sockaddr_un::sun_path)) {
    return fail(Errc::invalid_value, "unix socket path is too long: " + path.string());
  }
  struct stat st {};
  if (::lstat(path.c_str(), &st) == 0) {
    if (!S_ISSOCK(st.st_mode)) return fail(Errc::io_error, path.string() + " exists and is not a socket");
    if (unix_socket_is_live(path)) {
      return fail(Errc::io_error, path.string() + " is already in use by a running process");
    }
    ::unlink(path.c_str());  // stale: its owner died without cleaning up
  }
  Listener listener;
  listener.unix_ = std::make_unique<UnixSocket::acceptor>(executor);
  auto& acceptor = *listener.unix_;
  std::error_code ec;
  const UnixSocket::endpoint endpoint(path.string());
  if (acceptor.open(endpoint.protocol(), ec); ec) return fail(io_error("socket", ec));
  if (acceptor.bind(endpoint, ec); ec) return fail(io_error("bind " + path.string(), ec));
  // chmod before listen(): nobody can connect to a socket that is not listening yet, so there is no
  // window in which the socket is reachable with the umask's wider mode.
  if (::chmod(path.c_str(), 0600) != 0) {
    ::unlink(path.c_str());
    return fail(Errc::io_error, "cannot chmod " + path.string());
  }
  if (acceptor.listen(asio::socket_base::max_listen_connections, ec); ec) {
    ::unlink(path.c_str());
    return fail(io_error("listen", ec));
  }
  listener.unix_path_ = path;
  return listener;
}

Listener::~Listener() {
  close();
}

void Listener::close() noexcept {
  std::error_code ignored;
  if (tcp_) tcp_->close(ignored);
  if (unix_ && unix_->is_open()) {
    unix_->close(ignored);
    if (!unix_path_.empty()) ::unlink(unix_path_.c_str());
  }
}

std::uint16_t Listener::port() const noexcept {
  if (!tcp_) return 0;
  std::error_code ec;
  return tcp_->local_endpoint(ec).port();
}

asio::awaitable<std::pair<std::error_code, std::unique_ptr<Stream>>> Listener::accept() {
  if (unix_) {
    auto [ec, socket] = co_await unix_->async_accept(use_tuple);
    if (ec) co_return std::pair{ec, std::unique_ptr<Stream>{}};
    co_return std::pair{ec, std::make_unique<Stream>(std::move(socket))};
  }
  auto [ec, socket] = co_await tcp_->async_accept(use_tuple);
  if (ec) co_return std::pair{ec, std::unique_ptr<Stream>{}};
  std::error_code ignored;
  socket.set_option(Tcp::no_delay(true), ignored);
  if (tls_) co_return std::pair{ec, std::make_unique<Stream>(std::make_unique<TlsStream>(std::move(socket), *tls_))};
  co_return std::pair{ec, std::make_unique<Stream>(std::move(socket))};
}

// ---- connecting ----

namespace {

asio::awaitable<Result<Tcp::socket>> resolve_and_connect(std::string host, std::uint16_t port) {
  auto executor = co_await asio::this_coro::executor;
  Tcp::resolver resolver(executor);
  auto [resolve_ec, endpoints] = co_await resolver.async_resolve(host, std::to_string(port), use_tuple);
  if (resolve_ec) co_return fail(io_error("resolve " + host, resolve_ec));
  // Each endpoint in turn, opening the socket ourselves: asio's range connect reports a failed open
  // (EMFILE when descriptors run out) as "operation aborted", which hides the cause.
  std::error_code last_ec = asio::error::host_not_found;
  for (const auto& entry : endpoints) {
    Tcp::socket socket(executor);
    socket.open(entry.endpoint().protocol(), last_ec);
    if (last_ec) continue;
    auto [connect_ec] = co_await socket.async_connect(entry.endpoint(), use_tuple);
    last_ec = connect_ec;
    if (connect_ec) continue;
    std::error_code ignored;
    socket.set_option(Tcp::no_delay(true), ignored);
    co_return std::move(socket);
  }
  co_return fail(io_error("connect " + host + ":" + std::to_string(port), last_ec));
}

asio::awaitable<Result<std::unique_ptr<Stream>>> connect_tcp_untimed(std::string host, std::uint16_t port,
                                                                     std::shared_ptr<asio::ssl::context> tls) {
  auto socket = co_await resolve_and_connect(host, port);
  if (!socket) co_return fail(socket.error());
  if (!tls) co_return std::make_unique<Stream>(std::move(*socket));
  auto tls_stream = std::make_unique<TlsStream>(std::move(*socket), *tls);
  // SSL_set_tlsext_host_name, spelled out: the macro hides a C-style cast.
  if (SSL_ctrl(tls_stream->native_handle(), SSL_CTRL_SET_TLSEXT_HOSTNAME, TLSEXT_NAMETYPE_host_name,
               const_cast<char*>(host.c_str())) != 1) {
    co_return fail(Errc::io_error, "cannot set TLS server name");
  }
  tls_stream->set_verify_callback(asio::ssl::host_name_verification(host));
  auto stream = std::make_unique<Stream>(std::move(tls_stream));
  if (auto ec = co_await stream->handshake(asio::ssl::stream_base::client); ec) {
    co_return fail(io_error("TLS handshake with " + host, ec));
  }
  co_return stream;
}

asio::awaitable<Result<std::unique_ptr<Stream>>> connect_unix_untimed(std::filesystem::path path) {
  auto executor = co_await asio::this_coro::executor;
  UnixSocket::socket socket(executor);
  auto [ec] = co_await socket.async_connect(UnixSocket::endpoint(path.string()), use_tuple);
  if (ec) co_return fail(io_error("connect " + path.string(), ec));
  co_return std::make_unique<Stream>(std::move(socket));
}

template <class T>
asio::awaitable<Result<T>> with_timeout(asio::awaitable<Result<T>> operation, std::chrono::milliseconds timeout,
                                        std::string what) {
  asio::steady_timer timer(co_await asio::this_coro::executor, timeout);
  auto winner = co_await (std::move(operation) || timer.async_wait(use_tuple));
  if (winner.index() == 0) co_return std::move(std::get<0>(winner));
  co_return fail(Errc::io_error, what + " timed out after " + std::to_string(timeout.count()) + " ms");
}

}  // namespace

asio::awaitable<Result<std::unique_ptr<Stream>>> connect_tcp(std::string host, std::uint16_t port,
                                                             std::shared_ptr<asio::ssl::context> tls,
                                                             std::chrono::milliseconds timeout) {
  std::string what = "connect to " + host + ":" + std::to_string(port);
  co_return co_await with_timeout(connect_tcp_untimed(std::move(host), port, std::move(tls)), timeout,
                                  std::move(what));
}

asio::awaitable<Result<std::unique_ptr<Stream>>> connect_unix(std::filesystem::path path,
                                                              std::chrono::milliseconds timeout) {
  std::string what = "connect to " + path.string();
  co_return co_await with_timeout(connect_unix_untimed(std::move(path)), timeout, std::move(what));
}

}  // namespace claudemesh::transport
