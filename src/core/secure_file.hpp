// SPDX-License-Identifier: MIT
// Small POSIX helpers for secret files: atomic 0600 writes and a bounded, permission-checked read.
// Kept out of the public API; Identity (and later the daemon's token file) use them.
#pragma once

#include <claudemesh/result.hpp>

#include <cstddef>
#include <filesystem>
#include <span>
#include <string>

namespace claudemesh::core {

/// Write `data` to `path` via a temporary file in the same directory (O_EXCL, mode 0600), fsync, rename,
/// then fsync the directory. Missing parent directories are created with mode 0700.
/// With `overwrite == false` an existing file is an error (`Errc::invalid_value`).
Result<void> write_secret_file(const std::filesystem::path& path, std::span<const char> data, bool overwrite);

/// Read at most `max_bytes` from `path`. Refuses files whose mode grants any group/other permission
/// (`Errc::insecure_permissions`) and files that are not regular files. The caller wipes the buffer.
Result<std::string> read_secret_file(const std::filesystem::path& path, std::size_t max_bytes);

}  // namespace claudemesh::core
