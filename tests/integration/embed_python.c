/* A program that embeds CPython through the shared libpython (python3.11-dev): the interpreter, and so its garbage
 * collector, lives in libpython3.11.so.1.0 rather than in the executable. Takes python's own command line. Built as
 * tests/embed/python3.11 so that discovery sees an ordinary `python3.11 -m synapse.app...` command line. */
#include <Python.h>

int main(int argc, char **argv) { return Py_BytesMain(argc, argv); }
