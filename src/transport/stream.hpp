// SPDX-License-Identifier: MIT
// One byte-stream type over TCP, TLS-over-TCP and Unix domain sockets, so every server and client in
// src/transport works on each. Errors are returned as values (std::error_code), never thrown.
//
// Thread safety: distinct objects safe; shared objects unsafe. All calls on the stream's executor.
#pragma once

#include <claudemesh/result.hpp>

#include <asio/awaitable.hpp>
#include <asio/experimental/as_tuple.hpp>
#include <asio/ip/tcp.hpp>
#include <asio/local/stream_protocol.hpp>
#include <asio/ssl.hpp>
#include <asio/use_awaitable.hpp>

#include <chrono>
#include <filesystem>
#include <memory>
#include <span>
#include <string>
#include <variant>

namespace claudemesh::transport {

using Tcp = asio::ip::tcp;
using UnixSocket = asio::local::stream_protocol;
using TlsStream = asio::ssl::stream<Tcp::socket>;

/// Completion token that turns (error_code, result...) into a tuple instead of an exception.
inline constexpr auto use_tuple = asio::experimental::as_tuple(asio::use_awaitable);

/// A connected byte stream.
class Stream {
 public:
  explicit Stream(Tcp::socket socket);
  explicit Stream(std::unique_ptr<TlsStream> tls);
  explicit Stream(UnixSocket::socket socket);
  Stream(Stream&&) noexcept = default;
  Stream& operator=(Stream&&) noexcept = default;
  ~Stream();

  [[nodiscard]] asio::any_io_executor get_executor();

  /// Read at least one byte into `buffer`. Returns asio::error::eof when the peer closed.
  asio::awaitable<std::pair<std::error_code, std::size_t>> read_some(asio::mutable_buffer buffer);
  /// Wait until the socket has data (or an error) without reading it, so an idle connection need not own
  /// a read buffer. Returns at once for TLS streams, whose records are buffered inside OpenSSL.
  asio::awaitable<std::error_code> wait_readable();
  /// Read whatever is available now without suspending (plain streams only; TLS returns
  /// operation_not_supported). asio::error::would_block when nothing is there.
  std::pair<std::error_code, std::size_t> try_read(asio::mutable_buffer buffer);
  /// Write every byte of every buffer, in order.
  asio::awaitable<std::error_code> write(std::span<const asio::const_buffer> buffers);
  asio::awaitable<std::error_code> write(asio::const_buffer buffer);

  /// TLS: perform the server or client handshake. A no-op for plain streams.
  asio::awaitable<std::error_code> handshake(asio::ssl::stream_base::handshake_type type);

  /// Close at once: pending operations complete with operation_aborted. Idempotent.
  void close() noexcept;
  /// Shut down the sending side only (plain streams): the peer reads EOF, we can still read.
  void shutdown_send() noexcept;
  /// Shut down the sending side (TLS: close_notify first, bounded by the caller's timeout), then close.
  asio::awaitable<void> graceful_close();

  [[nodiscard]] bool is_open() const;
  [[nodiscard]] bool is_tls() const noexcept { return std::holds_alternative<std::unique_ptr<TlsStream>>(socket_); }
  [[nodiscard]] bool is_unix() const noexcept { return std::holds_alternative<UnixSocket::socket>(socket_); }
  /// "127.0.0.1:4321", "[::1]:4321" or "unix" — for logs.
  [[nodiscard]] std::string peer_description() const;

 private:
  std::variant<Tcp::socket, std::unique_ptr<TlsStream>, UnixSocket::socket> socket_;
};

/// TLS settings for servers (certificate + key) and clients (verification on by default).
struct TlsServerConfig {
  std::filesystem::path certificate_chain;  ///< PEM
  std::filesystem::path private_key;        ///< PEM
};
struct TlsClientConfig {
  bool verify_peer = true;                  ///< never turn off outside tests
  std::filesystem::path ca_file;            ///< extra trust anchor (self-hosted brokers); empty: system store only
};
Result<std::shared_ptr<asio::ssl::context>> make_server_tls_context(const TlsServerConfig& config);
Result<std::shared_ptr<asio::ssl::context>> make_client_tls_context(const TlsClientConfig& config);

/// Accepts connections on TCP or a Unix socket, optionally wrapping them in TLS (the handshake is left to
/// the caller, so a slow handshake never blocks the accept loop).
class Listener {
 public:
  /// Listen on host:port (port 0 picks a free port; see `port()`).
  static Result<Listener> listen_tcp(const asio::any_io_executor& executor, const std::string& host, std::uint16_t port,
                                     std::shared_ptr<asio::ssl::context> tls = nullptr);
  /// Listen on a Unix socket with mode 0600. A stale socket file (nothing accepts on it) is replaced; a
  /// live one is never stolen (`Errc::io_error`, "already in use").
  static Result<Listener> listen_unix(const asio::any_io_executor& executor, const std::filesystem::path& path);

  Listener(Listener&&) noexcept = default;
  Listener& operator=(Listener&&) noexcept = default;
  ~Listener();

  /// The next connection. operation_aborted after close().
  asio::awaitable<std::pair<std::error_code, std::unique_ptr<Stream>>> accept();
  void close() noexcept;
  [[nodiscard]] std::uint16_t port() const noexcept;  ///< TCP only
  [[nodiscard]] const std::filesystem::path& unix_path() const noexcept { return unix_path_; }
  [[nodiscard]] bool is_tls() const noexcept { return tls_ != nullptr; }

 private:
  Listener() = default;
  std::unique_ptr<Tcp::acceptor> tcp_;
  std::unique_ptr<UnixSocket::acceptor> unix_;
  std::shared_ptr<asio::ssl::context> tls_;
  std::filesystem::path unix_path_;
};

/// Connect to host:port over TCP (all resolved addresses in order), optionally with TLS (SNI and hostname
/// verification from `host`), within `timeout`.
asio::awaitable<Result<std::unique_ptr<Stream>>> connect_tcp(std::string host, std::uint16_t port,
                                                             std::shared_ptr<asio::ssl::context> tls,
                                                             std::chrono::milliseconds timeout);
/// Connect to a Unix socket within `timeout`.
asio::awaitable<Result<std::unique_ptr<Stream>>> connect_unix(std::filesystem::path path,
                                                              std::chrono::milliseconds timeout);

}  // namespace claudemesh::transport
