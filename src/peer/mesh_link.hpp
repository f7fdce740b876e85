// SPDX-License-Identifier: MIT
// MeshLink: one member's presence in one mesh, joined to the stores it shares with other links — the part
// of a peer that the embeddable `Peer` and the daemon (one link per joined mesh) have in common.
//
//   send side     prepare(): resolve the target, seal the body per recipient, fingerprint the plaintext,
//                 accept into the Outbox. drain(): claim this mesh's due rows while the broker connection
//                 is open, send them (up to a window at once), mark each sent or failed (with backoff).
//   receive side  every push is opened with the member key, stored in the Inbox, then acknowledged —
//                 duplicates too — and reported once, when newly stored.
//
// A mesh whose broker is down never holds up another link: each link drains only its own mesh's rows.
// Thread safety: everything on the link's executor. Distinct objects: safe. Shared objects: unsafe.
#pragma once

#include <claudemesh/broker_client.hpp>
#include <claudemesh/crypto.hpp>
#include <claudemesh/inbox.hpp>
#include <claudemesh/outbox.hpp>
#include <claudemesh/peer.hpp>

#include <claudemesh/broker_api.hpp>

#include <asio/steady_timer.hpp>
#include <nlohmann/json.hpp>

#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace claudemesh::peer {

struct LinkConfig {
  std::string mesh_id;
  std::string member_id;
  std::string broker_url;
  std::string display_name;
  std::string ca_file;
  BrokerClientConfig client{};
  std::chrono::milliseconds member_cache{30'000};
  std::size_t drain_window = 32;   // rows claimed and in flight at once
  std::function<void(std::string_view)> log;
};

class MeshLink : public std::enable_shared_from_this<MeshLink> {
 public:
  using MessageHandler = std::function<void(const InboxMessage&)>;
  using EventHandler = std::function<void(std::string_view event, std::string_view data_json)>;
  using StateHandler = std::function<void(TransportState)>;

  static Result<std::shared_ptr<MeshLink>> create(const asio::any_io_executor& executor, Identity member, LinkConfig config,
                                                  Outbox& outbox, Inbox& inbox);

  /// Runs the broker connection and the drain until stop().
  asio::awaitable<void> run();
  void stop();

  /// Resolve, seal, fingerprint and accept into the outbox; wakes the drain.
  asio::awaitable<Result<SendResult>> send(std::string target, std::string body, SendOptions options);
  asio::awaitable<Result<std::vector<PeerInfo>>> peers();

  void on_message(MessageHandler handler) { message_handler_ = std::move(handler); }
  void on_event(EventHandler handler) { event_handler_ = std::move(handler); }
  /// Called on every change of the broker connection's state.
  void on_state(StateHandler handler) { state_handler_ = std::move(handler); }

  [[nodiscard]] BrokerClient& client() noexcept { return *client_; }
  [[nodiscard]] const Identity& identity() const noexcept { return member_; }
  [[nodiscard]] const std::string& mesh_id() const noexcept { return config_.mesh_id; }
  /// Wake the drain (a row was accepted elsewhere, e.g. by a requeue).
  void wake() { wake_.cancel(); }

  MeshLink(asio::any_io_executor executor, Identity member, LinkConfig config, Outbox& outbox, Inbox& inbox);

 private:
  struct Sealed {
    std::string channel;      // "dm", "broadcast", "group"
    std::string target_spec;
    std::string sealed_json;  // {"nonce","ciphertext"} or {"bodies":[...]}
    std::size_t recipients = 0;
  };
  asio::awaitable<Result<Sealed>> seal(std::string target, const std::string& body);
  asio::awaitable<Result<std::vector<MemberEntry>>> members();
  asio::awaitable<void> drain();
  asio::awaitable<void> send_row(OutboxRow row, std::shared_ptr<std::size_t> outstanding,
                                 std::shared_ptr<asio::steady_timer> all_done);
  void receive(IncomingMessage message);
  void log(std::string_view event, nlohmann::json fields) const;

  asio::any_io_executor executor_;
  Identity member_;
  LinkConfig config_;
  Outbox& outbox_;
  Inbox& inbox_;
  std::unique_ptr<BrokerClient> client_;
  std::unique_ptr<BrokerApi> api_;
  BoxKeyCache keys_;
  asio::steady_timer wake_;
  bool stopping_ = false;
  std::vector<MemberEntry> member_cache_;
  std::chrono::steady_clock::time_point member_cache_at_{};
  MessageHandler message_handler_;
  EventHandler event_handler_;
  StateHandler state_handler_;
};

}  // namespace claudemesh::peer
