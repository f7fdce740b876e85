// SPDX-License-Identifier: MIT
#include <claudemesh/identity.hpp>

#include "core/secure_file.hpp"

#include <nlohmann/json.hpp>

namespace claudemesh {
namespace {

using nlohmann::json;

constexpr std::string_view kVersion = "version";
constexpr std::string_view kKind = "kind";
constexpr std::string_view kPublicKey = "publicKey";
constexpr std::string_view kSecretKey = "secretKey";
constexpr std::string_view kCreatedAt = "createdAt";

// Overwrites a std::string's characters when it goes out of scope.
struct WipeOnExit {
  std::string& text;
  ~WipeOnExit() { secure_wipe(text.data(), text.size()); }
};

Result<const json*> field(const json& doc, std::string_view name, json::value_t type) {
  auto it = doc.find(name);
  if (it == doc.end()) return fail(Errc::missing_field, "identity: " + std::string(name) + " is missing");
  const bool ok = type == json::value_t::number_integer ? it->is_number_integer() : it->type() == type;
  if (!ok) return fail(Errc::wrong_type, "identity: " + std::string(name) + " has the wrong type");
  return &*it;
}

}  // namespace

std::string_view to_string(IdentityKind kind) noexcept {
  switch (kind) {
    case IdentityKind::member: return "member";
    case IdentityKind::session: return "session";
    case IdentityKind::service: return "service";
  }
  return "member";
}

std::optional<IdentityKind> parse_identity_kind(std::string_view text) noexcept {
  for (auto kind : {IdentityKind::member, IdentityKind::session, IdentityKind::service}) {
    if (to_string(kind) == text) return kind;
  }
  return std::nullopt;
}

Identity::Identity(IdentityKind kind, SigningKeyPair keys, X25519PublicKey box_public, std::int64_t created_at_ms)
    : kind_(kind),
      keys_(std::move(keys)),
      box_public_(box_public),
      box_secret_(to_x25519(keys_.secret_key)),
      created_at_ms_(created_at_ms) {}

Identity Identity::generate(IdentityKind kind, const RandomSource& rng) {
  // A freshly generated key is always a valid point, so the conversion cannot fail.
  auto created = from_key_pair(kind, SigningKeyPair::generate(rng));
  created->created_at_ms_ = now_ms();
  return std::move(*created);
}

Result<Identity> Identity::from_key_pair(IdentityKind kind, SigningKeyPair keys) {
  auto box_public = to_x25519(keys.public_key);
  if (!box_public) return fail(box_public.error());
  return Identity(kind, std::move(keys), *box_public, 0);
}

Identity Identity::clone() const {
  SigningKeyPair keys{keys_.public_key, keys_.secret_key.clone()};
  return Identity(kind_, std::move(keys), box_public_, created_at_ms_);
}

Signature Identity::sign(std::span<const std::uint8_t> message) const { return claudemesh::sign(keys_.secret_key, message); }

Signature Identity::sign(std::string_view message) const { return sign(as_bytes(message)); }

Result<Identity> Identity::parse(std::string_view text) {
  json doc = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (doc.is_discarded() || !doc.is_object()) return fail(Errc::malformed, "identity: not a JSON object");

  auto version = field(doc, kVersion, json::value_t::number_integer);
  if (!version) return fail(version.error());
  if ((*version)->get<std::int64_t>() != file_version) {
    return fail(Errc::invalid_value, "identity: unsupported version " + (*version)->dump());
  }
  auto kind_field = field(doc, kKind, json::value_t::string);
  if (!kind_field) return fail(kind_field.error());
  auto kind = parse_identity_kind((*kind_field)->get_ref<const std::string&>());
  if (!kind) return fail(Errc::invalid_value, "identity: unknown kind " + (*kind_field)->dump());

  auto public_field = field(doc, kPublicKey, json::value_t::string);
  if (!public_field) return fail(public_field.error());
  auto public_key = PublicKey::from_hex((*public_field)->get_ref<const std::string&>());
  if (!public_key) return fail(public_key.error(), "identity: publicKey");

  auto secret_field = field(doc, kSecretKey, json::value_t::string);
  if (!secret_field) return fail(secret_field.error());
  auto& secret_hex = doc[std::string(kSecretKey)].get_ref<std::string&>();
  WipeOnExit wipe{secret_hex};
  auto keys = SigningKeyPair::from_secret_hex(secret_hex);
  if (!keys) return fail(keys.error(), "identity: secretKey");
  if (keys->public_key != *public_key) {
    return fail(Errc::invalid_key, "identity: publicKey does not belong to secretKey");
  }

  std::int64_t created_at = 0;
  if (doc.contains(kCreatedAt)) {
    auto created = field(doc, kCreatedAt, json::value_t::number_integer);
    if (!created) return fail(created.error());
    created_at = (*created)->get<std::int64_t>();
  }
  auto identity = from_key_pair(*kind, std::move(*keys));
  if (!identity) return identity;
  identity->created_at_ms_ = created_at;
  return identity;
}

Result<Identity> Identity::load(const std::filesystem::path& path) {
  auto text = core::read_secret_file(path, max_file_bytes);
  if (!text) return fail(text.error());
  WipeOnExit wipe{*text};
  auto identity = parse(*text);
  if (!identity) return fail(identity.error(), path.string());
  return identity;
}

Result<void> Identity::save(const std::filesystem::path& path, bool overwrite) const {
  // Built by hand rather than through a JSON library so that every copy of the secret is ours to wipe.
  // All values are hex, integers or fixed words, so no escaping is needed.
  std::string text;
  text.reserve(320);
  text += "{\"";
  text += kVersion;
  text += "\":" + std::to_string(file_version) + ",\"";
  text += kKind;
  text += "\":\"";
  text += to_string(kind_);
  text += "\",\"";
  text += kPublicKey;
  text += "\":\"" + keys_.public_key.hex() + "\",\"";
  text += kSecretKey;
  text += "\":\"";
  std::string secret_hex = to_hex(keys_.secret_key.bytes());
  text += secret_hex;
  secure_wipe(secret_hex.data(), secret_hex.size());
  text += "\",\"";
  text += kCreatedAt;
  text += "\":" + std::to_string(created_at_ms_) + "}\n";
  WipeOnExit wipe{text};
  return core::write_secret_file(path, text, overwrite);
}

}  // namespace claudemesh
