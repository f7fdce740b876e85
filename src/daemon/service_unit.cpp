// SPDX-License-Identifier: MIT
#include "daemon/service_unit.hpp"

#include <claudemesh/bytes.hpp>
#include <claudemesh/system.hpp>

#include <algorithm>
#include <array>
#include <cctype>
#include <cerrno>
#include <cstdint>
#include <string_view>
#include <system_error>
#include <utility>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

namespace claudemesh::daemon {
namespace {

constexpr std::string_view systemd_unit_name = "claudemesh-daemon.service";
constexpr std::string_view launchd_label = "com.claudemesh.daemon";
constexpr mode_t unit_mode = 0644;  // service managers read it; nothing secret is in it

bool is_control(unsigned char c) { return c < 0x20 || c == 0x7f; }

void append_hex_escape(std::string& out, unsigned char c) {
  constexpr std::string_view digits = "0123456789abcdef";
  out += "\\x";
  out += digits[c >> 4];
  out += digits[c & 0xf];
}

// One word of an ExecStart line, as systemd.service(5) "Command lines" parses it back.
std::string systemd_word(std::string_view word, bool executable) {
  // systemd strips these prefixes from the executable even inside quotes; an absolute path never starts
  // with one, so quoting only makes a wrong spec visible in the file.
  constexpr std::string_view prefixes = "@-:+!";
  bool quote = word.empty() || (executable && prefixes.find(word.front()) != std::string_view::npos);
  for (const char ch : word) {
    const auto c = static_cast<unsigned char>(ch);
    if (c == ' ' || is_control(c) || ch == '"' || ch == '\'' || ch == '\\' || ch == ';') quote = true;
  }
  std::string out;
  if (quote) out += '"';
  for (const char ch : word) {
    const auto c = static_cast<unsigned char>(ch);
    if (ch == '%') {
      out += "%%";  // specifiers are expanded before the line is split, quoted or not
    } else if (ch == '$') {
      out += "$$";  // environment variables are expanded in every word
    } else if (ch == '\\' || ch == '"') {
      out += '\\';
      out += ch;
    } else if (ch == '\n') {
      out += "\\n";
    } else if (ch == '\t') {
      out += "\\t";
    } else if (is_control(c)) {
      append_hex_escape(out, c);
    } else {
      out += ch;
    }
  }
  if (quote) out += '"';
  return out;
}

// A path in a setting that systemd does not split into words (StandardOutput=append:...): only specifiers
// are expanded there.
std::string systemd_path(const std::filesystem::path& path) {
  std::string out;
  for (const char ch : path.string()) {
    if (ch == '%') out += '%';
    out += ch;
  }
  return out;
}

std::string xml_escape(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (const char ch : text) {
    switch (ch) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      case '\'': out += "&apos;"; break;
      default: out += ch;
    }
  }
  return out;
}

// A POSIX shell word: left bare when it is plainly safe, else single-quoted.
std::string shell_quote(std::string_view word) {
  constexpr std::string_view safe_punctuation = "/._-+:@,=";
  const bool safe = !word.empty() && std::ranges::all_of(word, [&](unsigned char c) {
    return std::isalnum(c) != 0 || safe_punctuation.find(static_cast<char>(c)) != std::string_view::npos;
  });
  if (safe) return std::string(word);
  std::string out = "'";
  for (const char ch : word) {
    if (ch == '\'') {
      out += R"('\'')";
    } else {
      out += ch;
    }
  }
  out += '\'';
  return out;
}

// One daemon serves every mesh: a unit pinned to one mesh sent users with several meshes to the cold path.
std::vector<std::string> without_mesh(const std::vector<std::string>& args) {
  std::vector<std::string> out;
  for (std::size_t i = 0; i < args.size(); ++i) {
    if (args[i] == "--mesh") {
      ++i;  // and its value
      continue;
    }
    if (args[i].starts_with("--mesh=")) continue;
    out.push_back(args[i]);
  }
  return out;
}

ServiceUnit render_systemd(const ServiceSpec& spec, const std::vector<std::string>& args) {
  std::string exec_start = systemd_word(spec.executable.string(), true);
  for (const auto& arg : args) exec_start += ' ' + systemd_word(arg, false);
  const std::string log = systemd_path(spec.log_file);
  ServiceUnit unit;
  unit.path = spec.home / ".config" / "systemd" / "user" / std::string(systemd_unit_name);
  unit.contents =
      "# Written by `claudemesh daemon install-service`; reinstalling rewrites it.\n"
      "[Unit]\n"
      "Description=claudemesh daemon\n"
      "After=network-online.target\n"
      "Wants=network-online.target\n"
      "\n"
      "[Service]\n"
      "Type=simple\n"
      "ExecStart=" + exec_start + "\n"
      "Restart=on-failure\n"
      "RestartSec=3\n"
      "StandardOutput=append:" + log + "\n"
      "StandardError=append:" + log + "\n"
      "NoNewPrivileges=yes\n"
      "\n"
      "[Install]\n"
      "WantedBy=default.target\n";
  unit.start_command = "systemctl --user daemon-reload && systemctl --user enable --now " +
                       std::string(systemd_unit_name);
  unit.stop_command = "systemctl --user disable --now " + std::string(systemd_unit_name);
  return unit;
}

ServiceUnit render_launchd(const ServiceSpec& spec, const std::vector<std::string>& args) {
  auto string_element = [](std::string_view indent, std::string_view value) {
    return std::string(indent) + "<string>" + xml_escape(value) + "</string>\n";
  };
  std::string program = string_element("    ", spec.executable.string());
  for (const auto& arg : args) program += string_element("    ", arg);
  const std::string log = string_element("  ", spec.log_file.string());
  ServiceUnit unit;
  unit.path = spec.home / "Library" / "LaunchAgents" / (std::string(launchd_label) + ".plist");
  unit.contents =
      "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
      "<!DOCTYPE plist PUBLIC \"-//Apple//DTD PLIST 1.0//EN\" \"http://www.apple.com/DTDs/PropertyList-1.0.dtd\">\n"
      "<plist version=\"1.0\">\n"
      "<dict>\n"
      "  <key>Label</key>\n" +
      string_element("  ", launchd_label) +
      "  <key>ProgramArguments</key>\n"
      "  <array>\n" +
      program +
      "  </array>\n"
      "  <key>RunAtLoad</key>\n"
      "  <true/>\n"
      "  <key>KeepAlive</key>\n"
      "  <dict>\n"
      "    <key>SuccessfulExit</key>\n"
      "    <false/>\n"
      "  </dict>\n"
      "  <key>StandardOutPath</key>\n" +
      log +
      "  <key>StandardErrorPath</key>\n" +
      log +
      "  <key>WorkingDirectory</key>\n" +
      string_element("  ", spec.home.string()) +
      "  <key>EnvironmentVariables</key>\n"
      "  <dict>\n"
      "    <key>HOME</key>\n" +
      string_element("    ", spec.home.string()) +
      "  </dict>\n"
      "</dict>\n"
      "</plist>\n";
  unit.start_command = "launchctl bootstrap gui/$(id -u) " + shell_quote(unit.path.string());
  unit.stop_command = "launchctl bootout gui/$(id -u)/" + std::string(launchd_label);
  return unit;
}

Error os_error(std::string_view what, const std::filesystem::path& path, int err) {
  return {Errc::io_error, std::string(what) + " " + path.string() + ": " + std::generic_category().message(err)};
}

// Closes a descriptor on scope exit.
class FileDescriptor {
 public:
  explicit FileDescriptor(int fd) noexcept : fd_(fd) {}
  FileDescriptor(const FileDescriptor&) = delete;
  FileDescriptor& operator=(const FileDescriptor&) = delete;
  FileDescriptor(FileDescriptor&&) = delete;
  FileDescriptor& operator=(FileDescriptor&&) = delete;
  ~FileDescriptor() {
    if (fd_ >= 0) ::close(fd_);
  }
  [[nodiscard]] int get() const noexcept { return fd_; }
  int release() noexcept { return std::exchange(fd_, -1); }

 private:
  int fd_;
};

Result<void> write_fully(int fd, std::string_view data, const std::filesystem::path& path) {
  while (!data.empty()) {
    const ssize_t n = ::write(fd, data.data(), data.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return fail(os_error("cannot write", path, errno));
    }
    data.remove_prefix(static_cast<std::size_t>(n));
  }
  return {};
}

}  // namespace

ServiceUnit render_service_unit(ServicePlatform platform, const ServiceSpec& spec) {
  const auto args = without_mesh(spec.args);
  return platform == ServicePlatform::systemd ? render_systemd(spec, args) : render_launchd(spec, args);
}

bool running_in_ci(const std::function<const char*(const char*)>& getenv) {
  static constexpr std::array names{"CI", "GITHUB_ACTIONS", "GITLAB_CI", "BUILDKITE", "CIRCLECI", "JENKINS_URL"};
  return std::ranges::any_of(names, [&](const char* name) {
    const char* value = getenv(name);
    return value != nullptr && *value != '\0';
  });
}

Result<void> write_service_unit(const ServiceUnit& unit) {
  const auto dir = unit.path.parent_path();
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) return fail(os_error("cannot create directory", dir, ec.value()));

  std::array<std::uint8_t, 6> suffix{};
  fill_random({}, suffix);
  const auto tmp = std::filesystem::path(unit.path.string() + ".tmp-" + to_hex(suffix));
  FileDescriptor fd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, unit_mode));
  if (fd.get() < 0) return fail(os_error("cannot create", tmp, errno));
  auto failed = [&](std::string_view what, const std::filesystem::path& path) {
    const int err = errno;
    ::unlink(tmp.c_str());
    return fail(os_error(what, path, err));
  };
  if (::fchmod(fd.get(), unit_mode) != 0) return failed("cannot chmod", tmp);  // the umask may have narrowed it
  if (auto written = write_fully(fd.get(), unit.contents, tmp); !written) {
    ::unlink(tmp.c_str());
    return written;
  }
  if (::fsync(fd.get()) != 0 || ::close(fd.release()) != 0) return failed("cannot sync", tmp);
  if (::rename(tmp.c_str(), unit.path.c_str()) != 0) return failed("cannot replace", unit.path);
  const FileDescriptor dir_fd(::open(dir.empty() ? "." : dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (dir_fd.get() >= 0) ::fsync(dir_fd.get());  // best effort: some filesystems refuse directory fsync
  return {};
}

}  // namespace claudemesh::daemon
