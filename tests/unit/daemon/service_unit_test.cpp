// SPDX-License-Identifier: MIT
// `claudemesh daemon install-service`: the unit runs the exact installed binary with every byte of its path
// intact, never pins one mesh, is refused under CI, and is written whole or not at all.
#include "daemon/service_unit.hpp"

#include <doctest/doctest.h>

#include "support/files.hpp"

#include <cstring>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

using namespace claudemesh;
using namespace claudemesh::daemon;
using claudemesh::testing::mode_of;
using claudemesh::testing::read_all;
using claudemesh::testing::TempDir;
using claudemesh::testing::write_all;

namespace {

ServiceSpec plain_spec() {
  return {.executable = "/usr/local/bin/claudemeshd",
          .args = {"--daemon-dir", "/home/ada/.claudemesh/daemon"},
          .home = "/home/ada",
          .log_file = "/home/ada/.claudemesh/daemon/daemon.log"};
}

// The ExecStart= line of a rendered systemd unit.
std::string exec_start(const ServiceUnit& unit) {
  const auto begin = unit.contents.find("\nExecStart=");
  REQUIRE(begin != std::string::npos);
  const auto end = unit.contents.find('\n', begin + 1);
  return unit.contents.substr(begin + 1, end - begin - 1);
}

}  // namespace

TEST_CASE("service: the systemd user unit for a plain path, in full") {
  const auto unit = render_service_unit(ServicePlatform::systemd, plain_spec());
  CHECK(unit.path == "/home/ada/.config/systemd/user/claudemesh-daemon.service");
  CHECK(unit.contents ==
        "# Written by `claudemesh daemon install-service`; reinstalling rewrites it.\n"
        "[Unit]\n"
        "Description=claudemesh daemon\n"
        "After=network-online.target\n"
        "Wants=network-online.target\n"
        "\n"
        "[Service]\n"
        "Type=simple\n"
        "ExecStart=/usr/local/bin/claudemeshd --daemon-dir /home/ada/.claudemesh/daemon\n"
        "Restart=on-failure\n"
        "RestartSec=3\n"
        "StandardOutput=append:/home/ada/.claudemesh/daemon/daemon.log\n"
        "StandardError=append:/home/ada/.claudemesh/daemon/daemon.log\n"
        "NoNewPrivileges=yes\n"
        "\n"
        "[Install]\n"
        "WantedBy=default.target\n");
  CHECK(unit.start_command ==
        "systemctl --user daemon-reload && systemctl --user enable --now claudemesh-daemon.service");
  CHECK(unit.stop_command == "systemctl --user disable --now claudemesh-daemon.service");
}

TEST_CASE("service: the launchd agent for a plain path, in full") {
  const auto unit = render_service_unit(ServicePlatform::launchd, plain_spec());
  CHECK(unit.path == "/home/ada/Library/LaunchAgents/com.claudemesh.daemon.plist");
  CHECK(unit.contents ==
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
        "<!DOCTYPE plist PUBLIC \"-//Apple//DTD PLIST 1.0//EN\" \"http://www.apple.com/DTDs/PropertyList-1.0.dtd\">\n"
        "<plist version=\"1.0\">\n"
        "<dict>\n"
        "  <key>Label</key>\n"
        "  <string>com.claudemesh.daemon</string>\n"
        "  <key>ProgramArguments</key>\n"
        "  <array>\n"
        "    <string>/usr/local/bin/claudemeshd</string>\n"
        "    <string>--daemon-dir</string>\n"
        "    <string>/home/ada/.claudemesh/daemon</string>\n"
        "  </array>\n"
        "  <key>RunAtLoad</key>\n"
        "  <true/>\n"
        "  <key>KeepAlive</key>\n"
        "  <dict>\n"
        "    <key>SuccessfulExit</key>\n"
        "    <false/>\n"
        "  </dict>\n"
        "  <key>StandardOutPath</key>\n"
        "  <string>/home/ada/.claudemesh/daemon/daemon.log</string>\n"
        "  <key>StandardErrorPath</key>\n"
        "  <string>/home/ada/.claudemesh/daemon/daemon.log</string>\n"
        "  <key>WorkingDirectory</key>\n"
        "  <string>/home/ada</string>\n"
        "  <key>EnvironmentVariables</key>\n"
        "  <dict>\n"
        "    <key>HOME</key>\n"
        "    <string>/home/ada</string>\n"
        "  </dict>\n"
        "</dict>\n"
        "</plist>\n");
  CHECK(unit.start_command ==
        "launchctl bootstrap gui/$(id -u) /home/ada/Library/LaunchAgents/com.claudemesh.daemon.plist");
  CHECK(unit.stop_command == "launchctl bootout gui/$(id -u)/com.claudemesh.daemon");
}

TEST_CASE("service: ExecStart quotes paths with spaces, quotes, %, $ and backslashes as systemd reads them") {
  struct Row {
    const char* why;
    std::string arg;
    std::string expected;  // the word as it appears in ExecStart
  };
  const std::vector<Row> rows{
      {"plain", "/opt/bin", "/opt/bin"},
      {"space", "/Users/Ada Lovelace/d", R"("/Users/Ada Lovelace/d")"},
      {"tab", "a\tb", R"("a\tb")"},
      {"newline", "a\nb", R"("a\nb")"},
      {"other control character", std::string("a\x01z"), R"("a\x01z")"},
      {"double quote", R"(say"hi")", R"("say\"hi\"")"},
      {"single quote", "it's", R"("it's")"},
      {"backslash", R"(C:\dir)", R"("C:\\dir")"},
      {"percent (a specifier) unquoted", "/tmp/100%", "/tmp/100%%"},
      {"dollar (a variable) unquoted", "/tmp/$HOME", "/tmp/$$HOME"},
      {"percent and dollar inside quotes", "/a b/%i$x", R"("/a b/%%i$$x")"},
      {"semicolon", ";", R"(";")"},
      {"empty", "", R"("")"},
      {"leading dash in an argument is not a prefix", "--flag", "--flag"},
  };
  for (const auto& row : rows) {
    CAPTURE(row.why);
    auto spec = plain_spec();
    spec.args = {row.arg};
    CHECK(exec_start(render_service_unit(ServicePlatform::systemd, spec)) ==
          "ExecStart=/usr/local/bin/claudemeshd " + row.expected);
  }

  auto spec = plain_spec();
  spec.executable = R"(/home/ada/my "tools"/50%/$bin\claudemeshd)";
  spec.args = {};
  CHECK(exec_start(render_service_unit(ServicePlatform::systemd, spec)) ==
        R"(ExecStart="/home/ada/my \"tools\"/50%%/$$bin\\claudemeshd")");
  spec.executable = "-claudemeshd";  // not absolute: systemd would read '-' as a prefix, so make it stand out
  CHECK(exec_start(render_service_unit(ServicePlatform::systemd, spec)) == R"(ExecStart="-claudemeshd")");

  spec = plain_spec();
  spec.log_file = "/home/ada/100% logs/daemon.log";
  const auto contents = render_service_unit(ServicePlatform::systemd, spec).contents;
  CHECK(contents.find("StandardOutput=append:/home/ada/100%% logs/daemon.log\n") != std::string::npos);
  CHECK(contents.find("StandardError=append:/home/ada/100%% logs/daemon.log\n") != std::string::npos);
}

TEST_CASE("service: every launchd value is XML-escaped, and the plist path is shell-quoted in the start command") {
  ServiceSpec spec{.executable = "/Users/a&b/<bin>/claudemeshd",
                   .args = {R"(--x="it's")"},
                   .home = "/Users/Tom & Jerry's",
                   .log_file = "/Users/x/<log>"};
  const auto unit = render_service_unit(ServicePlatform::launchd, spec);
  CHECK(unit.contents.find("<string>/Users/a&amp;b/&lt;bin&gt;/claudemeshd</string>") != std::string::npos);
  CHECK(unit.contents.find("<string>--x=&quot;it&apos;s&quot;</string>") != std::string::npos);
  CHECK(unit.contents.find("<string>/Users/Tom &amp; Jerry&apos;s</string>") != std::string::npos);
  CHECK(unit.contents.find("<string>/Users/x/&lt;log&gt;</string>") != std::string::npos);
  CHECK(unit.contents.find("Tom & ") == std::string::npos);  // no raw ampersand left
  CHECK(unit.start_command ==
        R"(launchctl bootstrap gui/$(id -u) '/Users/Tom & Jerry'\''s/Library/LaunchAgents/com.claudemesh.daemon.plist')");
}

TEST_CASE("service: 1.30.2: the unit never pins a mesh, on either platform") {
  auto spec = plain_spec();
  spec.args = {"--mesh", "alpha", "--daemon-dir", "/d", "--mesh=beta", "--verbose", "--mesh"};
  for (const auto platform : {ServicePlatform::systemd, ServicePlatform::launchd}) {
    const auto unit = render_service_unit(platform, spec);
    CHECK(unit.contents.find("--mesh") == std::string::npos);
    CHECK(unit.contents.find("alpha") == std::string::npos);
    CHECK(unit.contents.find("beta") == std::string::npos);
    CHECK(unit.contents.find("--verbose") != std::string::npos);
    CHECK(unit.contents.find("/d") != std::string::npos);
  }
  CHECK(exec_start(render_service_unit(ServicePlatform::systemd, spec)) ==
        "ExecStart=/usr/local/bin/claudemeshd --daemon-dir /d --verbose");
}

TEST_CASE("service: installing a persistent service is recognised as CI when any CI variable is set and non-empty") {
  struct Row {
    const char* why;
    std::map<std::string, std::string> env;
    bool ci;
  };
  const std::vector<Row> rows{
      {"nothing set", {}, false},
      {"unrelated variables", {{"HOME", "/home/ada"}, {"CONTINUOUS", "1"}}, false},
      {"CI", {{"CI", "true"}}, true},
      {"CI empty", {{"CI", ""}}, false},
      {"GITHUB_ACTIONS", {{"GITHUB_ACTIONS", "true"}}, true},
      {"GITLAB_CI", {{"GITLAB_CI", "true"}}, true},
      {"BUILDKITE", {{"BUILDKITE", "true"}}, true},
      {"CIRCLECI", {{"CIRCLECI", "true"}}, true},
      {"JENKINS_URL", {{"JENKINS_URL", "https://ci.example/"}}, true},
      {"one empty, one set", {{"CI", ""}, {"BUILDKITE", "1"}}, true},
  };
  for (const auto& row : rows) {
    CAPTURE(row.why);
    auto getenv = [&](const char* name) -> const char* {
      const auto found = row.env.find(name);
      return found == row.env.end() ? nullptr : found->second.c_str();
    };
    CHECK(running_in_ci(getenv) == row.ci);
  }
}

TEST_CASE("service: writing the unit creates its directories, sets mode 0644 and replaces an existing unit") {
  TempDir home;
  auto spec = plain_spec();
  spec.home = home.path();
  auto unit = render_service_unit(ServicePlatform::systemd, spec);
  REQUIRE(write_service_unit(unit));
  CHECK(read_all(unit.path) == unit.contents);
  CHECK(mode_of(unit.path) == 0644);
  CHECK(std::filesystem::is_directory(home.path() / ".config" / "systemd" / "user"));

  ::chmod(unit.path.c_str(), 0600);
  unit.contents = "replaced\n";
  REQUIRE(write_service_unit(unit));
  CHECK(read_all(unit.path) == "replaced\n");
  CHECK(mode_of(unit.path) == 0644);
  // No temporary file is left beside it.
  std::size_t files = 0;
  for ([[maybe_unused]] const auto& entry : std::filesystem::directory_iterator(unit.path.parent_path())) ++files;
  CHECK(files == 1);
}

TEST_CASE("service: writing the unit where its directory cannot be created fails with io_error") {
  TempDir home;
  write_all(home.path() / "Library", "a file, not a directory");
  auto spec = plain_spec();
  spec.home = home.path();
  const auto unit = render_service_unit(ServicePlatform::launchd, spec);
  auto written = write_service_unit(unit);
  REQUIRE_FALSE(written);
  CHECK(written.error() == Errc::io_error);
  CHECK(written.error().message.find("Library") != std::string::npos);
}
