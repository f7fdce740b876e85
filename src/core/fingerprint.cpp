// SPDX-License-Identifier: MIT
#include <claudemesh/fingerprint.hpp>

#include <claudemesh/bytes.hpp>
#include <claudemesh/canonical_json.hpp>

#include "core/sodium.hpp"

#include <sodium.h>

#include <array>
#include <initializer_list>

namespace claudemesh {
namespace {

using Digest = std::array<std::uint8_t, crypto_hash_sha256_BYTES>;

// Incremental SHA-256 over the 0x00-separated fields.
class Sha256 {
 public:
  Sha256() {
    core::ensure_sodium();
    crypto_hash_sha256_init(&state_);
  }
  void update(std::span<const std::uint8_t> data) { crypto_hash_sha256_update(&state_, data.data(), data.size()); }
  void update(std::string_view text) { update(as_bytes(text)); }
  void separator() {
    constexpr std::uint8_t zero = 0;
    crypto_hash_sha256_update(&state_, &zero, 1);
  }
  Digest finish() {
    Digest out{};
    crypto_hash_sha256_final(&state_, out.data());
    return out;
  }

 private:
  crypto_hash_sha256_state state_{};
};

Digest sha256(std::span<const std::uint8_t> data) {
  Sha256 hash;
  hash.update(data);
  return hash.finish();
}

}  // namespace

std::string sha256_hex(std::span<const std::uint8_t> data) { return to_hex(sha256(data)); }

Result<std::string> request_fingerprint(const FingerprintInput& in) {
  struct Field {
    std::string_view name;
    std::string_view value;
  };
  const std::array fields{
      Field{"envelope_version", in.envelope_version}, Field{"destination_kind", in.destination_kind},
      Field{"destination_ref", in.destination_ref},   Field{"reply_to_id", in.reply_to_id},
      Field{"priority", in.priority},                 Field{"meta_json", in.meta_json},
  };
  for (const auto& field : fields) {
    if (field.value.find('\0') != std::string_view::npos) {
      return fail(Errc::invalid_value, "fingerprint field " + std::string(field.name) + " contains a NUL byte");
    }
  }

  std::string meta;
  if (!in.meta_json.empty()) {
    auto canonical = canonical_json(in.meta_json);
    if (!canonical) return fail(canonical.error());
    meta = std::move(*canonical);
  }

  Sha256 hash;
  for (const std::string_view value :
       {in.envelope_version, in.destination_kind, in.destination_ref, in.reply_to_id, in.priority,
        std::string_view(meta)}) {
    hash.update(value);
    hash.separator();
  }
  hash.update(sha256(in.body));  // raw 32 bytes, as the shipped reference daemon does (no separator after)
  return to_hex(hash.finish());
}

}  // namespace claudemesh
