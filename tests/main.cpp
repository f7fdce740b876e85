// SPDX-License-Identifier: MIT
// The one doctest main shared by every test executable (Debian's doctest has no doctest_with_main).
#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include <doctest/doctest.h>
