// SPDX-License-Identifier: MIT
/// @file export.hpp
/// Symbol visibility. libclaudemesh is built with hidden visibility; `CLAUDEMESH_API` marks what the
/// library exports. Internal helpers stay hidden, so a shared build exports exactly the public API.
#pragma once

#if defined(_WIN32)
#define CLAUDEMESH_API
#else
#define CLAUDEMESH_API __attribute__((visibility("default")))
#endif
