// SPDX-License-Identifier: MIT
/// @file mesh_config.hpp
/// The meshes a user has joined: `<home>/config.json`, written by `claudemesh join` / `claudemesh mesh create`
/// and read by the daemon (`claudemeshd`) and every CLI verb that needs a mesh.
///
/// Layout (home is `--home`, `$CLAUDEMESH_HOME` or `~/.claudemesh`; directories 0700, files 0600):
///
/// @code
/// <home>/config.json                  {"version":1,"meshes":[{"slug","mesh_id","mesh_name","member_id",
///                                       "display_name","role","http_base","broker_url","identity_file"}]}
/// <home>/meshes/<slug>/identity.json  the member key for that mesh (Identity::save), one fresh key per mesh
/// @endcode
///
/// `identity_file` is stored relative to home, so a home directory can be moved; `load_joined_meshes()`
/// returns it absolute. `config.json` is replaced atomically (temporary file, fsync, rename), and additions
/// hold an exclusive lock on `<home>/config.lock`, so two concurrent `join`s both land.
///
/// @code
/// auto meshes = claudemesh::load_joined_meshes(home);
/// if (!meshes) return fail(meshes.error());
/// auto mesh = claudemesh::select_mesh(*meshes, flag_mesh);       // "" picks the only one
/// auto member = claudemesh::load_member_identity(*mesh);
/// @endcode
///
/// @par Thread safety
/// Free functions without shared state; concurrent calls (also from several processes) are safe.
#pragma once

#include <claudemesh/broker_api.hpp>
#include <claudemesh/export.hpp>
#include <claudemesh/identity.hpp>
#include <claudemesh/result.hpp>

#include <cstddef>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

namespace claudemesh {

/// One joined mesh, as `config.json` records it.
struct JoinedMesh {
  std::string slug;          ///< the local name (`--mesh <slug>`): `^[a-z0-9][a-z0-9-]{1,31}$`, unique per home
  std::string mesh_id;       ///< the broker's id of the mesh
  std::string mesh_name;     ///< the mesh's name at the broker
  std::string member_id;     ///< our member id in that mesh
  std::string display_name;  ///< the name we joined under
  std::string role;          ///< "owner", "admin" or "member" when we joined
  std::string http_base;     ///< the broker's HTTP API, e.g. "http://127.0.0.1:7900"
  std::string broker_url;    ///< the broker's WebSocket, e.g. "ws://127.0.0.1:7900/ws"
  std::filesystem::path identity_file;  ///< the member key; absolute after `load_joined_meshes()`
};

/// The `version` written into `config.json`; newer files are refused.
inline constexpr int mesh_config_version = 1;

/// The largest `config.json` that is read.
inline constexpr std::size_t mesh_config_max_bytes = std::size_t{1} << 20;

/// `<home>/config.json`.
CLAUDEMESH_API std::filesystem::path mesh_config_path(const std::filesystem::path& home);

/// Whether `slug` is a valid mesh slug: 2 to 32 characters of `[a-z0-9-]`, the first not '-'.
CLAUDEMESH_API bool is_valid_mesh_slug(std::string_view slug) noexcept;

/// Make a slug out of free text (a mesh name): lowercase, every run of other characters becomes one '-',
/// no leading or trailing '-', at most 32 characters. @returns "mesh" when nothing usable is left.
CLAUDEMESH_API std::string slug_from_name(std::string_view name);

/// Read `<home>/config.json`.
/// @returns the meshes in file order (each `identity_file` made absolute); an empty list when the file does
///   not exist. Errors name the file: `Errc::malformed` (not JSON, wrong shape, a missing or non-string
///   field, an invalid or repeated slug, a repeated mesh id), `Errc::invalid_value` (a `version` newer than
///   `mesh_config_version`: written by a newer claudemesh), `Errc::payload_too_large` (over
///   `mesh_config_max_bytes`), `Errc::io_error`.
CLAUDEMESH_API Result<std::vector<JoinedMesh>> load_joined_meshes(const std::filesystem::path& home);

/// Record a new membership: save `member` at `<home>/meshes/<slug>/identity.json` (0600) and append the
/// entry to `config.json` (atomically, under the config lock).
///
/// The slug is `preferred_slug` when given: it must be valid (`Errc::invalid_value`) and not in use
/// (`Errc::already_exists`). Otherwise it is `slug_from_name(membership.mesh_name)`, made unique by appending
/// "-2", "-3", ... A slug is in use when config.json lists it or `<home>/meshes/<slug>` exists (a key left
/// there is never overwritten).
/// @returns the entry as `load_joined_meshes()` would return it; `Errc::already_exists` when the mesh id is
///   already joined in this home; `Errc::invalid_value` for a membership without mesh id, member id or
///   broker URL; or the errors of `load_joined_meshes()` and of writing files.
CLAUDEMESH_API Result<JoinedMesh> add_joined_mesh(const std::filesystem::path& home, const Membership& membership,
                                                  const Identity& member, std::string_view preferred_slug);

/// Load the member key of a joined mesh (`Identity::load(mesh.identity_file)`; errors name the mesh).
CLAUDEMESH_API Result<Identity> load_member_identity(const JoinedMesh& mesh);

/// Pick the mesh a command acts on.
/// @returns with an empty `slug_or_empty`: the only joined mesh; `Errc::not_found` ("no mesh joined; run
///   `claudemesh join <invite-url>` first") when there is none; `Errc::invalid_value` listing the slugs when
///   there are several (pass --mesh). With a slug: that mesh, or `Errc::not_found` listing the joined slugs.
CLAUDEMESH_API Result<JoinedMesh> select_mesh(const std::vector<JoinedMesh>& meshes, std::string_view slug_or_empty);

}  // namespace claudemesh
