/* NVMe commands per disk, queue, opcode and completion status: what bpf/nvme.bpf.c and userspace/probes/nvme_probe.cpp
 * share. Fixed-width fields, explicit padding, no pointers. */
#ifndef SP_BPF_NVME_H
#define SP_BPF_NVME_H

#include "histogram.h"

struct sp_nvme_key {
  __u32 dev;    /* the namespace's disk: major << 20 | minor; 0 for admin commands (no disk) */
  __u16 qid;    /* 0: admin queue; I/O queues from 1 */
  __u8 opcode;  /* byte 0 of the submission queue entry (NVMe base specification) */
  __u8 _pad;
  __u16 status; /* the driver's status word: SC in bits 0-7, SCT in bits 8-10, CRD 11-12, MORE 13, DNR 14 */
  __u16 _pad2;
};

/* `status` when the driver's request layout is not known (no BTF for it): not a value the driver uses. */
#define SP_NVME_STATUS_UNKNOWN 0xffff

struct sp_nvme_hist {
  __u64 buckets[SP_IO_BUCKETS]; /* nvme_setup_cmd -> nvme_complete_rq */
  __u64 count;
  __u64 sum_ns;
};

enum sp_nvme_stat {
  SP_NVME_STAT_UNTRACKED = 0, /* completions of commands set up before the probe was attached */
  SP_NVME_STAT_FULL = 1,      /* (key) combinations beyond the histogram map's capacity */
  SP_NVME_STAT_MAX = 2,
};

#endif
