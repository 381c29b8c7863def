# Read by ctest after the discovered tests of idem_adapter_tests are defined: a list value
# given to gtest_discover_tests' PROPERTIES is flattened ("unit;adapters" would become
# LABELS unit plus a stray property), so the labels are set here.
if(idem_adapter_tests_TESTS)
  set_tests_properties(${idem_adapter_tests_TESTS} PROPERTIES LABELS "unit;adapters")
endif()
