# Builds BPF C programs into stripped objects and libbpf skeleton headers.
#
# vmlinux.h is generated at build time from the build machine's kernel BTF (/sys/kernel/btf/vmlinux) with
# `bpftool btf dump file /sys/kernel/btf/vmlinux format c`. CO-RE relocations make the resulting objects portable
# to other kernels with BTF; set SP_VMLINUX_BTF to build against another BTF file.

find_program(BPF_CLANG NAMES clang clang-14 REQUIRED)
find_program(BPF_STRIP NAMES llvm-strip llvm-strip-14 REQUIRED)
find_program(BPFTOOL NAMES bpftool PATHS /usr/sbin /sbin REQUIRED)
set(SP_VMLINUX_BTF /sys/kernel/btf/vmlinux CACHE FILEPATH "Kernel BTF used to generate vmlinux.h")

set(SP_BPF_GEN_DIR ${CMAKE_BINARY_DIR}/bpf-gen)
file(MAKE_DIRECTORY ${SP_BPF_GEN_DIR})

add_custom_command(
  OUTPUT ${SP_BPF_GEN_DIR}/vmlinux.h
  COMMAND ${BPFTOOL} btf dump file ${SP_VMLINUX_BTF} format c > ${SP_BPF_GEN_DIR}/vmlinux.h.tmp
  COMMAND ${CMAKE_COMMAND} -E rename ${SP_BPF_GEN_DIR}/vmlinux.h.tmp ${SP_BPF_GEN_DIR}/vmlinux.h
  COMMENT "Generating vmlinux.h from ${SP_VMLINUX_BTF}"
  VERBATIM)
add_custom_target(sp_vmlinux_h DEPENDS ${SP_BPF_GEN_DIR}/vmlinux.h)

if(CMAKE_SYSTEM_PROCESSOR MATCHES "x86_64|AMD64")
  set(SP_BPF_ARCH x86)
  set(SP_MULTIARCH_INC /usr/include/x86_64-linux-gnu)
elseif(CMAKE_SYSTEM_PROCESSOR MATCHES "aarch64|arm64")
  set(SP_BPF_ARCH arm64)
  set(SP_MULTIARCH_INC /usr/include/aarch64-linux-gnu)
else()
  message(FATAL_ERROR "unsupported architecture ${CMAKE_SYSTEM_PROCESSOR} for BPF programs")
endif()

# bpf_skeleton(<name> <source.bpf.c> [DEPENDS headers...])
# Creates the INTERFACE target <name>_skel whose include directory holds <name>.skel.h.
function(bpf_skeleton name src)
  cmake_parse_arguments(ARG "" "" "DEPENDS" ${ARGN})
  get_filename_component(abs_src ${src} ABSOLUTE)
  set(obj ${SP_BPF_GEN_DIR}/${name}.bpf.o)
  set(skel ${SP_BPF_GEN_DIR}/${name}.skel.h)
  add_custom_command(
    OUTPUT ${skel}
    COMMAND ${BPF_CLANG} -g -O2 -target bpf -D__TARGET_ARCH_${SP_BPF_ARCH}
            -Wall -Werror
            -I${SP_BPF_GEN_DIR} -I${CMAKE_SOURCE_DIR}/bpf
            -idirafter ${SP_MULTIARCH_INC}
            -c ${abs_src} -o ${obj}.unstripped
    COMMAND ${BPF_STRIP} -g ${obj}.unstripped -o ${obj}
    COMMAND ${BPFTOOL} gen skeleton ${obj} name ${name}_bpf > ${skel}.tmp
    COMMAND ${CMAKE_COMMAND} -E rename ${skel}.tmp ${skel}
    DEPENDS ${abs_src} ${ARG_DEPENDS}
    COMMENT "BPF ${name}: clang -> llvm-strip -g -> bpftool gen skeleton"
    VERBATIM)
  add_custom_target(${name}_skel_gen DEPENDS ${skel})
  # vmlinux.h comes from a custom command in another directory: a file dependency would not cross it, a target does.
  add_dependencies(${name}_skel_gen sp_vmlinux_h)
  add_library(${name}_skel INTERFACE)
  add_dependencies(${name}_skel ${name}_skel_gen)
  target_include_directories(${name}_skel SYSTEM INTERFACE ${SP_BPF_GEN_DIR} ${CMAKE_SOURCE_DIR}/bpf)
endfunction()
