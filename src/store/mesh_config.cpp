// SPDX-License-Identifier: MIT
// <home>/config.json: the joined meshes (see include/claudemesh/mesh_config.hpp).
#include <claudemesh/mesh_config.hpp>

#include "core/secure_file.hpp"

#include <nlohmann/json.hpp>

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <fstream>
#include <iterator>
#include <set>
#include <utility>

namespace claudemesh {
namespace {

using Json = nlohmann::json;
namespace fs = std::filesystem;

constexpr std::size_t max_slug_length = 32;

// The fields of one entry, in the order they are written.
constexpr std::string_view entry_fields[] = {"slug",         "mesh_id", "mesh_name", "member_id",   "display_name",
                                             "role",         "http_base", "broker_url", "identity_file"};
// Fields an entry cannot do without; the others may be empty (but must be strings when present).
constexpr std::string_view required_fields[] = {"slug", "mesh_id", "member_id", "broker_url", "identity_file"};

std::unexpected<Error> malformed(const fs::path& file, const std::string& what) {
  return fail(Errc::malformed, file.string() + ": " + what);
}

Result<std::string> read_bounded(const fs::path& file) {
  std::error_code ec;
  const auto size = fs::file_size(file, ec);
  if (ec) return fail(Errc::io_error, "cannot read " + file.string() + ": " + ec.message());
  if (size > mesh_config_max_bytes) {
    return fail(Errc::payload_too_large,
                file.string() + " is " + std::to_string(size) + " bytes; the limit is " + std::to_string(mesh_config_max_bytes));
  }
  std::ifstream in(file, std::ios::binary);
  if (!in) return fail(Errc::io_error, "cannot open " + file.string());
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (in.bad()) return fail(Errc::io_error, "cannot read " + file.string());
  return text;
}

Result<JoinedMesh> parse_entry(const Json& entry, std::size_t index, const fs::path& home, const fs::path& file) {
  const std::string where = "meshes[" + std::to_string(index) + "]";
  if (!entry.is_object()) return malformed(file, where + " is not an object");
  for (const auto field : entry_fields) {
    const auto it = entry.find(field);
    if (it != entry.end() && !it->is_string()) {
      return malformed(file, where + "." + std::string(field) + " is not a string");
    }
  }
  for (const auto field : required_fields) {
    const auto it = entry.find(field);
    if (it == entry.end() || it->get_ref<const std::string&>().empty()) {
      return malformed(file, where + "." + std::string(field) + " is missing");
    }
  }
  auto text = [&entry](std::string_view field) {
    const auto it = entry.find(field);
    return it == entry.end() ? std::string() : it->get<std::string>();
  };
  JoinedMesh mesh{.slug = text("slug"),
                  .mesh_id = text("mesh_id"),
                  .mesh_name = text("mesh_name"),
                  .member_id = text("member_id"),
                  .display_name = text("display_name"),
                  .role = text("role"),
                  .http_base = text("http_base"),
                  .broker_url = text("broker_url"),
                  .identity_file = text("identity_file")};
  if (!is_valid_mesh_slug(mesh.slug)) {
    return malformed(file, where + ".slug \"" + mesh.slug + "\" is not a valid slug ([a-z0-9-], 2 to 32 characters)");
  }
  if (mesh.identity_file.is_relative()) mesh.identity_file = home / mesh.identity_file;
  return mesh;
}

Json entry_json(const JoinedMesh& mesh, const fs::path& home) {
  // Stored relative to home when it lies inside it, so the directory can be moved.
  fs::path stored = mesh.identity_file;
  if (stored.is_absolute()) {
    const auto relative = stored.lexically_relative(home);
    if (!relative.empty() && *relative.begin() != "..") stored = relative;
  }
  return Json{{"slug", mesh.slug},           {"mesh_id", mesh.mesh_id},
              {"mesh_name", mesh.mesh_name}, {"member_id", mesh.member_id},
              {"display_name", mesh.display_name}, {"role", mesh.role},
              {"http_base", mesh.http_base}, {"broker_url", mesh.broker_url},
              {"identity_file", stored.string()}};
}

Result<void> write_config(const fs::path& home, const std::vector<JoinedMesh>& meshes) {
  Json list = Json::array();
  for (const auto& mesh : meshes) list.push_back(entry_json(mesh, home));
  const Json doc{{"version", mesh_config_version}, {"meshes", list}};
  const std::string text = doc.dump(2) + "\n";
  return core::write_secret_file(mesh_config_path(home), text, true);
}

// An exclusive flock on <home>/config.lock for a read-modify-write of config.json; released on destruction.
class ConfigLock {
 public:
  static Result<ConfigLock> acquire(const fs::path& home) {
    std::error_code ec;
    if (!fs::is_directory(home, ec)) {
      fs::create_directories(home, ec);
      if (ec) return fail(Errc::io_error, "cannot create " + home.string() + ": " + ec.message());
      ::chmod(home.c_str(), 0700);  // a home we create is private; an existing one is left as the user made it
    }
    const fs::path path = home / "config.lock";
    const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0) return fail(Errc::io_error, "cannot open " + path.string() + ": " + std::generic_category().message(errno));
    while (::flock(fd, LOCK_EX) != 0) {
      if (errno != EINTR) {
        const int err = errno;
        ::close(fd);
        return fail(Errc::io_error, "cannot lock " + path.string() + ": " + std::generic_category().message(err));
      }
    }
    return ConfigLock(fd);
  }
  ConfigLock(ConfigLock&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
  ConfigLock& operator=(ConfigLock&&) = delete;
  ConfigLock(const ConfigLock&) = delete;
  ConfigLock& operator=(const ConfigLock&) = delete;
  ~ConfigLock() {
    if (fd_ >= 0) ::close(fd_);  // closing releases the flock
  }

 private:
  explicit ConfigLock(int fd) noexcept : fd_(fd) {}
  int fd_;
};

std::string slug_list(const std::vector<JoinedMesh>& meshes) {
  std::string out;
  for (const auto& mesh : meshes) {
    if (!out.empty()) out += ", ";
    out += mesh.slug;
  }
  return out;
}

bool slug_in_use(const fs::path& home, const std::vector<JoinedMesh>& meshes, const std::string& slug) {
  const bool listed = std::any_of(meshes.begin(), meshes.end(), [&](const JoinedMesh& m) { return m.slug == slug; });
  std::error_code ec;
  return listed || fs::exists(home / "meshes" / slug, ec);
}

Result<std::string> choose_slug(const fs::path& home, const std::vector<JoinedMesh>& meshes,
                                const Membership& membership, std::string_view preferred) {
  if (!preferred.empty()) {
    std::string slug(preferred);
    std::transform(slug.begin(), slug.end(), slug.begin(),
                   [](char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c; });
    if (!is_valid_mesh_slug(slug)) {
      return fail(Errc::invalid_value, "slug \"" + std::string(preferred) +
                                           "\" is not valid: use 2 to 32 characters of a-z, 0-9 and '-', not starting with '-'");
    }
    if (slug_in_use(home, meshes, slug)) {
      return fail(Errc::already_exists, "slug \"" + slug + "\" is already taken in " + home.string());
    }
    return slug;
  }
  std::string base = slug_from_name(membership.mesh_name);
  if (!slug_in_use(home, meshes, base)) return base;
  for (int n = 2; n < 10'000; ++n) {
    const std::string suffix = "-" + std::to_string(n);
    std::string stem = base.substr(0, max_slug_length - suffix.size());
    while (!stem.empty() && stem.back() == '-') stem.pop_back();
    std::string slug = stem + suffix;
    if (is_valid_mesh_slug(slug) && !slug_in_use(home, meshes, slug)) return slug;
  }
  return fail(Errc::already_exists, "no free slug for \"" + base + "\"; pass one explicitly");
}

}  // namespace

fs::path mesh_config_path(const fs::path& home) { return home / "config.json"; }

bool is_valid_mesh_slug(std::string_view slug) noexcept {
  if (slug.size() < 2 || slug.size() > max_slug_length) return false;
  auto allowed = [](char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-'; };
  return slug.front() != '-' && std::all_of(slug.begin(), slug.end(), allowed);
}

std::string slug_from_name(std::string_view name) {
  std::string slug;
  bool dash = false;
  for (const char c : name) {
    const char lower = c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c;
    if ((lower >= 'a' && lower <= 'z') || (lower >= '0' && lower <= '9')) {
      if (dash && !slug.empty()) slug += '-';
      dash = false;
      slug += lower;
      if (slug.size() >= max_slug_length) break;
    } else {
      dash = true;
    }
  }
  while (!slug.empty() && slug.back() == '-') slug.pop_back();
  if (!is_valid_mesh_slug(slug)) return "mesh";
  return slug;
}

Result<std::vector<JoinedMesh>> load_joined_meshes(const fs::path& home) {
  const fs::path file = mesh_config_path(home);
  std::error_code ec;
  if (!fs::exists(file, ec)) {
    if (ec && ec != std::errc::no_such_file_or_directory) {
      return fail(Errc::io_error, "cannot read " + file.string() + ": " + ec.message());
    }
    return std::vector<JoinedMesh>{};
  }
  auto text = read_bounded(file);
  if (!text) return fail(text.error());
  const Json doc = Json::parse(*text, nullptr, false);
  if (doc.is_discarded()) return malformed(file, "not valid JSON");
  if (!doc.is_object()) return malformed(file, "not a JSON object");
  const auto version = doc.find("version");
  if (version == doc.end() || !version->is_number_integer()) return malformed(file, "\"version\" is missing or not an integer");
  if (version->get<std::int64_t>() > mesh_config_version) {
    return fail(Errc::invalid_value, file.string() + " has version " + std::to_string(version->get<std::int64_t>()) +
                                         ", written by a newer claudemesh (this one reads version " +
                                         std::to_string(mesh_config_version) + ")");
  }
  if (version->get<std::int64_t>() < 1) return malformed(file, "\"version\" must be at least 1");
  const auto list = doc.find("meshes");
  if (list == doc.end()) return std::vector<JoinedMesh>{};
  if (!list->is_array()) return malformed(file, "\"meshes\" is not an array");
  std::vector<JoinedMesh> meshes;
  std::set<std::string> slugs;
  std::set<std::string> ids;
  for (std::size_t i = 0; i < list->size(); ++i) {
    auto mesh = parse_entry((*list)[i], i, home, file);
    if (!mesh) return fail(mesh.error());
    if (!slugs.insert(mesh->slug).second) return malformed(file, "slug \"" + mesh->slug + "\" appears twice");
    if (!ids.insert(mesh->mesh_id).second) return malformed(file, "mesh id " + mesh->mesh_id + " appears twice");
    meshes.push_back(std::move(*mesh));
  }
  return meshes;
}

Result<JoinedMesh> add_joined_mesh(const fs::path& home, const Membership& membership, const Identity& member,
                                   std::string_view preferred_slug) {
  if (membership.mesh_id.empty() || membership.member_id.empty() || membership.ws_url.empty()) {
    return fail(Errc::invalid_value, "the membership lacks a mesh id, member id or broker URL");
  }
  auto lock = ConfigLock::acquire(home);
  if (!lock) return fail(lock.error());
  auto meshes = load_joined_meshes(home);
  if (!meshes) return fail(meshes.error());
  for (const auto& mesh : *meshes) {
    if (mesh.mesh_id == membership.mesh_id) {
      return fail(Errc::already_exists, "mesh " + membership.mesh_id + " is already joined here as \"" + mesh.slug + "\"");
    }
  }
  auto slug = choose_slug(home, *meshes, membership, preferred_slug);
  if (!slug) return fail(slug.error());
  JoinedMesh mesh{.slug = *slug,
                  .mesh_id = membership.mesh_id,
                  .mesh_name = membership.mesh_name,
                  .member_id = membership.member_id,
                  .display_name = membership.display_name,
                  .role = membership.role,
                  .http_base = membership.http_base,
                  .broker_url = membership.ws_url,
                  .identity_file = home / "meshes" / *slug / "identity.json"};
  if (auto saved = member.save(mesh.identity_file, false); !saved) return fail(saved.error(), "saving the member key");
  meshes->push_back(mesh);
  if (auto written = write_config(home, *meshes); !written) return fail(written.error(), "writing " + mesh_config_path(home).string());
  return mesh;
}

Result<Identity> load_member_identity(const JoinedMesh& mesh) {
  auto id = Identity::load(mesh.identity_file);
  if (!id) return fail(id.error(), "the member key of mesh \"" + mesh.slug + "\" (" + mesh.identity_file.string() + ")");
  return id;
}

Result<JoinedMesh> select_mesh(const std::vector<JoinedMesh>& meshes, std::string_view slug_or_empty) {
  if (slug_or_empty.empty()) {
    if (meshes.empty()) return fail(Errc::not_found, "no mesh joined; run `claudemesh join <invite-url>` first");
    if (meshes.size() > 1) {
      return fail(Errc::invalid_value, "several meshes are joined (" + slug_list(meshes) + "); pick one with --mesh <slug>");
    }
    return meshes.front();
  }
  for (const auto& mesh : meshes) {
    if (mesh.slug == slug_or_empty) return mesh;
  }
  if (meshes.empty()) {
    return fail(Errc::not_found, "no mesh \"" + std::string(slug_or_empty) +
                                     "\": no mesh joined; run `claudemesh join <invite-url>` first");
  }
  return fail(Errc::not_found, "no mesh \"" + std::string(slug_or_empty) + "\"; joined: " + slug_list(meshes));
}

}  // namespace claudemesh
