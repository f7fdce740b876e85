# SPDX-License-Identifier: MIT
# Runs the real claudemesh CLI in a temporary home: keygen, identity show (human and --json), the
# refusal to overwrite, --force, a missing file, and a usage error. Invoked by CTest with -DCLI=<binary>.
string(RANDOM LENGTH 8 suffix)
set(home "$ENV{TMPDIR}")
if(NOT home)
  set(home "/tmp")
endif()
set(home "${home}/claudemesh-cli-test-${suffix}")
file(REMOVE_RECURSE "${home}")

function(run expected_rc)
  execute_process(COMMAND ${CLI} --home "${home}" ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err
                  TIMEOUT 30)
  if(NOT rc EQUAL expected_rc)
    file(REMOVE_RECURSE "${home}")
    message(FATAL_ERROR "claudemesh ${ARGN}: exit ${rc}, expected ${expected_rc}\nstdout: ${out}\nstderr: ${err}")
  endif()
  set(out "${out}" PARENT_SCOPE)
  set(err "${err}" PARENT_SCOPE)
endfunction()

function(expect haystack needle what)
  string(FIND "${haystack}" "${needle}" at)
  if(at EQUAL -1)
    file(REMOVE_RECURSE "${home}")
    message(FATAL_ERROR "${what}: '${needle}' not found in:\n${haystack}")
  endif()
endfunction()

run(0 --json keygen)
string(JSON public_key GET "${out}" publicKey)
string(JSON kind GET "${out}" kind)
string(LENGTH "${public_key}" key_len)
if(NOT key_len EQUAL 64 OR NOT kind STREQUAL "member")
  message(FATAL_ERROR "unexpected keygen output: ${out}")
endif()

execute_process(COMMAND stat -c %a "${home}/identity.json" OUTPUT_VARIABLE mode OUTPUT_STRIP_TRAILING_WHITESPACE)
if(NOT mode STREQUAL "600")
  message(FATAL_ERROR "identity.json has mode ${mode}, expected 600")
endif()

file(READ "${home}/identity.json" saved)
string(JSON secret GET "${saved}" secretKey)

run(0 identity show)
expect("${out}" "${public_key}" "identity show prints the public key")
string(FIND "${out}" "${secret}" leak)
if(NOT leak EQUAL -1)
  message(FATAL_ERROR "identity show printed the secret key")
endif()

run(0 --json identity show)
string(JSON shown GET "${out}" publicKey)
if(NOT shown STREQUAL public_key)
  message(FATAL_ERROR "identity show --json gave ${shown}, keygen gave ${public_key}")
endif()

run(1 keygen)                                   # never silently replaces a key
expect("${err}" "already exists" "keygen refuses to overwrite")
run(0 --json identity show)
string(JSON still GET "${out}" publicKey)
if(NOT still STREQUAL public_key)
  message(FATAL_ERROR "a refused keygen changed the identity")
endif()

run(0 --json keygen --force --kind session)
string(JSON kind GET "${out}" kind)
if(NOT kind STREQUAL "session")
  message(FATAL_ERROR "--kind session produced ${kind}")
endif()

run(1 --json identity show --file "${home}/absent.json")
string(JSON code GET "${out}" error code)
if(NOT code STREQUAL "not_found")
  message(FATAL_ERROR "missing file reported ${code}")
endif()

file(CHMOD "${home}/identity.json" PERMISSIONS OWNER_READ OWNER_WRITE GROUP_READ WORLD_READ)
run(1 --json identity show)
string(JSON code GET "${out}" error code)
if(NOT code STREQUAL "insecure_permissions")
  message(FATAL_ERROR "a 0644 identity file reported ${code}")
endif()

run(2 keygen --kind wizard)                     # usage error
run(2 no-such-verb)
file(REMOVE_RECURSE "${home}")
