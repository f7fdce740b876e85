// SPDX-License-Identifier: MIT
#include "transport/http/status.hpp"

namespace claudemesh::transport::http {

int status_for(Errc code) noexcept {
  switch (code) {
    case Errc::malformed:
    case Errc::wrong_type:
    case Errc::missing_field:
    case Errc::invalid_value:
    case Errc::duplicate_key:
    case Errc::invalid_target:
    case Errc::invalid_key:
    case Errc::attestation_mismatch:
    case Errc::ttl_too_long:
      return 400;
    case Errc::unauthorized:
    case Errc::replayed:
    case Errc::timestamp_skew:
    case Errc::bad_signature:
      return 401;
    case Errc::forbidden:
    case Errc::not_a_member:
    case Errc::revoked:
      return 403;
    case Errc::not_found:
    case Errc::unknown_target:
      return 404;
    case Errc::already_exists:
    case Errc::ambiguous_target:
    case Errc::idempotency_key_reused:
      return 409;
    case Errc::expired:
    case Errc::exhausted:
      return 410;
    case Errc::payload_too_large:
      return 413;
    case Errc::rate_limited:
      return 429;
    case Errc::capacity:
    case Errc::unavailable:
      return 503;
    default:
      return 500;
  }
}

}  // namespace claudemesh::transport::http
