// SPDX-License-Identifier: MIT
// `claudemesh keygen` and `claudemesh identity show`.
#include "cli.hpp"

#include <claudemesh/identity.hpp>

#include <iostream>
#include <memory>

namespace claudemesh::cli {
namespace {

nlohmann::json describe(const Identity& id, const std::filesystem::path& path) {
  return {{"kind", std::string(to_string(id.kind()))},
          {"publicKey", id.public_key().hex()},
          {"fingerprint", id.public_key().fingerprint()},
          {"createdAt", id.created_at_ms()},
          {"file", path.string()}};
}

void print_human(const Identity& id, const std::filesystem::path& path) {
  std::cout << "kind         " << to_string(id.kind()) << "\n"
            << "public key   " << id.public_key().hex() << "\n"
            << "fingerprint  " << id.public_key().fingerprint() << "\n"
            << "file         " << path.string() << "\n";
}

struct KeygenArgs {
  std::string out;
  std::string kind = "member";
  bool force = false;
};

int run_keygen(const GlobalOptions& options, const KeygenArgs& args) {
  const auto kind = parse_identity_kind(args.kind);
  if (!kind) return report_error(options, Error(Errc::invalid_value, "unknown kind '" + args.kind + "'"));
  const std::filesystem::path path = args.out.empty() ? options.default_identity_path() : std::filesystem::path(args.out);
  auto id = Identity::generate(*kind);
  if (auto saved = id.save(path, args.force); !saved) {
    if (saved.error() == Errc::invalid_value) {
      return report_error(options, Error(Errc::invalid_value,
                                         path.string() + " already exists; pass --force to replace it "
                                                         "(the old key is lost)"));
    }
    return report_error(options, saved.error());
  }
  if (options.json) {
    print_json(describe(id, path));
  } else {
    std::cout << "created a new " << to_string(*kind) << " identity\n";
    print_human(id, path);
  }
  return exit_ok;
}

int run_show(const GlobalOptions& options, const std::string& file) {
  const std::filesystem::path path = file.empty() ? options.default_identity_path() : std::filesystem::path(file);
  auto id = Identity::load(path);
  if (!id) {
    if (id.error() == Errc::not_found) {
      // Exit 1, not 3: exit 3 is for unknown meshes, targets and messages.
      return report(options, Failure{.code = "not_found",
                                     .message = path.string() + " does not exist; run: claudemesh keygen",
                                     .exit_code = exit_failure});
    }
    return report_error(options, id.error());
  }
  if (options.json) {
    print_json(describe(*id, path));
  } else {
    print_human(*id, path);
  }
  return exit_ok;
}

}  // namespace

void register_identity_commands(CLI::App& app, GlobalOptions& options, int& exit_code) {
  auto keygen_args = std::make_shared<KeygenArgs>();
  auto* keygen = app.add_subcommand("keygen", "Create a new ed25519 identity and save it (mode 0600)");
  keygen->add_option("-o,--out", keygen_args->out, "Where to write it (default: <home>/identity.json)");
  keygen->add_option("-k,--kind", keygen_args->kind, "member, session or service")
      ->check(CLI::IsMember({"member", "session", "service"}))
      ->capture_default_str();
  keygen->add_flag("-f,--force", keygen_args->force, "Replace an existing identity file");
  keygen->callback([&options, &exit_code, keygen_args] { exit_code = run_keygen(options, *keygen_args); });

  auto* identity = app.add_subcommand("identity", "Inspect identities");
  identity->require_subcommand(1);
  auto file = std::make_shared<std::string>();
  auto* show = identity->add_subcommand("show", "Print an identity's public key and fingerprint (never the secret)");
  show->add_option("-f,--file", *file, "Identity file (default: <home>/identity.json)");
  show->callback([&options, &exit_code, file] { exit_code = run_show(options, *file); });
}

}  // namespace claudemesh::cli
