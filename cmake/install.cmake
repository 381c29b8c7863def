# `cmake --install` lays out libidem, the stores and the adapters that this build has, as a
# CMake package (find_package(idem CONFIG): targets idem::core, idem::lmdb, idem::redis,
# idem::beast, idem::httplib, each also a COMPONENTS name) and as pkg-config files (idem.pc,
# and idem-<part>.pc per optional part). Included from the top-level CMakeLists.txt once
# every library target exists.

include(GNUInstallDirs)
include(CMakePackageConfigHelpers)

set(IDEM_INSTALL_CMAKEDIR ${CMAKE_INSTALL_LIBDIR}/cmake/idem)

# The public headers are C++20: say so in the usage requirements, so that a consumer gets
# the right standard from the target instead of having to know it.
target_compile_features(idem_core PUBLIC cxx_std_20)
set_target_properties(idem_core PROPERTIES EXPORT_NAME core)

set(IDEM_INSTALL_TARGETS idem_core)
set(IDEM_PARTS)
foreach(part lmdb redis beast httplib)
  if(TARGET idem_${part})
    set_target_properties(idem_${part} PROPERTIES EXPORT_NAME ${part})
    list(APPEND IDEM_INSTALL_TARGETS idem_${part})
    list(APPEND IDEM_PARTS ${part})
  endif()
endforeach()

install(TARGETS ${IDEM_INSTALL_TARGETS}
  EXPORT idemTargets
  ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
  LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
  RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR}
  INCLUDES DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})

# Headers of parts this build does not have would only fail to compile: leave them out.
set(IDEM_HEADER_EXCLUDES)
if(NOT TARGET idem_lmdb)
  list(APPEND IDEM_HEADER_EXCLUDES PATTERN "lmdb_*.hpp" EXCLUDE)
endif()
if(NOT TARGET idem_redis)
  list(APPEND IDEM_HEADER_EXCLUDES PATTERN "redis_*.hpp" EXCLUDE)
endif()
foreach(adapter beast httplib)
  if(NOT TARGET idem_${adapter})
    list(APPEND IDEM_HEADER_EXCLUDES PATTERN "${adapter}.hpp" EXCLUDE)
  endif()
endforeach()
install(DIRECTORY ${PROJECT_SOURCE_DIR}/include/idem
  DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}
  FILES_MATCHING PATTERN "*.hpp" ${IDEM_HEADER_EXCLUDES})

install(EXPORT idemTargets
  NAMESPACE idem::
  FILE idemTargets.cmake
  DESTINATION ${IDEM_INSTALL_CMAKEDIR})

# A static libidem carries its private dependencies in its exported link interface
# ($<LINK_ONLY:...>, which CMake writes for static libraries), so idemConfig.cmake must
# find them for the consumer; a shared one does not need them.
get_target_property(IDEM_CORE_TYPE idem_core TYPE)
if(IDEM_CORE_TYPE STREQUAL "STATIC_LIBRARY")
  set(IDEM_STATIC ON)
else()
  set(IDEM_STATIC OFF)
endif()

configure_package_config_file(${CMAKE_CURRENT_LIST_DIR}/idemConfig.cmake.in
  ${CMAKE_CURRENT_BINARY_DIR}/idemConfig.cmake
  INSTALL_DESTINATION ${IDEM_INSTALL_CMAKEDIR})
# 0.x: minor versions may break the API.
write_basic_package_version_file(${CMAKE_CURRENT_BINARY_DIR}/idemConfigVersion.cmake
  VERSION ${PROJECT_VERSION}
  COMPATIBILITY SameMinorVersion)
install(FILES
  ${CMAKE_CURRENT_BINARY_DIR}/idemConfig.cmake
  ${CMAKE_CURRENT_BINARY_DIR}/idemConfigVersion.cmake
  DESTINATION ${IDEM_INSTALL_CMAKEDIR})

# pkg-config files, relocatable (prefix relative to the file), since `cmake --install
# --prefix` may choose another prefix than the one configured.
if(IS_ABSOLUTE "${CMAKE_INSTALL_LIBDIR}")
  set(IDEM_PC_PREFIX "${CMAKE_INSTALL_PREFIX}")
else()
  string(REGEX REPLACE "[^/]+" ".." IDEM_PC_UP "${CMAKE_INSTALL_LIBDIR}/pkgconfig")
  set(IDEM_PC_PREFIX "\${pcfiledir}/${IDEM_PC_UP}")
endif()
# Static libraries need their dependencies on every link line; shared ones only privately.
if(IDEM_STATIC)
  set(IDEM_PC_REQUIRES "Requires")
else()
  set(IDEM_PC_REQUIRES "Requires.private")
endif()

function(idem_pkg_config file name description library requires)
  set(text "prefix=${IDEM_PC_PREFIX}
libdir=\${prefix}/${CMAKE_INSTALL_LIBDIR}
includedir=\${prefix}/${CMAKE_INSTALL_INCLUDEDIR}

Name: ${name}
Description: ${description}
Version: ${PROJECT_VERSION}
")
  if(requires)
    string(APPEND text "${IDEM_PC_REQUIRES}: ${requires}\n")
  endif()
  # libidem uses threads (the thread scheduler, the stores' locks).
  if(library STREQUAL "idem" AND IDEM_STATIC)
    string(APPEND text "Libs: -L\${libdir} -l${library} -pthread\n")
  elseif(library STREQUAL "idem")
    string(APPEND text "Libs: -L\${libdir} -l${library}\nLibs.private: -pthread\n")
  else()
    string(APPEND text "Libs: -L\${libdir} -l${library}\n")
  endif()
  string(APPEND text "Cflags: -I\${includedir}\n")
  file(GENERATE OUTPUT ${CMAKE_CURRENT_BINARY_DIR}/pkgconfig/${file}.pc CONTENT "${text}")
  install(FILES ${CMAKE_CURRENT_BINARY_DIR}/pkgconfig/${file}.pc
          DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig)
endfunction()

# The headers are C++20 (-std=c++20 or later); Boost.Beast is header-only and found in the
# compiler's default paths where distributions install it, so it has no Requires entry.
idem_pkg_config(idem "idem" "Exactly-once (Idempotency-Key) engine for HTTP APIs" idem
                "libcrypto >= 3, simdjson, libxxhash")
if(TARGET idem_lmdb)
  idem_pkg_config(idem-lmdb "idem-lmdb" "idem's embedded durable store (LMDB)" idem_lmdb
                  "idem, lmdb")
endif()
if(TARGET idem_redis)
  idem_pkg_config(idem-redis "idem-redis" "idem's Redis store" idem_redis "idem, hiredis")
endif()
if(TARGET idem_beast)
  idem_pkg_config(idem-beast "idem-beast" "idem for Boost.Beast servers" idem_beast "idem")
endif()
if(TARGET idem_httplib)
  idem_pkg_config(idem-httplib "idem-httplib" "idem for cpp-httplib servers" idem_httplib
                  "idem, cpp-httplib")
endif()
