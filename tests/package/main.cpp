// SPDX-License-Identifier: MIT
// Consumer of the installed package: two identities exchange a signed, encrypted message.
#include <claudemesh/crypto.hpp>
#include <claudemesh/signatures.hpp>
#include <claudemesh/version.hpp>

#include <cstdio>
#include <string>

int main() {
  using namespace claudemesh;
  auto alice = Identity::generate(IdentityKind::member);
  auto bob = Identity::generate(IdentityKind::member);
  BoxKeyCache keys;
  auto sealed = keys.seal(alice, bob.public_key(), as_bytes("hello from an installed package"));
  if (!sealed) return 1;
  auto opened = keys.open(bob, alice.public_key(), *sealed);
  if (!opened) return 2;
  auto hello = sign_member_hello(alice, "mesh", "member", 1000);
  if (!verify_member_hello(hello, 1000)) return 3;
  std::printf("claudemesh %s: %s\n", version_string, std::string(opened->begin(), opened->end()).c_str());
  return 0;
}
