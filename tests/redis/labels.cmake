# Read by ctest after the discovered tests of idem_redis_tests are defined. The labels are
# set here because gtest_discover_tests flattens a list value: "unit;store;redis" given to
# its PROPERTIES would become LABELS unit plus two stray properties.
if(idem_redis_tests_TESTS)
  set_tests_properties(${idem_redis_tests_TESTS} PROPERTIES LABELS "unit;store;redis")
endif()
