# SPDX-License-Identifier: MIT
# Install the build tree into a scratch prefix, then build and run tests/package against it with
# find_package(claudemesh), and compile the same program with the flags from claudemesh.pc.
# Invoked by CTest with BUILD_DIR, SOURCE_DIR, WORK_DIR, CONFIG, GENERATOR and CXX.
file(REMOVE_RECURSE "${WORK_DIR}")
set(prefix "${WORK_DIR}/prefix")

function(step what)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err TIMEOUT 600)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "${what} failed (${rc}):\n${out}\n${err}")
  endif()
  set(out "${out}" PARENT_SCOPE)
endfunction()

step("install" ${CMAKE_COMMAND} --install "${BUILD_DIR}" --prefix "${prefix}" --config "${CONFIG}")
step("configure consumer" ${CMAKE_COMMAND} -S "${SOURCE_DIR}" -B "${WORK_DIR}/build" -G "${GENERATOR}"
     "-DCMAKE_PREFIX_PATH=${prefix}" "-DCMAKE_CXX_COMPILER=${CXX}" "-DCMAKE_BUILD_TYPE=${CONFIG}")
step("build consumer" ${CMAKE_COMMAND} --build "${WORK_DIR}/build")
step("run consumer" "${WORK_DIR}/build/consumer")
string(FIND "${out}" "hello from an installed package" at)
if(at EQUAL -1)
  message(FATAL_ERROR "consumer printed: ${out}")
endif()
message(STATUS "find_package consumer: ${out}")

# A version outside SameMinorVersion must be refused.
file(WRITE "${WORK_DIR}/version-check/CMakeLists.txt"
     "cmake_minimum_required(VERSION 3.25)\nproject(v LANGUAGES CXX)\nfind_package(claudemesh 0.99 QUIET)\n"
     "if(claudemesh_FOUND)\n  message(FATAL_ERROR \"0.99 accepted\")\nendif()\n")
step("SameMinorVersion check" ${CMAKE_COMMAND} -S "${WORK_DIR}/version-check" -B "${WORK_DIR}/version-check/build"
     -G "${GENERATOR}" "-DCMAKE_PREFIX_PATH=${prefix}" "-DCMAKE_CXX_COMPILER=${CXX}")

# pkg-config users get the same library.
file(GLOB pc_dirs "${prefix}/lib*/pkgconfig" "${prefix}/lib/*/pkgconfig")
set(ENV{PKG_CONFIG_PATH} "${pc_dirs}")
# --static: a static libclaudemesh needs libsodium from Requires.private; harmless for a shared one.
step("pkg-config" pkg-config --static --cflags --libs claudemesh)
string(STRIP "${out}" pc_flags)
separate_arguments(pc_flags UNIX_COMMAND "${pc_flags}")
step("compile with pkg-config flags" ${CXX} "${SOURCE_DIR}/main.cpp" ${pc_flags} -o "${WORK_DIR}/consumer-pc"
     "-Wl,-rpath,${prefix}/lib")
step("run pkg-config consumer" "${WORK_DIR}/consumer-pc")
