# The systemd unit and the install rules agree: `cmake --install` into a staging root (DESTDIR)
# at the unit's prefix puts a file at every path the unit names: the ExecStart binary, the
# companion beside it, and every file: URI of Documentation= (which must be file: URIs: the
# project ships no man page and no web site); and the docs and examples README lists.
#   cmake -DBUILD_DIR=... -DSOURCE_DIR=... -DSTAGE=... -P install_check.cmake
foreach(var BUILD_DIR SOURCE_DIR STAGE)
  if(NOT DEFINED ${var})
    message(FATAL_ERROR "install_check.cmake: -D${var}= is required")
  endif()
endforeach()

set(unit_file ${SOURCE_DIR}/examples/cellos-reactor.service)
file(STRINGS ${unit_file} exec_lines REGEX "^ExecStart=")
file(STRINGS ${unit_file} doc_lines REGEX "^Documentation=")
list(LENGTH exec_lines n_exec)
if(NOT n_exec EQUAL 1)
  message(FATAL_ERROR "${unit_file}: expected one ExecStart=, found ${n_exec}")
endif()
string(REGEX REPLACE "^ExecStart=([^ ]+).*" "\\1" exec_path "${exec_lines}")
get_filename_component(bindir ${exec_path} DIRECTORY)
get_filename_component(prefix ${bindir} DIRECTORY)
if(NOT doc_lines)
  message(FATAL_ERROR "${unit_file}: no Documentation=")
endif()

file(REMOVE_RECURSE ${STAGE})
execute_process(
  COMMAND ${CMAKE_COMMAND} -E env DESTDIR=${STAGE}
          ${CMAKE_COMMAND} --install ${BUILD_DIR} --prefix ${prefix}
  RESULT_VARIABLE rc OUTPUT_QUIET)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "cmake --install ${BUILD_DIR} --prefix ${prefix} failed: ${rc}")
endif()

# What README says `cmake --install` puts under the prefix, beside what the unit names.
set(docdir ${prefix}/share/doc/cellos-reactor)
set(expected ${exec_path} ${bindir}/cellos-reactor-nats ${bindir}/cellos-reactor-export
    ${docdir}/README.md ${docdir}/LICENSE
    ${docdir}/docs/README.md ${docdir}/examples/fleet.toml
    ${docdir}/examples/cellos-reactor.service)
foreach(line IN LISTS doc_lines)
  string(REGEX REPLACE "^Documentation=" "" uris "${line}")
  separate_arguments(uris UNIX_COMMAND "${uris}")
  foreach(uri IN LISTS uris)
    if(NOT uri MATCHES "^file:(/.*)")
      message(FATAL_ERROR "${unit_file}: Documentation=${uri} is not a file: URI of the installed docs")
    endif()
    list(APPEND expected ${CMAKE_MATCH_1})
  endforeach()
endforeach()

list(REMOVE_DUPLICATES expected)
foreach(path IN LISTS expected)
  if(NOT EXISTS ${STAGE}${path})
    message(FATAL_ERROR "${unit_file} names ${path}, which `cmake --install` does not install")
  endif()
  message(STATUS "installed: ${path}")
endforeach()
file(REMOVE_RECURSE ${STAGE})
