// SPDX-License-Identifier: MIT
// The direct ("cold") path: when no daemon answers (or --no-daemon), a verb opens its own member connection
// to the broker for the length of the command. Sends go through a Peer whose outbox and inbox live in
// <home>/cold/<slug>/, so a send that cannot be handed over in time is kept and retried by the next direct
// send on that mesh.
#pragma once

#include <claudemesh/broker_client.hpp>
#include <claudemesh/mesh_config.hpp>
#include <claudemesh/outbox.hpp>
#include <claudemesh/peer.hpp>

#include <chrono>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

namespace claudemesh::cli {

/// How long the direct path waits for the broker connection to open.
inline constexpr std::chrono::seconds cold_connect_timeout{10};
/// How long a direct send waits for the broker to take the message.
inline constexpr std::chrono::seconds cold_send_wait{10};

/// The directory of a mesh's direct-path outbox and inbox.
std::filesystem::path cold_dir(const std::filesystem::path& home, const JoinedMesh& mesh);

/// The peers online in `mesh`, without our own short-lived connection.
/// @returns `Errc::unavailable` (with the broker's reason) when the connection does not open in time.
Result<std::vector<PeerInfo>> cold_peers(const JoinedMesh& mesh, Identity member);

/// Set our status and/or summary on a short connection (it lasts as long as the command).
Result<void> cold_profile(const JoinedMesh& mesh, Identity member, const std::optional<std::string>& status,
                          const std::optional<std::string>& summary);

/// What a direct send did.
struct ColdSent {
  OutboxRow row;            ///< the outbox row as last seen (status done when the broker took it)
  std::string target_spec;  ///< what the target resolved to
  std::size_t recipients = 0;
  bool duplicate = false;   ///< the client message id was already sent with the same content
  bool handed_over = false; ///< the broker acknowledged it within the wait
};

/// Resolve, seal and queue `body` for `target` in the mesh's direct outbox, then wait (up to `wait`) for the
/// broker to take it. @returns the outcome; `Errc::idempotency_key_reused` for a reused client message id
///   with other content; `Errc::unavailable` when the broker cannot be reached (nothing is queued); the
///   resolution errors (`unknown_target`, `ambiguous_target`, `invalid_target`).
Result<ColdSent> cold_send(const std::filesystem::path& home, const JoinedMesh& mesh, Identity member,
                           std::string target, std::string body, SendOptions options, std::chrono::milliseconds wait);

/// A message in a direct outbox, and (when the broker answers) whom it reached.
struct ColdStatus {
  OutboxRow row;
  std::string mesh_slug;
  std::optional<MessageStatus> delivery;
  std::string delivery_error;  ///< why `delivery` is missing, when it is
};

/// Look `id` (row id or client message id) up in the direct outboxes of `meshes`; ask the broker about it.
/// @returns nothing when no direct outbox has it.
Result<std::optional<ColdStatus>> cold_message_status(const std::filesystem::path& home,
                                                      const std::vector<JoinedMesh>& meshes, const std::string& id);

}  // namespace claudemesh::cli
