#!/bin/bash
# Regenerates the synthetic ELF files used by tests/unit/gc_locator_test.cpp from src/fake_gc.c. The output is
# checked in so that the tests do not depend on the compiler that happens to be installed; run this after editing
# the source. Each file stands for one way a CPython binary can be linked (see the comment in src/fake_gc.c).
set -euo pipefail
cd "$(dirname "$0")"

CC=${CC:-gcc}
CFLAGS=(-O1 -g0 -fno-asynchronous-unwind-tables -Wall -Wextra -Werror)

"$CC" "${CFLAGS[@]}" -fno-pie -no-pie -o fake_gc_nopie src/fake_gc.c
"$CC" "${CFLAGS[@]}" -fPIE -pie -o fake_gc_pie src/fake_gc.c
"$CC" "${CFLAGS[@]}" -fPIC -shared -o fake_gc_shared.so src/fake_gc.c
"$CC" "${CFLAGS[@]}" -fno-pie -no-pie -DTWO_GC_TABLES -o fake_gc_two_tables src/fake_gc.c
"$CC" "${CFLAGS[@]}" -fPIE -pie -DWITH_SYMBOLS -o fake_gc_symbols src/fake_gc.c
"$CC" "${CFLAGS[@]}" -fPIE -pie -DONLY_CLONES -o fake_gc_clones src/fake_gc.c
# What python:3.x-slim ships: no symbol table at all.
strip --strip-all -o fake_gc_pie_stripped fake_gc_pie
