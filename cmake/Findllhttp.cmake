# SPDX-License-Identifier: MIT
# Find the llhttp C sources that Debian's node-llhttp package installs (Node's own HTTP parser).
# They are compiled into libclaudemesh, so nothing is linked at runtime. Provides:
#   llhttp_INCLUDE_DIR and llhttp_SOURCES (api.c, http.c, llhttp.c).
find_path(llhttp_INCLUDE_DIR NAMES llhttp.h PATHS /usr/share/include/llhttp /usr/include/llhttp /usr/include)
find_path(llhttp_SOURCE_DIR NAMES llhttp.c api.c http.c PATHS /usr/share/llhttp /usr/src/llhttp)
if(llhttp_SOURCE_DIR)
  set(llhttp_SOURCES ${llhttp_SOURCE_DIR}/api.c ${llhttp_SOURCE_DIR}/http.c ${llhttp_SOURCE_DIR}/llhttp.c)
endif()
if(llhttp_INCLUDE_DIR AND EXISTS "${llhttp_INCLUDE_DIR}/llhttp.h")
  file(STRINGS "${llhttp_INCLUDE_DIR}/llhttp.h" _llhttp_lines REGEX "^#define LLHTTP_VERSION_(MAJOR|MINOR|PATCH) ")
  foreach(_part MAJOR MINOR PATCH)
    string(REGEX MATCH "LLHTTP_VERSION_${_part} ([0-9]+)" _m "${_llhttp_lines}")
    set(_llhttp_${_part} "${CMAKE_MATCH_1}")
  endforeach()
  set(llhttp_VERSION "${_llhttp_MAJOR}.${_llhttp_MINOR}.${_llhttp_PATCH}")
endif()
include(FindPackageHandleStandardArgs)
find_package_handle_standard_args(llhttp REQUIRED_VARS llhttp_INCLUDE_DIR llhttp_SOURCE_DIR VERSION_VAR llhttp_VERSION)
mark_as_advanced(llhttp_INCLUDE_DIR llhttp_SOURCE_DIR)
