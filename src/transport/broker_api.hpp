// SPDX-License-Identifier: MIT
// The broker's HTTP API from the client side (docs/protocol.md §7): every call signed with the caller's key
// (`claudemesh-request-v1|…`), errors read back as their wire codes. Used by `claudemesh mesh create`,
// `invite` and `join`, and by tests that set up meshes on a real broker.
//
// Thread safety: distinct objects safe; shared objects unsafe; one call at a time per object.
#pragma once

#include <claudemesh/identity.hpp>
#include <claudemesh/result.hpp>

#include "transport/http/client.hpp"

#include <asio/awaitable.hpp>

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

namespace claudemesh::transport {

/// A member's standing in a mesh, as the broker reports it after create or join.
struct Membership {
  std::string mesh_id;
  std::string mesh_name;
  std::string member_id;
  std::string member_pubkey;
  std::string display_name;
  std::string role;        ///< "owner", "admin", "member"
  std::string http_base;   ///< "http://host:port" of the broker's API
  std::string ws_url;      ///< "ws://host:port/ws"
};

/// A fresh invite.
struct InviteCreated {
  std::string invite_id;
  std::string url;              ///< what a human pastes into `claudemesh join`
  std::int64_t expires_at_s = 0;
};

/// Where an invite URL points: the broker's base and the invite id.
struct InviteRef {
  std::string http_base;
  std::string invite_id;
};

/// Parses `<http(s) base>/v1/invites/<ULID>`. @returns `Errc::invalid_value` with a hint otherwise.
Result<InviteRef> parse_invite_url(std::string_view url);

/// "http://h:p" → "ws://h:p/ws", "https://h" → "wss://h/ws".
std::string ws_url_for(std::string_view http_base);

class BrokerApi {
 public:
  /// `http_base`: "http://127.0.0.1:7800" or "https://broker.example". `ca_file`: extra trust anchor for https.
  static Result<std::unique_ptr<BrokerApi>> connect(asio::any_io_executor executor, std::string_view http_base,
                                                    const Identity& signer, const std::string& ca_file = {});

  /// `POST /v1/meshes`; the signer becomes the owner. `admin_token`: for brokers that restrict creation.
  asio::awaitable<Result<Membership>> create_mesh(std::string name, std::string display_name,
                                                  std::string admin_token = {});
  /// `POST /v1/meshes/{mesh}/invites`, signed as an invite v2 by the signer.
  asio::awaitable<Result<InviteCreated>> create_invite(std::string mesh_id, std::string role,
                                                       std::int64_t ttl_seconds, std::int64_t max_uses);
  /// `POST /v1/invites/{id}/claim`: the signer becomes a member.
  asio::awaitable<Result<Membership>> join(std::string invite_id, std::string display_name);

 private:
  BrokerApi(asio::any_io_executor executor, std::string http_base, const Identity& signer,
            http::ClientEndpoint endpoint);
  asio::awaitable<Result<std::string>> call(std::string method, std::string target, std::string body,
                                            std::string bearer = {});

  std::string http_base_;
  const Identity& signer_;
  http::HttpClient client_;
  std::int64_t last_timestamp_ms_ = 0;
};

}  // namespace claudemesh::transport
