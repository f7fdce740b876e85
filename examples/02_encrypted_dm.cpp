// SPDX-License-Identifier: MIT
// 02: Alice sends Bob an end-to-end encrypted direct message; a third party cannot open it.
// The BoxKeyCache keeps the precomputed shared key, so only the first message pays for key agreement.
#include <claudemesh/crypto.hpp>

#include <cstdio>
#include <string>

int main() {
  using namespace claudemesh;
  auto alice = Identity::generate(IdentityKind::member);
  auto bob = Identity::generate(IdentityKind::member);
  auto eve = Identity::generate(IdentityKind::member);

  BoxKeyCache alice_keys, bob_keys;
  auto sealed = alice_keys.seal(alice, bob.public_key(), as_bytes("the build is green"));
  if (!sealed) return 1;
  std::printf("on the wire: nonce=%s ciphertext=%s\n", sealed->nonce.c_str(), sealed->ciphertext.c_str());

  auto plain = bob_keys.open(bob, alice.public_key(), *sealed);
  if (!plain) {
    std::fprintf(stderr, "bob could not open it: %s\n", plain.error().describe().c_str());
    return 1;
  }
  std::printf("bob reads:   %s\n", std::string(plain->begin(), plain->end()).c_str());

  auto snooped = open_dm(eve, alice.public_key(), *sealed);
  std::printf("eve gets:    %s\n", snooped ? "plaintext (BUG)" : snooped.error().describe().c_str());
  return snooped ? 1 : 0;
}
