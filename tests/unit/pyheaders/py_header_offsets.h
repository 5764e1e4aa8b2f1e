/* What py_header_offsets.c reports for one CPython version (plain C: the file is compiled against Python's
 * headers, which C++ cannot include with Py_BUILD_CORE). */
#ifndef SP_PY_HEADER_OFFSETS_H
#define SP_PY_HEADER_OFFSETS_H

#ifdef __cplusplus
extern "C" {
#endif

struct sp_py_header_offsets {
  long tss_key, interp_head, threads_head, ts_next, ts_thread_id, ts_frame, cframe_current;
  long f_code, f_back, f_locals, co_name, co_varnames;
  long ob_type, tuple_size, tuple_items, str_length, str_state, str_data;
  unsigned long state_compact, state_ascii;
  unsigned long version_hex;
  /* Stacks: -1 where the version has no such field. */
  long f_instr, f_owner, owner_cstack, co_code_adaptive, co_qualname, co_filename, co_firstlineno, co_linetable;
  long bytes_size, bytes_data;
};

int sp_py310_header_offsets(struct sp_py_header_offsets *o);
int sp_py311_header_offsets(struct sp_py_header_offsets *o);
int sp_py312_header_offsets(struct sp_py_header_offsets *o);
int sp_py313_header_offsets(struct sp_py_header_offsets *o);

#ifdef __cplusplus
}
#endif
#endif
