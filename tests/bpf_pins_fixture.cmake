# CTest fixture around every test that runs a reactor: a reactor pins its flow probes once per
# host under [flows] bpf_pin_dir (default /sys/fs/bpf/cellos-reactor) and mounts a bpffs on
# /sys/fs/bpf when none is there, and both outlive it by design (the next reactor reuses them).
# The tests must leave the host as they found it, so setup records what was there and cleanup
# removes only what the tests made.
#   cmake -DMODE=setup|cleanup -DSTATE=<file> -P bpf_pins_fixture.cmake
cmake_minimum_required(VERSION 3.20)  # IN_LIST
set(PIN_DIR /sys/fs/bpf/cellos-reactor)
if(MODE STREQUAL "setup")
  execute_process(COMMAND findmnt -n -t bpf /sys/fs/bpf RESULT_VARIABLE not_mounted OUTPUT_QUIET)
  set(had_pins 0)
  if(EXISTS ${PIN_DIR})
    set(had_pins 1)
  endif()
  file(WRITE ${STATE} "mounted=${not_mounted}\npins=${had_pins}\n")
elseif(MODE STREQUAL "cleanup")
  if(NOT EXISTS ${STATE})
    return()  # setup did not run: nothing is known about the host before the tests
  endif()
  file(STRINGS ${STATE} lines)
  if("pins=0" IN_LIST lines AND EXISTS ${PIN_DIR})
    execute_process(COMMAND rm -rf ${PIN_DIR} RESULT_VARIABLE rc)
    if(NOT rc EQUAL 0)
      message(FATAL_ERROR "could not remove the tests' BPF pins at ${PIN_DIR}")
    endif()
  endif()
  # findmnt's exit status was not 0 at setup: no bpffs was mounted, a reactor mounted it.
  if(NOT "mounted=0" IN_LIST lines)
    execute_process(COMMAND findmnt -n -t bpf /sys/fs/bpf RESULT_VARIABLE not_mounted OUTPUT_QUIET)
    if(not_mounted EQUAL 0)
      execute_process(COMMAND umount /sys/fs/bpf RESULT_VARIABLE rc)
      if(NOT rc EQUAL 0)
        message(FATAL_ERROR "could not unmount the bpffs the tests mounted on /sys/fs/bpf")
      endif()
    endif()
  endif()
  file(REMOVE ${STATE})
else()
  message(FATAL_ERROR "MODE must be setup or cleanup")
endif()
