/* A stand-in for a CPython binary, small enough to check in, for tests/unit/gc_locator_test.cpp.
 *
 * It holds what the GC locator looks for in a real interpreter: a method table shaped like the gc module's
 * (PyMethodDef: name, C function, flags, doc; 32 bytes on 64-bit) whose "collect" entry is METH_FASTCALL |
 * METH_KEYWORDS, plus a decoy table of another "module" that also has a "collect" method with the same flags. The
 * locator must pick the gc one by its neighbours' names. Built as a non-PIE executable, a PIE and a shared object by
 * make_fixtures.sh, so both the absolute-pointer and the relocation paths are exercised.
 *
 * Variants (preprocessor):
 *   TWO_GC_TABLES  a second gc-like table pointing at a different function: the locator must refuse to choose.
 *   WITH_SYMBOLS   functions named like CPython's collection function as GCC's LTO leaves them
 *                  (gc_collect_main.lto_priv.0 and its .cold part), for the symbol method.
 *   ONLY_CLONES    only an IPA clone (collect.constprop.0), whose argument registers cannot be trusted.
 */
#include <stddef.h>

typedef void *(*method_fn)(void *, void *);

struct method_def {
  const char *name;
  method_fn meth;
  int flags;
  const char *doc;
};

#define METH_VARARGS 0x01
#define METH_KEYWORDS 0x02
#define METH_NOARGS 0x04
#define METH_O 0x08
#define METH_FASTCALL 0x80

static volatile int sink;

/* Each function does something distinct so that identical-code folding cannot merge them. */
#define FAKE_FN(name, k)                                  \
  __attribute__((noinline, used)) void *name(void *m, void *a) { \
    sink += (k);                                          \
    return (char *)m + (size_t)a + (k);                   \
  }

FAKE_FN(fake_gc_enable, 1)
FAKE_FN(fake_gc_disable, 2)
FAKE_FN(fake_gc_isenabled, 3)
FAKE_FN(fake_gc_set_debug, 4)
FAKE_FN(fake_gc_get_debug, 5)
FAKE_FN(fake_gc_get_count, 6)
FAKE_FN(fake_gc_set_threshold, 7)
FAKE_FN(fake_gc_get_threshold, 8)
FAKE_FN(fake_gc_collect, 9)
FAKE_FN(fake_gc_get_objects, 10)
FAKE_FN(fake_gc_get_stats, 11)
FAKE_FN(fake_gc_is_tracked, 12)
FAKE_FN(fake_gc_get_referrers, 13)
FAKE_FN(fake_gc_get_referents, 14)
FAKE_FN(fake_gc_freeze, 15)
FAKE_FN(decoy_collect, 16)
FAKE_FN(decoy_flush, 17)
FAKE_FN(decoy_reset, 18)
FAKE_FN(other_gc_collect, 19)

/* Same order and flags as CPython 3.8's GcMethods. */
__attribute__((used)) static struct method_def gc_methods[] = {
    {"enable", fake_gc_enable, METH_NOARGS, "Enable automatic garbage collection."},
    {"disable", fake_gc_disable, METH_NOARGS, "Disable automatic garbage collection."},
    {"isenabled", fake_gc_isenabled, METH_NOARGS, NULL},
    {"set_debug", fake_gc_set_debug, METH_O, NULL},
    {"get_debug", fake_gc_get_debug, METH_NOARGS, NULL},
    {"get_count", fake_gc_get_count, METH_NOARGS, NULL},
    {"set_threshold", fake_gc_set_threshold, METH_VARARGS, NULL},
    {"get_threshold", fake_gc_get_threshold, METH_NOARGS, NULL},
    {"collect", fake_gc_collect, METH_FASTCALL | METH_KEYWORDS, "Run the garbage collector."},
    {"get_objects", fake_gc_get_objects, METH_FASTCALL | METH_KEYWORDS, NULL},
    {"get_stats", fake_gc_get_stats, METH_NOARGS, NULL},
    {"is_tracked", fake_gc_is_tracked, METH_O, NULL},
    {"get_referrers", fake_gc_get_referrers, METH_VARARGS, NULL},
    {"get_referents", fake_gc_get_referents, METH_VARARGS, NULL},
    {"freeze", fake_gc_freeze, METH_NOARGS, NULL},
    {NULL, NULL, 0, NULL},
};

/* Another module with a "collect" method, flags identical to gc's: only the neighbours tell them apart. */
__attribute__((used)) static struct method_def decoy_methods[] = {
    {"flush", decoy_flush, METH_NOARGS, NULL},
    {"collect", decoy_collect, METH_FASTCALL | METH_KEYWORDS, "Collect the decoy's things."},
    {"reset", decoy_reset, METH_NOARGS, NULL},
    {NULL, NULL, 0, NULL},
};

#ifdef TWO_GC_TABLES
__attribute__((used)) static struct method_def other_gc_methods[] = {
    {"enable", fake_gc_enable, METH_NOARGS, NULL},
    {"disable", fake_gc_disable, METH_NOARGS, NULL},
    {"isenabled", fake_gc_isenabled, METH_NOARGS, NULL},
    {"get_count", fake_gc_get_count, METH_NOARGS, NULL},
    {"set_threshold", fake_gc_set_threshold, METH_VARARGS, NULL},
    {"get_threshold", fake_gc_get_threshold, METH_NOARGS, NULL},
    {"collect", other_gc_collect, METH_FASTCALL | METH_KEYWORDS, NULL},
    {"get_objects", fake_gc_get_objects, METH_FASTCALL | METH_KEYWORDS, NULL},
    {NULL, NULL, 0, NULL},
};
#endif

#ifdef WITH_SYMBOLS
/* Names with dots cannot be spelled in C: give the assembler the name GCC's LTO would have produced. */
__attribute__((noinline, used)) long lto_collect_main(void *tstate, int generation, long *a, long *b, int nofail)
    __asm__("gc_collect_main.lto_priv.0");
long lto_collect_main(void *tstate, int generation, long *a, long *b, int nofail) {
  sink += generation + nofail;
  return (long)tstate + (a ? *a : 0) + (b ? *b : 0);
}
__attribute__((noinline, used, cold)) void lto_collect_main_cold(void) __asm__("gc_collect_main.lto_priv.0.cold");
void lto_collect_main_cold(void) { sink += 100; }
#endif

#ifdef ONLY_CLONES
__attribute__((noinline, used)) long clone_collect(void *state, long *a) __asm__("collect.constprop.0");
long clone_collect(void *state, long *a) {
  sink += 200;
  return (long)state + (a ? *a : 0);
}
#endif

/* PY_VERSION as CPython keeps it: a string of its own in read-only data. */
__attribute__((used)) const char fake_py_version[] = "3.11.2";

int main(int argc, char **argv) {
  (void)argv;
  /* Reach the tables through a volatile index so the compiler keeps them in full. */
  volatile int i = argc;
  return gc_methods[i % 15].flags + decoy_methods[i % 3].flags;
}
