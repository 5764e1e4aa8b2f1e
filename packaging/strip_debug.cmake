# CPack pre-build script (CPACK_PRE_BUILD_SCRIPTS): removes the debug information from the staged binaries before they
# are packaged, keeping their symbol tables (doctor's uprobe self-check attaches to a function of the binary found by
# name in .symtab; CPACK_STRIP_FILES would run a plain strip, which drops it).
foreach(file IN LISTS CPACK_SP_STRIP_DEBUG_FILES)
  set(path "${CPACK_TEMPORARY_DIRECTORY}${CPACK_PACKAGING_INSTALL_PREFIX}/${file}")
  if(NOT EXISTS "${path}")
    message(FATAL_ERROR "strip_debug.cmake: ${path} was not installed")
  endif()
  execute_process(COMMAND "${CPACK_SP_STRIP}" --strip-debug "${path}" RESULT_VARIABLE result)
  if(NOT result EQUAL 0)
    message(FATAL_ERROR "strip_debug.cmake: ${CPACK_SP_STRIP} --strip-debug ${path}: ${result}")
  endif()
endforeach()
