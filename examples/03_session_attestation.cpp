// SPDX-License-Identifier: MIT
// 03: a member vouches for a short-lived session key; the session proves itself to a broker.
// This is what `claudemesh launch` does for every agent session.
#include <claudemesh/signatures.hpp>
#include <claudemesh/system.hpp>

#include <cstdio>

int main() {
  using namespace claudemesh;
  auto member = Identity::generate(IdentityKind::member);
  auto session = Identity::generate(IdentityKind::session);
  const auto now = now_ms();

  // The member signs: "this session key may act for me for 12 hours".
  auto attestation = attest_session(member, session.public_key(), now + default_attestation_ttl_ms);
  if (!attestation) return 1;
  // The session signs a fresh hello bound to one mesh.
  auto hello = sign_session_hello(session, "mesh-demo", member.public_key(), now);

  // What the broker checks: keys match, attestation valid, hello signed by the session key, clock skew.
  auto verdict = verify_session_credentials(hello, *attestation, now_ms());
  std::printf("session hello: %s\n", verdict ? "accepted" : verdict.error().describe().c_str());

  // Replayed into another mesh, the same hello is refused.
  hello.mesh_id = "mesh-other";
  auto replay = verify_session_credentials(hello, *attestation, now_ms());
  std::printf("replayed into another mesh: %s\n", replay ? "accepted (BUG)" : replay.error().describe().c_str());
  return verdict && !replay ? 0 : 1;
}
