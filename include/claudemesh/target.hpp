// SPDX-License-Identifier: MIT
/// @file target.hpp
/// Message targets: parsing what a user or a program writes after "send to", and resolving it to a peer.
///
/// A target is written in one of these forms (the broker's `targetSpec`, plus the two forms the CLI
/// resolves before sending):
///
/// | text                         | kind            | `value`                               |
/// |------------------------------|-----------------|---------------------------------------|
/// | 64 hex characters, any case  | `pubkey`        | the key, lowercase                    |
/// | 4–63 hex characters, any case| `pubkey_prefix` | the prefix, lowercase                 |
/// | `*` or `@all`                | `broadcast`     | `*`                                   |
/// | `@` group path (`@ops/eu`)   | `group`         | the path without `@`                  |
/// | `#` topic (`#deploys`)       | `topic`         | the topic without `#`                 |
/// | anything else                | `name`          | the display name, as given            |
///
/// Only `pubkey`, `broadcast`, `group` and `topic` travel on the wire; a `pubkey_prefix` or `name` must be
/// turned into a pubkey with `resolve_target()` first.
///
/// @par Example
/// @code
/// auto target = claudemesh::parse_target("cafe12");
/// if (!target) return std::unexpected(target.error());
/// auto pubkey = claudemesh::resolve_target(*target, peers);   // the one peer whose key starts with cafe12
/// @endcode
///
/// @par Thread safety
/// All functions are pure and thread-safe. Distinct objects: safe. Shared objects: unsafe.
#pragma once

#include <claudemesh/export.hpp>
#include <claudemesh/result.hpp>

#include <cstddef>
#include <span>
#include <string>
#include <string_view>

namespace claudemesh {

/// What a target addresses.
enum class TargetKind {
  pubkey,         ///< one peer, by its full 64-hex ed25519 public key (member or session key)
  pubkey_prefix,  ///< one peer, by the first 4–63 hex characters of its key; resolve before sending
  name,           ///< one peer, by its display name; resolve before sending
  broadcast,      ///< every peer in the mesh (`*`, alias `@all`)
  group,          ///< every peer in a group or one of its subgroups (`@a/b` reaches `a/b` and `a/b/c`)
  topic,          ///< every subscriber of a topic (`#name`)
};

/// The lowercase name of a target kind ("pubkey", "pubkey_prefix", "name", "broadcast", "group", "topic"),
/// or an empty view for a value outside the enumeration.
CLAUDEMESH_API std::string_view to_string(TargetKind kind) noexcept;

/// Longest group path after the `@`, in bytes.
inline constexpr std::size_t max_group_path_length = 255;
/// Longest group path segment, topic name or display name, in bytes.
inline constexpr std::size_t max_target_name_length = 64;

/// A parsed, normalized target.
struct CLAUDEMESH_API Target {
  TargetKind kind = TargetKind::pubkey;  ///< the form the target was written in
  /// Normalized value: pubkey and prefix in lowercase hex; group path without `@`; topic without `#`;
  /// display name as given; `*` for broadcast.
  std::string value;

  /// The wire `targetSpec` for this target: the hex key or prefix, `*`, `@group`, `#topic`, or the display
  /// name. For any target returned by `parse_target()`, `parse_target(t.spec()) == t`.
  [[nodiscard]] std::string spec() const;

  bool operator==(const Target&) const = default;
};

/// Parse a target written by a user or found on the wire.
///
/// Rules, in order:
/// * `*` and `@all` are `broadcast`.
/// * `@path` is a `group`: segments separated by `/`, each 1–64 characters of `[A-Za-z0-9_.-]`, no empty
///   segment (so no leading, trailing or doubled `/`), at most 255 characters in all.
/// * `#topic` is a `topic`: 1–64 characters of `[A-Za-z0-9_.-]`.
/// * 64 hex characters (either case) are a `pubkey`, 4–63 a `pubkey_prefix`; both are lowercased.
///   More than 64 hex characters are rejected.
/// * Anything else is a display `name`: 1–64 bytes of valid UTF-8, no control or bidirectional-override
///   characters, no leading or trailing whitespace, not starting with `*`. (A name of 4–63 hex characters,
///   such as "cafe", parses as a prefix; `resolve_target()` then falls back to the name.)
///
/// @returns the target, or `Errc::invalid_target` with a message saying which rule the text broke.
CLAUDEMESH_API Result<Target> parse_target(std::string_view text);

/// Whether a post to group `target_group` reaches a member of group `member_group` (both without `@`).
///
/// Groups are hierarchical: `"a/b"` reaches `"a/b"` and `"a/b/c"`, but not `"a/bc"` or `"a"`.
/// An empty group reaches nothing and is reached by nothing.
/// @returns true if `member_group` equals `target_group` or lies below it.
CLAUDEMESH_API bool group_reaches(std::string_view target_group, std::string_view member_group) noexcept;

/// A peer as the resolver sees it: its key and its display name.
struct PeerRef {
  std::string pubkey;        ///< 64 lowercase hex characters
  std::string display_name;  ///< as the peer announced it
};

/// Resolve a single-peer target to the full pubkey of one peer in `peers`.
///
/// * `pubkey`: returned as is (the peer may be offline or unknown; the broker queues for it).
/// * `pubkey_prefix`: the one peer whose pubkey starts with the prefix. If no pubkey matches, the prefix is
///   tried as an exact display name, since "cafe" may be a name.
/// * `name`: the one peer whose display name equals the value exactly (case-sensitive).
///
/// Entries of `peers` with the same pubkey count as one peer (a peer may be listed once per mesh).
///
/// @returns the 64-hex pubkey, or
///   * `Errc::ambiguous_target` when several peers match (the message lists each candidate's first 16 hex
///     characters and name),
///   * `Errc::unknown_target` when no peer matches,
///   * `Errc::invalid_target` for `broadcast`, `group` and `topic`, which do not name a single peer.
CLAUDEMESH_API Result<std::string> resolve_target(const Target& target, std::span<const PeerRef> peers);

}  // namespace claudemesh
