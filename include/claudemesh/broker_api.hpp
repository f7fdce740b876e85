// SPDX-License-Identifier: MIT
/// @file broker_api.hpp
/// The broker's HTTP API (docs/protocol.md §7) from the client side: create a mesh, invite, join, list
/// members. Every call is signed with the caller's key (`claudemesh-request-v1|…`); refusals come back as
/// errors carrying the broker's wire code (`forbidden`, `expired`, `exhausted`, `already_exists`, ...).
///
/// @code
/// auto api = claudemesh::BrokerApi::connect(executor, "https://broker.example", me);
/// auto joined = co_await (*api)->join(invite_id, "build-worker");   // joined->ws_url, mesh_id, member_id
/// @endcode
///
/// @par Thread safety
/// Distinct objects: safe. Shared objects: unsafe; one call at a time per object, on its executor.
#pragma once

#include <claudemesh/export.hpp>
#include <claudemesh/identity.hpp>
#include <claudemesh/result.hpp>

#include <asio/any_io_executor.hpp>
#include <asio/awaitable.hpp>

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace claudemesh {

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

/// A member as `GET /v1/meshes/{mesh}/members` lists it.
struct MemberEntry {
  std::string pubkey;
  std::string display_name;
  std::string role;
  std::vector<std::string> groups;  ///< group paths without '@'
  bool active = true;               ///< neither revoked nor banned
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
CLAUDEMESH_API Result<InviteRef> parse_invite_url(std::string_view url);

/// "http://h:p" → "ws://h:p/ws", "https://h" → "wss://h/ws".
CLAUDEMESH_API std::string ws_url_for(std::string_view http_base);

class CLAUDEMESH_API BrokerApi {
 public:
  /// `http_base`: "http://127.0.0.1:7800" or "https://broker.example". `ca_file`: extra trust anchor for https.
  /// Nothing connects until the first call; `signer` must outlive the object.
  /// @returns `Errc::invalid_value` for an address that is not http(s)://host[:port], or a TLS setup error.
  static Result<std::unique_ptr<BrokerApi>> connect(asio::any_io_executor executor, std::string_view http_base,
                                                    const Identity& signer, const std::string& ca_file = {});
  BrokerApi(const BrokerApi&) = delete;
  BrokerApi& operator=(const BrokerApi&) = delete;
  ~BrokerApi();

  /// `POST /v1/meshes`; the signer becomes the owner. `admin_token` (may be empty): for brokers that restrict
  /// creation. (No default argument: g++ 12 destroys a defaulted coroutine parameter twice.)
  asio::awaitable<Result<Membership>> create_mesh(std::string name, std::string display_name,
                                                  std::string admin_token);
  /// `POST /v1/meshes/{mesh}/invites`, signed as an invite v2 by the signer.
  asio::awaitable<Result<InviteCreated>> create_invite(std::string mesh_id, std::string role,
                                                       std::int64_t ttl_seconds, std::int64_t max_uses);
  /// `GET /v1/meshes/{mesh}/members`: every member, online or not.
  asio::awaitable<Result<std::vector<MemberEntry>>> members(std::string mesh_id);
  /// `POST /v1/invites/{id}/claim`: the signer becomes a member.
  asio::awaitable<Result<Membership>> join(std::string invite_id, std::string display_name);

  struct Impl;

 private:
  explicit BrokerApi(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace claudemesh
