// SPDX-License-Identifier: MIT
#include "core/secure_file.hpp"

#include <claudemesh/bytes.hpp>
#include <claudemesh/system.hpp>

#include <cerrno>
#include <utility>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

namespace claudemesh::core {
namespace {

Error os_error(const std::string& what, const std::filesystem::path& path, int err) {
  return Error(Errc::io_error, what + " " + path.string() + ": " + std::generic_category().message(err));
}

// Closes a descriptor on scope exit.
class FileDescriptor {
 public:
  explicit FileDescriptor(int fd) noexcept : fd_(fd) {}
  FileDescriptor(const FileDescriptor&) = delete;
  FileDescriptor& operator=(const FileDescriptor&) = delete;
  ~FileDescriptor() {
    if (fd_ >= 0) ::close(fd_);
  }
  [[nodiscard]] int get() const noexcept { return fd_; }
  int release() noexcept { return std::exchange(fd_, -1); }

 private:
  int fd_;
};

Result<void> write_all(int fd, std::span<const char> data, const std::filesystem::path& path) {
  while (!data.empty()) {
    const ssize_t n = ::write(fd, data.data(), data.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return fail(os_error("cannot write", path, errno));
    }
    data = data.subspan(static_cast<std::size_t>(n));
  }
  return {};
}

Result<void> create_private_dirs(const std::filesystem::path& dir) {
  if (dir.empty()) return {};
  std::error_code ec;
  if (std::filesystem::is_directory(dir, ec)) return {};
  if (auto parent = create_private_dirs(dir.parent_path()); !parent) return parent;
  if (::mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST) return fail(os_error("cannot create directory", dir, errno));
  return {};
}

std::string random_suffix() {
  ByteArray<6> bytes{};
  fill_random({}, bytes);
  return to_hex(bytes);
}

}  // namespace

Result<void> write_secret_file(const std::filesystem::path& path, std::span<const char> data, bool overwrite) {
  const auto dir = path.parent_path();
  if (auto made = create_private_dirs(dir); !made) return made;
  if (!overwrite && ::access(path.c_str(), F_OK) == 0) {
    return fail(Errc::invalid_value, path.string() + " already exists");
  }
  const auto tmp = std::filesystem::path(path.string() + ".tmp-" + random_suffix());
  FileDescriptor fd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600));
  if (fd.get() < 0) return fail(os_error("cannot create", tmp, errno));
  auto cleanup_tmp = [&] { ::unlink(tmp.c_str()); };
  if (::fchmod(fd.get(), 0600) != 0) {  // the umask may not widen 0600, but be explicit
    cleanup_tmp();
    return fail(os_error("cannot chmod", tmp, errno));
  }
  if (auto written = write_all(fd.get(), data, tmp); !written) {
    cleanup_tmp();
    return written;
  }
  if (::fsync(fd.get()) != 0 || ::close(fd.release()) != 0) {
    cleanup_tmp();
    return fail(os_error("cannot sync", tmp, errno));
  }
  if (!overwrite) {
    // link() fails if the target exists, so a concurrent writer cannot be silently replaced.
    if (::link(tmp.c_str(), path.c_str()) != 0) {
      const int err = errno;
      cleanup_tmp();
      if (err == EEXIST) return fail(Errc::invalid_value, path.string() + " already exists");
      return fail(os_error("cannot create", path, err));
    }
    cleanup_tmp();
  } else if (::rename(tmp.c_str(), path.c_str()) != 0) {
    const int err = errno;
    cleanup_tmp();
    return fail(os_error("cannot replace", path, err));
  }
  const auto dir_to_sync = dir.empty() ? std::filesystem::path(".") : dir;
  FileDescriptor dir_fd(::open(dir_to_sync.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (dir_fd.get() >= 0) ::fsync(dir_fd.get());  // best effort: some filesystems refuse directory fsync
  return {};
}

Result<std::string> read_secret_file(const std::filesystem::path& path, std::size_t max_bytes) {
  FileDescriptor fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
  if (fd.get() < 0) {
    if (errno == ENOENT) return fail(Errc::not_found, path.string() + " does not exist");
    return fail(os_error("cannot open", path, errno));
  }
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) return fail(os_error("cannot stat", path, errno));
  if (!S_ISREG(st.st_mode)) return fail(Errc::io_error, path.string() + " is not a regular file");
  if ((st.st_mode & 077) != 0) {
    return fail(Errc::insecure_permissions,
                path.string() + " is accessible by group or others; run: chmod 600 " + path.string());
  }
  if (static_cast<std::size_t>(st.st_size) > max_bytes) {
    return fail(Errc::payload_too_large, path.string() + " is larger than " + std::to_string(max_bytes) + " bytes");
  }
  std::string out(max_bytes + 1, '\0');
  std::size_t used = 0;
  while (used < out.size()) {
    const ssize_t n = ::read(fd.get(), out.data() + used, out.size() - used);
    if (n < 0) {
      if (errno == EINTR) continue;
      secure_wipe(out.data(), out.size());
      return fail(os_error("cannot read", path, errno));
    }
    if (n == 0) break;
    used += static_cast<std::size_t>(n);
  }
  if (used > max_bytes) {
    secure_wipe(out.data(), out.size());
    return fail(Errc::payload_too_large, path.string() + " is larger than " + std::to_string(max_bytes) + " bytes");
  }
  out.resize(used);  // shrinking never reallocates, so the tail being dropped stays inside our buffer
  return out;
}

}  // namespace claudemesh::core
