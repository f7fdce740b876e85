// SPDX-License-Identifier: MIT
// 01: create an identity, save it (0600, atomically), load it back, sign and verify.
#include <claudemesh/identity.hpp>

#include <cstdio>
#include <filesystem>

int main() {
  using namespace claudemesh;
  auto me = Identity::generate(IdentityKind::member);
  std::printf("public key  %s\nfingerprint %s\n", me.public_key().hex().c_str(), me.public_key().fingerprint().c_str());

  const auto path = std::filesystem::temp_directory_path() / ("claudemesh-example-" + me.public_key().hex().substr(0, 8)) /
                    "identity.json";
  if (auto saved = me.save(path); !saved) {
    std::fprintf(stderr, "save failed: %s\n", saved.error().describe().c_str());
    return 1;
  }
  auto loaded = Identity::load(path);
  std::filesystem::remove_all(path.parent_path());
  if (!loaded) {
    std::fprintf(stderr, "load failed: %s\n", loaded.error().describe().c_str());
    return 1;
  }

  const auto signature = loaded->sign("I am who I say I am");
  const bool ok = verify(me.public_key(), as_bytes("I am who I say I am"), signature);
  std::printf("signature   %s...\nverified    %s\n", signature.hex().substr(0, 32).c_str(), ok ? "yes" : "NO");
  return ok ? 0 : 1;
}
