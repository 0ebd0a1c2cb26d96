# CTest fixture around every test that runs a reactor: a reactor pins its flow probes once per
# host under [flows] bpf_pin_dir (default /sys/fs/bpf/cellos-reactor) and mounts a bpffs on
# /sys/fs/bpf when none is there, and both outlive it by design (the next reactor reuses them).
# A reactor that holds the pins also keeps the cgroup-BPF hooks on from an empty cgroup,
# cellos/.bpf-keep under the cgroup2 root (ebpf/hook_keeper.h), which outlives it too.
# The tests must leave the host as they found it, so setup records what was there and cleanup
# removes only what the tests made.
#   cmake -DMODE=setup|cleanup -DSTATE=<file> -P bpf_pins_fixture.cmake
cmake_minimum_required(VERSION 3.20)  # IN_LIST
set(PIN_DIR /sys/fs/bpf/cellos-reactor)
if(EXISTS /sys/fs/cgroup/unified/cgroup.procs)
  set(CELLOS_CG /sys/fs/cgroup/unified/cellos)
else()
  set(CELLOS_CG /sys/fs/cgroup/cellos)
endif()
set(KEEPER ${CELLOS_CG}/.bpf-keep)
if(MODE STREQUAL "setup")
  execute_process(COMMAND findmnt -n -t bpf /sys/fs/bpf RESULT_VARIABLE not_mounted OUTPUT_QUIET)
  set(had_pins 0)
  if(EXISTS ${PIN_DIR})
    set(had_pins 1)
  endif()
  set(had_keeper 0)
  if(EXISTS ${KEEPER})
    set(had_keeper 1)
  endif()
  set(had_cellos 0)
  if(EXISTS ${CELLOS_CG})
    set(had_cellos 1)
  endif()
  file(WRITE ${STATE} "mounted=${not_mounted}\npins=${had_pins}\nkeeper=${had_keeper}\ncellos=${had_cellos}\n")
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
  # rmdir detaches the keeper's links (an empty cgroup: nothing else is in it); then the
  # cellos directory, if the tests made it and nothing else is left in it.
  if("keeper=0" IN_LIST lines AND EXISTS ${KEEPER})
    execute_process(COMMAND rmdir ${KEEPER} RESULT_VARIABLE rc)
    if(NOT rc EQUAL 0)
      message(FATAL_ERROR "could not remove the tests' hook keeper cgroup ${KEEPER}")
    endif()
  endif()
  if("cellos=0" IN_LIST lines AND EXISTS ${CELLOS_CG})
    execute_process(COMMAND rmdir ${CELLOS_CG} RESULT_VARIABLE rc ERROR_QUIET)
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
