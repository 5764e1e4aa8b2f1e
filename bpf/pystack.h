/* A bounded walk of a thread's CPython frames, for every BPF program that wants a Python stack (the future sampling
 * family and the slow-query stacks). libpq.bpf.c's desc walk still has its own copy of the thread-state lookup, same
 * logic: moving it onto this one is on hold (docs/python_stacks.md says why).
 *
 * Part one, the shared structs (plain fixed-width fields: userspace includes this part too, static_asserts the sizes):
 *   struct sp_py_stack_proc   per-process settings written by userspace (userspace/core/python/py_offsets.h says
 *                             where each offset comes from);
 *   struct sp_py_stack        what a walk records: per frame, innermost first, the code object's address and the
 *                             byte offset of the instruction in its bytecode. Nothing else of the frame (no locals,
 *                             no arguments) is read; userspace names the code objects (core/python/py_symbolizer.h).
 * Part two (BPF only, #ifdef __BPF__ ... via __bpf__): sp_py_thread_state() and sp_py_walk_stack().
 *
 * Why bpf_loop: 128 frames at ~6 probe reads each, written as a plain bounded loop, make the verifier walk every
 * iteration (and clang 14 may unroll it); bpf_loop (5.17+, present on the 6.1 / 6.12 / 6.18 kernels checked here)
 * has the callback verified once, so the frame limit costs no verifier work and the walk can live inside larger
 * programs (sampling, libpq entry) without pushing them towards the 1M-instruction limit. A tail-call chain would
 * need a prog array per user and state in a map between the calls; bpf_loop needs neither.
 */
#ifndef SP_BPF_PYSTACK_H
#define SP_BPF_PYSTACK_H

/* Frames recorded per stack, innermost first. */
#define SP_PY_STACK_MAX 128
/* sp_py_stack_proc.cframe / .f_owner when the field does not exist in that version. */
#define SP_PY_STACK_NONE 0xffffffffu

enum sp_py_stack_status {
  SP_PY_STACK_OK = 0,         /* every frame up to the thread's first recorded */
  SP_PY_STACK_TRUNCATED = 1,  /* SP_PY_STACK_MAX frames recorded, more above them */
  SP_PY_STACK_NO_TSTATE = 2,  /* the thread's PyThreadState was not found (not a Python thread, or exited) */
  SP_PY_STACK_READ_ERROR = 3, /* a frame could not be read: the frames recorded so far are kept */
  SP_PY_STACK_NO_PROC = 4,    /* no settings for the process */
};

/* How the thread state was found (sp_py_thread_state's *route). */
enum sp_py_ts_route { SP_PY_TS_NONE = 0, SP_PY_TS_TSS = 1, SP_PY_TS_LIST = 2 };

struct sp_py_stack_proc {
  __u64 runtime;        /* address of _PyRuntime in the process */
  __u32 tls_offset;     /* glibc's specific_1stblock in the TCB; 0: walk the thread list */
  __u32 tss_key;        /* offset of autoTSSkey._key in _PyRuntime */
  __u32 interp_head;    /* _PyRuntime.interpreters.head */
  __u32 threads_head;   /* PyInterpreterState.threads.head */
  __u32 ts_next;        /* PyThreadState.next */
  __u32 ts_thread_id;   /* PyThreadState.thread_id (pthread_self == TCB) */
  __u32 ts_frame;       /* PyThreadState -> frame / cframe / current_frame */
  __u32 cframe_current; /* _PyCFrame.current_frame (3.11-3.12); SP_PY_STACK_NONE */
  __u32 f_code;         /* frame -> code object */
  __u32 f_back;         /* frame -> caller's frame */
  __u32 f_instr;        /* f_lasti (int, code units) or prev_instr / instr_ptr (pointer) */
  __u32 instr_is_pointer;
  __u32 f_owner;        /* _PyInterpreterFrame.owner (char, 3.12+); SP_PY_STACK_NONE */
  __u32 owner_cstack;   /* FRAME_OWNED_BY_CSTACK: such frames are the C stack's shims, skipped */
  __u32 co_code_adaptive; /* where bytecode starts in a code object (3.11+) */
  __u32 _pad;
};

struct sp_py_stack {
  __u32 depth;  /* frames in code[] / instr[] */
  __u32 status; /* enum sp_py_stack_status */
  __u64 code[SP_PY_STACK_MAX];  /* PyCodeObject address */
  __s32 instr[SP_PY_STACK_MAX]; /* byte offset of the current instruction in the bytecode; -1: not started */
};

#ifdef __bpf__

static __always_inline __u64 sp_py_read_u64(__u64 addr) {
  __u64 v = 0;
  if (bpf_probe_read_user(&v, sizeof v, (const void *)addr)) return 0;
  return v;
}

static __always_inline __u32 sp_py_read_u32(__u64 addr) {
  __u32 v = 0;
  if (bpf_probe_read_user(&v, sizeof v, (const void *)addr)) return 0;
  return v;
}

/* The calling thread's PyThreadState, also while it has released the GIL (inside a C call the interpreter's
 * "current" thread state says nothing). CPython keeps every thread's state under a pthread key (autoTSSkey), and
 * glibc keeps the values of the first 32 keys inline in the thread's TCB, which %fs points at. Whatever the route,
 * the result must carry this thread's pthread_t (== its TCB address): a wrong glibc offset or a stale key then falls
 * through to walking the interpreter's thread list (max_threads entries), which needs nothing from glibc. The
 * offsets are passed one by one so that callers with their own per-process struct (libpq's pq_py_proc) share it. */
static __always_inline __u64 sp_py_thread_state(__u64 runtime, __u32 tls_offset, __u32 tss_key, __u32 interp_head,
                                                __u32 threads_head, __u32 ts_thread_id, __u32 ts_next,
                                                int max_threads, int *route) {
  *route = SP_PY_TS_NONE;
  struct task_struct *task = (struct task_struct *)bpf_get_current_task();
  __u64 tcb = BPF_CORE_READ(task, thread.fsbase); /* x86-64: the TCB is what %fs points at */
  if (!tcb) return 0;
  if (tls_offset) {
    __u32 key = sp_py_read_u32(runtime + tss_key);
    if (key < 32) {
      __u64 ts = sp_py_read_u64(tcb + tls_offset + (__u64)key * 16 + 8);
      if (ts && sp_py_read_u64(ts + ts_thread_id) == tcb) {
        *route = SP_PY_TS_TSS;
        return ts;
      }
    }
  }
  __u64 interp = sp_py_read_u64(runtime + interp_head); /* the main interpreter: Synapse runs no others */
  if (!interp) return 0;
  __u64 ts = sp_py_read_u64(interp + threads_head);
  for (int i = 0; i < max_threads && ts; i++) {
    if (sp_py_read_u64(ts + ts_thread_id) == tcb) {
      *route = SP_PY_TS_LIST;
      return ts;
    }
    ts = sp_py_read_u64(ts + ts_next);
  }
  return 0;
}

/* The thread-list walk's bound for stacks (Synapse workers needed up to ~31 steps). */
#define SP_PY_STACK_MAX_THREADS 64

struct sp_py_walk_ctx {
  const struct sp_py_stack_proc *p;
  struct sp_py_stack *out;
  __u64 frame;
};

/* One frame per call: record it (unless it is a C-stack shim) and step to its caller. 1 stops the loop. */
static long sp_py_walk_one(__u32 index, void *data) {
  struct sp_py_walk_ctx *c = data;
  const struct sp_py_stack_proc *p = c->p;
  struct sp_py_stack *out = c->out;
  __u64 frame = c->frame;
  if (!frame) return 1;
  if (p->f_owner != SP_PY_STACK_NONE) {
    __u8 owner = 0;
    if (bpf_probe_read_user(&owner, 1, (const void *)(frame + p->f_owner))) {
      out->status = SP_PY_STACK_READ_ERROR;
      return 1;
    }
    if (owner == p->owner_cstack) {
      c->frame = sp_py_read_u64(frame + p->f_back);
      return 0;
    }
  }
  __u32 d = out->depth;
  if (d >= SP_PY_STACK_MAX) {
    out->status = SP_PY_STACK_TRUNCATED;
    return 1;
  }
  __u64 code = 0;
  if (bpf_probe_read_user(&code, sizeof code, (const void *)(frame + p->f_code)) || !code) {
    out->status = SP_PY_STACK_READ_ERROR;
    return 1;
  }
  __s32 instr = -1;
  if (p->instr_is_pointer) {
    __u64 ptr = sp_py_read_u64(frame + p->f_instr);
    __u64 start = code + p->co_code_adaptive;
    /* 3.11-3.12 prev_instr sits one code unit before the start until the first instruction runs. */
    if (ptr >= start && ptr - start < (1u << 30)) instr = (__s32)(ptr - start);
  } else {
    int lasti = -1;
    bpf_probe_read_user(&lasti, sizeof lasti, (const void *)(frame + p->f_instr));
    if (lasti >= 0 && lasti < (1 << 29)) instr = lasti * 2; /* 3.10: f_lasti counts 2-byte code units */
  }
  out->code[d & (SP_PY_STACK_MAX - 1)] = code;
  out->instr[d & (SP_PY_STACK_MAX - 1)] = instr;
  out->depth = d + 1;
  c->frame = sp_py_read_u64(frame + p->f_back);
  return 0;
}

/* Fills `out` with the stack of the thread whose PyThreadState is `ts`. The loop runs at most
 * SP_PY_STACK_MAX + 8 times: C-stack shim frames (one per C -> Python call) are skipped without being recorded;
 * a stack with more shims than that is reported truncated. */
static __always_inline void sp_py_walk_stack(const struct sp_py_stack_proc *p, __u64 ts, struct sp_py_stack *out) {
  out->depth = 0;
  out->status = SP_PY_STACK_OK;
  __u64 frame = sp_py_read_u64(ts + p->ts_frame);
  if (p->cframe_current != SP_PY_STACK_NONE && frame) frame = sp_py_read_u64(frame + p->cframe_current);
  struct sp_py_walk_ctx c = {.p = p, .out = out, .frame = frame};
  bpf_loop(SP_PY_STACK_MAX + 8, sp_py_walk_one, &c, 0);
  if (out->status == SP_PY_STACK_OK && c.frame) out->status = SP_PY_STACK_TRUNCATED;
}

/* The calling thread's stack, or out->status says why not. */
static __always_inline void sp_py_current_stack(const struct sp_py_stack_proc *p, struct sp_py_stack *out) {
  int route = 0;
  __u64 ts = sp_py_thread_state(p->runtime, p->tls_offset, p->tss_key, p->interp_head, p->threads_head,
                                p->ts_thread_id, p->ts_next, SP_PY_STACK_MAX_THREADS, &route);
  if (!ts) {
    out->depth = 0;
    out->status = SP_PY_STACK_NO_TSTATE;
    return;
  }
  sp_py_walk_stack(p, ts, out);
}

#endif /* __bpf__ */
#endif
