// SPDX-License-Identifier: MIT
// libFuzzer target for parse_target(), resolve_target() and group_reaches(). Invariants:
// * parsing never crashes; a failure is always Errc::invalid_target with a valid UTF-8 message;
// * a parsed target is normalized for its kind, and parse_target(target.spec()) gives the same target;
// * resolving against a peer list returns a key from that list (or the pubkey itself), or a resolver error;
// * group_reaches(a, b) implies that b starts with a.
#include <claudemesh/target.hpp>

#include <claudemesh/bytes.hpp>

#include <nlohmann/json.hpp>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

namespace {

void require(bool condition) {
  if (!condition) std::abort();
}

void require_utf8(const std::string& text) {
  try {
    (void)nlohmann::json(text).dump();  // the default error handler throws on invalid UTF-8
  } catch (const nlohmann::json::exception&) {
    std::abort();
  }
}

void check_normalized(const claudemesh::Target& target) {
  using claudemesh::TargetKind;
  switch (target.kind) {
    case TargetKind::pubkey: require(claudemesh::is_lower_hex(target.value, 64)); break;
    case TargetKind::pubkey_prefix:
      require(target.value.size() >= 4 && claudemesh::is_lower_hex(target.value, target.value.size()));
      break;
    case TargetKind::broadcast: require(target.value == "*"); break;
    case TargetKind::group:
      require(claudemesh::group_reaches(target.value, target.value));
      require(claudemesh::group_reaches(target.value, target.value + "/sub"));
      require(!claudemesh::group_reaches(target.value, target.value + "x"));
      break;
    case TargetKind::topic:
    case TargetKind::name: require(!target.value.empty() && target.value.size() <= 64); break;
  }
}

void check_resolution(const claudemesh::Target& target) {
  const std::vector<claudemesh::PeerRef> peers{
      {std::string(64, 'a'), "alice"},
      {"ab" + std::string(62, 'c'), "bob"},
      {std::string(64, 'c'), target.value},  // a peer named like the input
      {std::string(64, 'd'), target.value},
  };
  const auto resolved = claudemesh::resolve_target(target, peers);
  if (!resolved) {
    const auto code = resolved.error().errc();
    require(code == claudemesh::Errc::invalid_target || code == claudemesh::Errc::ambiguous_target ||
            code == claudemesh::Errc::unknown_target);
    require_utf8(resolved.error().message);
    return;
  }
  if (target.kind == claudemesh::TargetKind::pubkey) {
    require(*resolved == target.value);
    return;
  }
  bool listed = false;
  for (const auto& peer : peers) listed = listed || peer.pubkey == *resolved;
  require(listed);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);

  const auto target = claudemesh::parse_target(input);
  if (!target) {
    require(target.error().errc() == claudemesh::Errc::invalid_target);
    require_utf8(target.error().message);
  } else {
    check_normalized(*target);
    const auto again = claudemesh::parse_target(target->spec());
    require(again.has_value() && *again == *target);
    check_resolution(*target);
  }

  // Split the input at its first NUL into two group names.
  const auto split = input.find('\0');
  if (split != std::string_view::npos) {
    const auto group = input.substr(0, split);
    const auto member = input.substr(split + 1);
    if (claudemesh::group_reaches(group, member)) require(member.starts_with(group) && !group.empty());
  }
  return 0;
}
