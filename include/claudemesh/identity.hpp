// SPDX-License-Identifier: MIT
/// @file identity.hpp
/// `Identity`: who a peer is. An ed25519 signing key pair plus the x25519 box keys derived from it once,
/// at construction, so no message ever pays for the conversion.
///
/// Kinds: a **member** identity is minted when a user joins a mesh and is the unit of authorisation; a
/// **session** identity is an ephemeral key for one launched agent session, vouched for by its member
/// through a session attestation (signatures.hpp); a **service** identity is reserved for deployed
/// services and behaves like a member key for now.
///
/// Files: `save()` writes JSON with mode 0600 atomically (temporary file, fsync, rename, fsync of the
/// directory); `load()` refuses files readable by group or others, as ssh does.
///
/// @par Example
/// @code
/// auto me = claudemesh::Identity::generate(claudemesh::IdentityKind::member);
/// if (auto saved = me.save(home / "identity.json"); !saved) report(saved.error());
/// auto sig = me.sign("hello");
/// @endcode
///
/// @par Thread safety
/// Distinct objects: safe. Shared objects: safe for const member functions.
#pragma once

#include <claudemesh/export.hpp>
#include <claudemesh/keys.hpp>
#include <claudemesh/result.hpp>
#include <claudemesh/system.hpp>

#include <cstdint>
#include <filesystem>
#include <optional>
#include <span>
#include <string>
#include <string_view>

namespace claudemesh {

/// What an identity is for.
enum class IdentityKind { member, session, service };

/// "member", "session" or "service".
CLAUDEMESH_API std::string_view to_string(IdentityKind kind) noexcept;
/// Parse "member", "session" or "service".
CLAUDEMESH_API std::optional<IdentityKind> parse_identity_kind(std::string_view text) noexcept;

/// A peer identity: signing keys and the box keys derived from them. Move-only.
class CLAUDEMESH_API Identity {
 public:
  /// The JSON format version written by `save()`.
  static constexpr int file_version = 1;
  /// The largest identity file `load()` reads.
  static constexpr std::size_t max_file_bytes = std::size_t{64} * 1024;

  /// A fresh identity from `rng` (empty: the system CSPRNG).
  static Identity generate(IdentityKind kind, const RandomSource& rng = {});

  /// An identity from an existing key pair.
  /// @returns `Errc::invalid_key` if the public key is not a valid curve point.
  static Result<Identity> from_key_pair(IdentityKind kind, SigningKeyPair keys);

  /// Parse the JSON document `save()` writes:
  /// `{"version":1,"kind":"member","publicKey":"<64 hex>","secretKey":"<128 hex>","createdAt":<ms>}`.
  /// @returns `Errc::malformed` for bad JSON or hex, `Errc::missing_field`, `Errc::wrong_type`,
  /// `Errc::invalid_value` (unknown kind or version), `Errc::invalid_key` when the public key does not
  /// belong to the secret key.
  static Result<Identity> parse(std::string_view json);

  /// Read and parse an identity file.
  /// @returns `Errc::not_found`, `Errc::io_error`, `Errc::insecure_permissions` (group/other bits set),
  /// `Errc::payload_too_large` (over `max_file_bytes`), or any error of `parse()`.
  static Result<Identity> load(const std::filesystem::path& path);

  /// Write this identity to `path` atomically with mode 0600, creating missing parent directories with
  /// mode 0700. An existing file is replaced only when `overwrite` is true.
  /// @returns `Errc::io_error` on any OS failure; `Errc::invalid_value` if the file exists and
  /// `overwrite` is false.
  Result<void> save(const std::filesystem::path& path, bool overwrite = false) const;

  Identity(Identity&&) noexcept = default;
  Identity& operator=(Identity&&) noexcept = default;
  Identity(const Identity&) = delete;
  Identity& operator=(const Identity&) = delete;
  ~Identity() = default;

  /// An explicit copy (the secret is duplicated; both copies are wiped when destroyed).
  [[nodiscard]] Identity clone() const;

  [[nodiscard]] IdentityKind kind() const noexcept { return kind_; }
  [[nodiscard]] const PublicKey& public_key() const noexcept { return keys_.public_key; }
  [[nodiscard]] const Ed25519SecretKey& secret_key() const noexcept { return keys_.secret_key; }
  /// The x25519 public key derived from `public_key()` (computed once).
  [[nodiscard]] const X25519PublicKey& box_public_key() const noexcept { return box_public_; }
  /// The x25519 secret derived from `secret_key()` (computed once).
  [[nodiscard]] const X25519SecretKey& box_secret_key() const noexcept { return box_secret_; }
  /// When the identity was generated, in ms since the epoch (0 if unknown).
  [[nodiscard]] std::int64_t created_at_ms() const noexcept { return created_at_ms_; }

  /// Sign bytes with this identity's ed25519 key.
  [[nodiscard]] Signature sign(std::span<const std::uint8_t> message) const;
  /// Sign the UTF-8 bytes of a string (the canonical signing strings are text).
  [[nodiscard]] Signature sign(std::string_view message) const;

 private:
  Identity(IdentityKind kind, SigningKeyPair keys, X25519PublicKey box_public, std::int64_t created_at_ms);

  IdentityKind kind_;
  SigningKeyPair keys_;
  X25519PublicKey box_public_;
  X25519SecretKey box_secret_;
  std::int64_t created_at_ms_ = 0;
};

}  // namespace claudemesh
