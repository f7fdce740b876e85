// SPDX-License-Identifier: MIT
// The HTTP status that answers an error, shared by the broker's API and the daemon's IPC so a code means
// the same status everywhere.
#pragma once

#include <claudemesh/error.hpp>

namespace claudemesh::transport::http {

/// 400 for refusals of the request's content, 401/403 for identity and permission, 404 not found, 409
/// conflicts, 410 expired, 413 too large, 429 rate limited, 503 unavailable; 500 for anything else.
int status_for(Errc code) noexcept;

}  // namespace claudemesh::transport::http
