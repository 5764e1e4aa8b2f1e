# Reading a Dockerfile from shell: shared by scripts/image_build.sh (which carries it out) and tests/dockerfile_test.sh
# (which inspects it).
# shellcheck shell=bash

# sp_dockerfile_instructions FILE: one instruction a line, continuation lines joined, comments and blank lines dropped
# (as Docker does, a comment line inside a continued instruction is dropped too).
sp_dockerfile_instructions() {
  sed -e '/^[[:space:]]*#/d' "$1" | sed -e ':a' -e '/\\$/N; s/\\\n/ /; ta' | sed -e '/^[[:space:]]*$/d'
}
