// SPDX-License-Identifier: MIT
#include <claudemesh/target.hpp>

#include <algorithm>
#include <vector>

namespace claudemesh {
namespace {

constexpr std::size_t kPubkeyHexLength = 64;
constexpr std::size_t kMinPrefixLength = 4;
constexpr std::size_t kShortKeyLength = 16;     // how much of a key an ambiguity message shows
constexpr std::size_t kMaxListedCandidates = 8;  // keep ambiguity messages readable
constexpr std::string_view kBroadcast = "*";
constexpr std::string_view kBroadcastAlias = "all";  // "@all"

bool is_hex_digit(char c) noexcept {
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

bool is_name_char(char c) noexcept {  // group segments and topics
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == '.' ||
         c == '-';
}

std::string to_lower_ascii(std::string_view s) {
  std::string out(s);
  for (char& c : out) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  return out;
}

// Decode the UTF-8 code point starting at s[i] and advance i. Rejects overlong forms, surrogates and
// values above U+10FFFF, as RFC 3629 requires.
bool next_code_point(std::string_view s, std::size_t& i, char32_t& cp) noexcept {
  const auto lead = static_cast<unsigned char>(s[i]);
  std::size_t extra = 0;
  char32_t min = 0;
  if (lead < 0x80) {
    cp = lead;
  } else if ((lead & 0xe0) == 0xc0) {
    cp = lead & 0x1fu, extra = 1, min = 0x80;
  } else if ((lead & 0xf0) == 0xe0) {
    cp = lead & 0x0fu, extra = 2, min = 0x800;
  } else if ((lead & 0xf8) == 0xf0) {
    cp = lead & 0x07u, extra = 3, min = 0x10000;
  } else {
    return false;
  }
  if (s.size() - i - 1 < extra) return false;
  for (std::size_t k = 1; k <= extra; ++k) {
    const auto next = static_cast<unsigned char>(s[i + k]);
    if ((next & 0xc0) != 0x80) return false;
    cp = (cp << 6) | (next & 0x3fu);
  }
  if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return false;
  i += extra + 1;
  return true;
}

bool is_control(char32_t cp) noexcept { return cp < 0x20 || (cp >= 0x7f && cp <= 0x9f); }

// Bidirectional controls let a display name pose as another one ("alice" spelled backwards).
bool is_bidi_control(char32_t cp) noexcept {
  return cp == 0x200e || cp == 0x200f || (cp >= 0x202a && cp <= 0x202e) || (cp >= 0x2066 && cp <= 0x2069);
}

bool is_space(char32_t cp) noexcept {
  return cp == 0x20 || cp == 0xa0 || cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200a) || cp == 0x2028 ||
         cp == 0x2029 || cp == 0x202f || cp == 0x205f || cp == 0x3000 || cp == 0xfeff;
}

// Text from users and peers, made safe to put in an error message (which may end up in JSON or on a
// terminal): valid, printable UTF-8 is kept, every other byte becomes \xNN, and long text is cut short.
std::string quoted(std::string_view text) {
  constexpr std::size_t kMaxShown = 72;
  constexpr char kDigits[] = "0123456789abcdef";
  std::string out = "\"";
  std::size_t i = 0;
  while (i < text.size() && i < kMaxShown) {
    const std::size_t start = i;
    char32_t cp = 0;
    if (next_code_point(text, i, cp) && !is_control(cp) && !is_bidi_control(cp) && cp != '"' && cp != '\\') {
      out.append(text.substr(start, i - start));
    } else {
      const auto byte = static_cast<unsigned char>(text[start]);
      out += "\\x";
      out += kDigits[byte >> 4];
      out += kDigits[byte & 0x0f];
      i = start + 1;
    }
  }
  out += i < text.size() ? "...\"" : "\"";
  return out;
}

Result<Target> invalid(std::string_view text, std::string_view why) {
  return fail(Errc::invalid_target, "target " + quoted(text) + ": " + std::string(why));
}

Result<Target> parse_group(std::string_view text, std::string_view path) {
  if (path == kBroadcastAlias) return Target{TargetKind::broadcast, std::string(kBroadcast)};
  if (path.empty()) return invalid(text, "group name after '@' is empty");
  if (path.size() > max_group_path_length) return invalid(text, "group path is longer than 255 characters");
  std::size_t start = 0;
  while (true) {
    const std::size_t end = std::min(path.find('/', start), path.size());
    const std::string_view segment = path.substr(start, end - start);
    if (segment.empty()) return invalid(text, "group path has an empty segment (leading, trailing or doubled '/')");
    if (segment.size() > max_target_name_length) {
      return invalid(text, "group path segment is longer than 64 characters");
    }
    if (!std::ranges::all_of(segment, is_name_char)) {
      return invalid(text, "group path may contain only letters, digits, '_', '.', '-' and '/'");
    }
    if (end == path.size()) break;
    start = end + 1;
  }
  return Target{TargetKind::group, std::string(path)};
}

Result<Target> parse_topic(std::string_view text, std::string_view topic) {
  if (topic.empty()) return invalid(text, "topic name after '#' is empty");
  if (topic.size() > max_target_name_length) return invalid(text, "topic name is longer than 64 characters");
  if (!std::ranges::all_of(topic, is_name_char)) {
    return invalid(text, "topic name may contain only letters, digits, '_', '.' and '-'");
  }
  return Target{TargetKind::topic, std::string(topic)};
}

Result<Target> parse_name(std::string_view text) {
  if (text.size() > max_target_name_length) return invalid(text, "display name is longer than 64 bytes");
  if (text.front() == '*') return invalid(text, "display name must not start with '*'");
  char32_t first = 0;
  char32_t last = 0;
  for (std::size_t i = 0; i < text.size();) {
    const bool at_start = i == 0;
    char32_t cp = 0;
    if (!next_code_point(text, i, cp)) return invalid(text, "display name is not valid UTF-8");
    if (is_control(cp)) return invalid(text, "display name contains a control character");
    if (is_bidi_control(cp)) return invalid(text, "display name contains a bidirectional control character");
    if (at_start) first = cp;
    last = cp;
  }
  if (is_space(first) || is_space(last)) return invalid(text, "display name has leading or trailing whitespace");
  return Target{TargetKind::name, std::string(text)};
}

// Distinct peers (by pubkey) for which `matches` holds, in list order.
template <class Predicate>
std::vector<const PeerRef*> distinct_matches(std::span<const PeerRef> peers, Predicate matches) {
  std::vector<const PeerRef*> found;
  for (const auto& peer : peers) {
    if (!matches(peer)) continue;
    const bool seen = std::ranges::any_of(found, [&](const PeerRef* p) { return p->pubkey == peer.pubkey; });
    if (!seen) found.push_back(&peer);
  }
  return found;
}

Result<std::string> ambiguous(const Target& target, const std::vector<const PeerRef*>& candidates) {
  std::string message = "target " + quoted(target.spec()) + " matches " + std::to_string(candidates.size()) +
                        " peers:";
  const std::size_t listed = std::min(candidates.size(), kMaxListedCandidates);
  for (std::size_t i = 0; i < listed; ++i) {
    message += (i == 0 ? " " : ", ");
    message += candidates[i]->pubkey.substr(0, kShortKeyLength);
    message += " (" + quoted(candidates[i]->display_name) + ")";
  }
  if (candidates.size() > listed) message += ", and " + std::to_string(candidates.size() - listed) + " more";
  return fail(Errc::ambiguous_target, std::move(message));
}

Result<std::string> unique(const Target& target, const std::vector<const PeerRef*>& candidates) {
  if (candidates.size() > 1) return ambiguous(target, candidates);
  return candidates.front()->pubkey;
}

}  // namespace

std::string_view to_string(TargetKind kind) noexcept {
  switch (kind) {
    case TargetKind::pubkey: return "pubkey";
    case TargetKind::pubkey_prefix: return "pubkey_prefix";
    case TargetKind::name: return "name";
    case TargetKind::broadcast: return "broadcast";
    case TargetKind::group: return "group";
    case TargetKind::topic: return "topic";
  }
  return {};
}

std::string Target::spec() const {
  switch (kind) {
    case TargetKind::broadcast: return std::string(kBroadcast);
    case TargetKind::group: return "@" + value;
    case TargetKind::topic: return "#" + value;
    case TargetKind::pubkey:
    case TargetKind::pubkey_prefix:
    case TargetKind::name: break;
  }
  return value;
}

Result<Target> parse_target(std::string_view text) {
  if (text.empty()) return fail(Errc::invalid_target, "target is empty");
  if (text == kBroadcast) return Target{TargetKind::broadcast, std::string(kBroadcast)};
  if (text.front() == '@') return parse_group(text, text.substr(1));
  if (text.front() == '#') return parse_topic(text, text.substr(1));
  if (std::ranges::all_of(text, is_hex_digit)) {
    if (text.size() > kPubkeyHexLength) {
      return invalid(text, "has " + std::to_string(text.size()) + " hex characters; a pubkey has 64");
    }
    if (text.size() == kPubkeyHexLength) return Target{TargetKind::pubkey, to_lower_ascii(text)};
    if (text.size() >= kMinPrefixLength) return Target{TargetKind::pubkey_prefix, to_lower_ascii(text)};
    // 1-3 hex characters are too short to be a useful prefix: treat them as a name ("abc", "42").
  }
  return parse_name(text);
}

bool group_reaches(std::string_view target_group, std::string_view member_group) noexcept {
  if (target_group.empty() || !member_group.starts_with(target_group)) return false;
  return member_group.size() == target_group.size() || member_group[target_group.size()] == '/';
}

Result<std::string> resolve_target(const Target& target, std::span<const PeerRef> peers) {
  const auto by_name = [&](const PeerRef& peer) { return peer.display_name == target.value; };
  switch (target.kind) {
    case TargetKind::pubkey: return target.value;
    case TargetKind::pubkey_prefix: {
      auto by_key = distinct_matches(peers, [&](const PeerRef& peer) { return peer.pubkey.starts_with(target.value); });
      if (!by_key.empty()) return unique(target, by_key);
      auto named = distinct_matches(peers, by_name);  // "cafe" may be a display name, not a prefix
      if (!named.empty()) return unique(target, named);
      return fail(Errc::unknown_target,
                  "no peer's pubkey starts with " + quoted(target.value) + " and no peer has that name");
    }
    case TargetKind::name: {
      auto named = distinct_matches(peers, by_name);
      if (!named.empty()) return unique(target, named);
      return fail(Errc::unknown_target, "no peer is named " + quoted(target.value));
    }
    case TargetKind::broadcast:
    case TargetKind::group:
    case TargetKind::topic: break;
  }
  return fail(Errc::invalid_target, "target " + quoted(target.spec()) + " is a " +
                                        std::string(to_string(target.kind)) + ", not a single peer");
}

}  // namespace claudemesh
