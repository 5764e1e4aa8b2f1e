/* Compiled once per CPython version whose headers (internal ones included) are installed: offsetof() of every field
 * the desc walk reads, from that version's own headers, for tests/unit/py_offsets_test.cpp to compare with the table
 * in userspace/core/python/py_offsets.cpp. SP_PY_FN names the function (one per version). */
#define Py_BUILD_CORE 1
#include <Python.h>
#include <stddef.h>

#include "internal/pycore_code.h"
#include "internal/pycore_interp.h"
#include "internal/pycore_runtime.h"
#if PY_VERSION_HEX >= 0x030B0000
#include "internal/pycore_frame.h"
#else
#include <frameobject.h>
#endif

#include "py_header_offsets.h"

int SP_PY_FN(struct sp_py_header_offsets *o) {
#if PY_VERSION_HEX >= 0x030C0000
  o->tss_key = offsetof(_PyRuntimeState, autoTSSkey._key);
#else
  o->tss_key = offsetof(_PyRuntimeState, gilstate.autoTSSkey._key);
#endif
  o->interp_head = offsetof(_PyRuntimeState, interpreters.head);
#if PY_VERSION_HEX >= 0x030B0000
  o->threads_head = offsetof(PyInterpreterState, threads.head);
#else
  o->threads_head = offsetof(PyInterpreterState, tstate_head);
#endif
  o->ts_next = offsetof(PyThreadState, next);
  o->ts_thread_id = offsetof(PyThreadState, thread_id);
#if PY_VERSION_HEX >= 0x030D0000
  o->ts_frame = offsetof(PyThreadState, current_frame);
  o->cframe_current = -1;
  o->f_code = offsetof(_PyInterpreterFrame, f_executable);
#elif PY_VERSION_HEX >= 0x030B0000
  o->ts_frame = offsetof(PyThreadState, cframe);
  o->cframe_current = offsetof(_PyCFrame, current_frame);
  o->f_code = offsetof(_PyInterpreterFrame, f_code);
#else
  o->ts_frame = offsetof(PyThreadState, frame);
  o->cframe_current = -1;
  o->f_code = offsetof(PyFrameObject, f_code);
#endif
#if PY_VERSION_HEX >= 0x030B0000
  o->f_back = offsetof(_PyInterpreterFrame, previous);
  o->f_locals = offsetof(_PyInterpreterFrame, localsplus);
  o->co_varnames = offsetof(PyCodeObject, co_localsplusnames);
#else
  o->f_back = offsetof(PyFrameObject, f_back);
  o->f_locals = offsetof(PyFrameObject, f_localsplus);
  o->co_varnames = offsetof(PyCodeObject, co_varnames);
#endif
  o->co_name = offsetof(PyCodeObject, co_name);
  o->ob_type = offsetof(PyObject, ob_type);
  o->tuple_size = offsetof(PyVarObject, ob_size);
  o->tuple_items = offsetof(PyTupleObject, ob_item);
  o->str_length = offsetof(PyASCIIObject, length);
  o->str_state = offsetof(PyASCIIObject, state);
  o->str_data = sizeof(PyASCIIObject);
  /* The bit fields' masks: set one field at a time in a zeroed state and look at the word. */
  {
    PyASCIIObject s;
    unsigned int word;
    memset(&s, 0, sizeof s);
    s.state.compact = 1;
    memcpy(&word, (char *)&s + offsetof(PyASCIIObject, state), sizeof word);
    o->state_compact = word;
    memset(&s, 0, sizeof s);
    s.state.ascii = 1;
    memcpy(&word, (char *)&s + offsetof(PyASCIIObject, state), sizeof word);
    o->state_ascii = word;
  }
#if PY_VERSION_HEX >= 0x030D0000
  o->f_instr = offsetof(_PyInterpreterFrame, instr_ptr);
#elif PY_VERSION_HEX >= 0x030B0000
  o->f_instr = offsetof(_PyInterpreterFrame, prev_instr);
#else
  o->f_instr = offsetof(PyFrameObject, f_lasti);
#endif
#if PY_VERSION_HEX >= 0x030C0000
  o->f_owner = offsetof(_PyInterpreterFrame, owner);
  o->owner_cstack = FRAME_OWNED_BY_CSTACK;
#else
  o->f_owner = -1;
  o->owner_cstack = -1;
#endif
#if PY_VERSION_HEX >= 0x030B0000
  o->co_code_adaptive = offsetof(PyCodeObject, co_code_adaptive);
  o->co_qualname = offsetof(PyCodeObject, co_qualname);
#else
  o->co_code_adaptive = -1;
  o->co_qualname = -1;
#endif
  o->co_filename = offsetof(PyCodeObject, co_filename);
  o->co_firstlineno = offsetof(PyCodeObject, co_firstlineno);
  o->co_linetable = offsetof(PyCodeObject, co_linetable);
  o->bytes_size = offsetof(PyVarObject, ob_size);
  o->bytes_data = offsetof(PyBytesObject, ob_sval);
  o->version_hex = PY_VERSION_HEX;
  return 0;
}
