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
// A session link is the same for a launched session: it connects with `session_hello`, seals and opens
// with the session key, drains only the rows that session sent (its outbox lane), stores what it receives
// for the session (`recipient_kind` "session"), and leaves system events and its own echoes to the member's
// link. A member link opens a copy sealed to one of its sessions' keys (a session that has gone, whose
// copy the broker fell back to the member) with the key `key_for` finds.
//
// A mesh whose broker is down never holds up another link: each link drains only its own mesh's rows.
// Thread safety: everything on the link's executor. Distinct objects: safe. Shared objects: unsafe.
#pragma once

#include <claudemesh/broker_client.hpp>
#include <claudemesh/crypto.hpp>
#include <claudemesh/inbox.hpp>
#include <claudemesh/outbox.hpp>
#include <claudemesh/peer.hpp>
#include <claudemesh/target.hpp>

#include <claudemesh/broker_api.hpp>

#include <asio/steady_timer.hpp>
#include <nlohmann/json.hpp>

#include <functional>
#include <memory>
#include <optional>
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
  /// The secret of one of the member's session keys (64 lowercase hex), or nullptr.
  using KeyLookup = std::function<const Identity*(std::string_view session_pubkey)>;

  static Result<std::shared_ptr<MeshLink>> create(const asio::any_io_executor& executor, Identity member, LinkConfig config,
                                                  Outbox& outbox, Inbox& inbox);
  /// A launched session's link. `member` signs the broker HTTP API requests (member listing for
  /// broadcasts); `renew` mints attestations when the current one nears expiry.
  static Result<std::shared_ptr<MeshLink>> create_session(const asio::any_io_executor& executor, Identity member,
                                                          Identity session, SessionAttestation attestation,
                                                          AttestationSource renew, LinkConfig config, Outbox& outbox,
                                                          Inbox& inbox);

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
  /// Member links: where to find a session key's secret for copies sealed to a session.
  void key_for(KeyLookup lookup) { key_for_ = std::move(lookup); }

  [[nodiscard]] BrokerClient& client() noexcept { return *client_; }
  [[nodiscard]] const Identity& identity() const noexcept { return member_; }
  /// The key this link seals, opens and is present with: the session key for a session link.
  [[nodiscard]] const Identity& own() const noexcept { return session_ ? *session_ : member_; }
  [[nodiscard]] bool is_session() const noexcept { return session_.has_value(); }
  [[nodiscard]] const std::string& mesh_id() const noexcept { return config_.mesh_id; }
  [[nodiscard]] const LinkConfig& config() const noexcept { return config_; }
  /// Wake the drain (a row was accepted elsewhere, e.g. by a requeue).
  void wake() { wake_.cancel(); }

  MeshLink(asio::any_io_executor executor, Identity member, LinkConfig config, Outbox& outbox, Inbox& inbox);

 private:
  static Result<std::shared_ptr<MeshLink>> assemble(std::shared_ptr<MeshLink> link,
                                                    std::unique_ptr<BrokerClient> client);
  /// The outbox lane this link drains: empty for the member, the session key for a session.
  [[nodiscard]] std::string lane() const { return session_ ? session_->public_key().hex() : std::string(); }

  struct Sealed {
    std::string channel;      // "dm", "broadcast", "group"
    std::string target_spec;
    std::string sealed_json;  // {"nonce","ciphertext"} or {"bodies":[...]}
    std::size_t recipients = 0;
  };
  asio::awaitable<Result<Sealed>> seal(std::string target, const std::string& body);
  asio::awaitable<Result<std::string>> resolve(Target target);
  asio::awaitable<Result<std::vector<MemberEntry>>> members();
  asio::awaitable<void> drain();
  asio::awaitable<void> send_row(OutboxRow row, std::shared_ptr<std::size_t> outstanding,
                                 std::shared_ptr<asio::steady_timer> all_done);
  asio::awaitable<Result<OutboxAccept>> accept(OutboxSend row);
  void accept_queued();
  void receive(IncomingMessage message);
  void store_received();
  void log(std::string_view event, nlohmann::json fields) const;

  asio::any_io_executor executor_;
  Identity member_;
  std::optional<Identity> session_;
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
  KeyLookup key_for_;
  struct Received {
    InboxMessage row;
    IncomingMessage message;
  };
  std::vector<Received> received_;  // opened, waiting for store_received()
  bool flush_posted_ = false;
  struct PendingAccept {
    PendingAccept(OutboxSend s, const asio::any_io_executor& ex)
        : send(std::move(s)), done(ex, asio::steady_timer::time_point::max()) {}
    OutboxSend send;
    std::optional<Result<OutboxAccept>> answer;
    asio::steady_timer done;  // cancelled when `answer` is set
  };
  std::vector<std::shared_ptr<PendingAccept>> accepts_;  // waiting for accept_queued()
  bool accept_posted_ = false;
};

}  // namespace claudemesh::peer
