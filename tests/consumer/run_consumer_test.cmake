# The installed package, used for real: installs idem from a build tree (the one under
# test, already built) into a temporary prefix, then builds and runs, outside idem's tree,
# a CMake project that finds it with find_package(idem CONFIG) and a program built with
# nothing but pkg-config. Static libraries (the default) are the demanding case: their
# private dependencies must travel with the package.
#
#   cmake -DIDEM_BUILD_DIR=<built tree> -DWORK_DIR=<scratch>
#         [-DGENERATOR=Ninja] [-DCXX=<compiler>] -P run_consumer_test.cmake

foreach(var IDEM_BUILD_DIR WORK_DIR)
  if(NOT DEFINED ${var})
    message(FATAL_ERROR "run_consumer_test.cmake: -D${var}=... is required")
  endif()
endforeach()
if(NOT GENERATOR)
  set(GENERATOR "Ninja")
endif()
if(NOT CXX)
  set(CXX c++)
endif()

set(prefix ${WORK_DIR}/prefix)
set(consumer_src ${WORK_DIR}/consumer-src)
set(consumer_build ${WORK_DIR}/consumer-build)
file(REMOVE_RECURSE ${WORK_DIR})
file(MAKE_DIRECTORY ${WORK_DIR})

function(run)
  message(STATUS "consumer test: ${ARGN}")
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "consumer test: failed (${rc}): ${ARGN}")
  endif()
endfunction()

run(${CMAKE_COMMAND} --install ${IDEM_BUILD_DIR} --prefix ${prefix})

# Copied out of the tree, so that nothing but the prefix can supply idem.
file(COPY ${CMAKE_CURRENT_LIST_DIR}/CMakeLists.txt ${CMAKE_CURRENT_LIST_DIR}/main.cpp
          ${CMAKE_CURRENT_LIST_DIR}/beast_main.cpp ${CMAKE_CURRENT_LIST_DIR}/pkg_config_main.cpp
     DESTINATION ${consumer_src})
run(${CMAKE_COMMAND} -S ${consumer_src} -B ${consumer_build} -G ${GENERATOR}
    -DCMAKE_BUILD_TYPE=Release -DCMAKE_PREFIX_PATH=${prefix})
# One job: ctest counts this test as one of its parallel slots.
run(${CMAKE_COMMAND} --build ${consumer_build} --parallel 1)
run(${consumer_build}/idem_consumer)
if(EXISTS ${consumer_build}/idem_consumer_beast)
  run(${consumer_build}/idem_consumer_beast)
endif()

# pkg-config: the .pc files found by path alone, relocated with the prefix.
find_program(PKG_CONFIG_EXECUTABLE pkg-config)
if(NOT PKG_CONFIG_EXECUTABLE)
  message(STATUS "consumer test: no pkg-config, idem.pc not checked")
  return()
endif()
file(GLOB_RECURSE pc_files ${prefix}/*/idem.pc)
list(GET pc_files 0 pc_file)
get_filename_component(pc_dir ${pc_file} DIRECTORY)
set(ENV{PKG_CONFIG_PATH} ${pc_dir})

# Builds `source` with the flags of pkg-config `package` alone, and runs it.
function(build_with_pkg_config package source binary)
  execute_process(COMMAND ${PKG_CONFIG_EXECUTABLE} --cflags --libs ${package}
                  OUTPUT_VARIABLE flags OUTPUT_STRIP_TRAILING_WHITESPACE RESULT_VARIABLE rc)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "consumer test: pkg-config ${package} failed")
  endif()
  separate_arguments(flags UNIX_COMMAND "${flags}")
  run(${CXX} -std=c++20 -O1 ${source} ${flags} -o ${consumer_build}/${binary})
  run(${consumer_build}/${binary})
endfunction()

build_with_pkg_config(idem ${consumer_src}/pkg_config_main.cpp idem_pkg_config)
# The adapter's file brings libidem and cpp-httplib with their flags.
build_with_pkg_config(idem-httplib ${consumer_src}/main.cpp idem_consumer_pkg_config)
