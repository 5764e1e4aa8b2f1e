// From a worker's Python plan (desc_planner.h: offsets, addresses, thread-state route) to what the stack walk needs
// in the kernel (bpf/pystack.h's sp_py_stack_proc) and what the symbolizer needs in userspace (PyCodeLayout): one
// plan per worker serves the desc walk, the stack walk and the naming of its frames.
#pragma once

#include <linux/types.h>

#include "core/python/desc_planner.h"
#include "core/python/py_symbolizer.h"
#include "pystack.h"

namespace sp {

static_assert(sizeof(sp_py_stack_proc) == 72);
static_assert(sizeof(sp_py_stack) == 8 + SP_PY_STACK_MAX * 12);

inline sp_py_stack_proc stack_proc_for(const DescProcessPlan& p) {
  const PyFrameOffsets& o = p.offsets;
  sp_py_stack_proc k{};
  k.runtime = p.runtime;
  k.tls_offset = p.tls_offset.value_or(0);
  k.tss_key = o.tss_key;
  k.interp_head = o.interp_head;
  k.threads_head = o.threads_head;
  k.ts_next = o.ts_next;
  k.ts_thread_id = o.ts_thread_id;
  k.ts_frame = o.ts_frame;
  k.cframe_current = o.cframe_current.value_or(SP_PY_STACK_NONE);
  k.f_code = o.f_code;
  k.f_back = o.f_back;
  k.f_instr = o.f_instr;
  k.instr_is_pointer = o.instr_is_pointer ? 1 : 0;
  k.f_owner = o.f_owner.value_or(SP_PY_STACK_NONE);
  k.owner_cstack = o.owner_cstack;
  k.co_code_adaptive = o.co_code_adaptive;
  return k;
}

inline PyCodeLayout code_layout_for(const DescProcessPlan& p) {
  PyCodeLayout l;
  l.minor = p.version.minor;
  l.offsets = p.offsets;
  l.code_type = p.code_type;
  return l;
}

}  // namespace sp
