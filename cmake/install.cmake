# SPDX-License-Identifier: MIT
# Install rules, exported targets, package config, version file and pkg-config file.
include(CMakePackageConfigHelpers)

set(CLAUDEMESH_CMAKE_DIR ${CMAKE_INSTALL_LIBDIR}/cmake/claudemesh)
get_target_property(CLAUDEMESH_LIBRARY_TYPE claudemesh TYPE)

install(TARGETS claudemesh EXPORT claudemeshTargets
  ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
  LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
  RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR}
  INCLUDES DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
install(DIRECTORY ${PROJECT_SOURCE_DIR}/include/claudemesh DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
install(FILES ${PROJECT_BINARY_DIR}/include/claudemesh/version.hpp
        DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/claudemesh)

install(EXPORT claudemeshTargets NAMESPACE claudemesh:: DESTINATION ${CLAUDEMESH_CMAKE_DIR})
export(EXPORT claudemeshTargets NAMESPACE claudemesh::
       FILE ${PROJECT_BINARY_DIR}/claudemeshTargets.cmake)

configure_package_config_file(${PROJECT_SOURCE_DIR}/cmake/claudemeshConfig.cmake.in
  ${PROJECT_BINARY_DIR}/claudemeshConfig.cmake INSTALL_DESTINATION ${CLAUDEMESH_CMAKE_DIR})
# 0.x: a minor bump may break the API, so only the same minor version is compatible.
write_basic_package_version_file(${PROJECT_BINARY_DIR}/claudemeshConfigVersion.cmake
  COMPATIBILITY SameMinorVersion)
install(FILES
  ${PROJECT_BINARY_DIR}/claudemeshConfig.cmake
  ${PROJECT_BINARY_DIR}/claudemeshConfigVersion.cmake
  ${PROJECT_SOURCE_DIR}/cmake/Findasio.cmake
  ${PROJECT_SOURCE_DIR}/cmake/Findsodium.cmake
  DESTINATION ${CLAUDEMESH_CMAKE_DIR})

if(CLAUDEMESH_LIBRARY_TYPE STREQUAL "STATIC_LIBRARY")
  set(CLAUDEMESH_PC_PRIVATE_REQUIRES "libsodium openssl sqlite3")
  set(CLAUDEMESH_PC_PRIVATE_LIBS "-lSQLiteCpp")  # Debian's SQLiteCpp ships no .pc file
else()
  set(CLAUDEMESH_PC_PRIVATE_REQUIRES "")
  set(CLAUDEMESH_PC_PRIVATE_LIBS "")
endif()
# Relocatable: the prefix is found relative to the .pc file, so a tree installed elsewhere still works.
file(RELATIVE_PATH CLAUDEMESH_PC_RELATIVE_PREFIX "/${CMAKE_INSTALL_LIBDIR}/pkgconfig" "/")
string(REGEX REPLACE "/$" "" CLAUDEMESH_PC_RELATIVE_PREFIX "${CLAUDEMESH_PC_RELATIVE_PREFIX}")
configure_file(${PROJECT_SOURCE_DIR}/cmake/claudemesh.pc.in ${PROJECT_BINARY_DIR}/claudemesh.pc @ONLY)
install(FILES ${PROJECT_BINARY_DIR}/claudemesh.pc DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig)
