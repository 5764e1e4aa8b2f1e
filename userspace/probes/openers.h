// The real kernel sides of the probe families, as the openers their constructors take (agent/families/*_kernel.h).
// Unit tests pass fakes instead; everything else passes these.
#pragma once

#include "agent/families/blockio_kernel.h"
#include "agent/families/gc_kernel.h"
#include "agent/families/libpq_kernel.h"
#include "agent/families/nvme_kernel.h"
#include "agent/families/pgserver_kernel.h"
#include "agent/families/reactor_kernel.h"

namespace sp::bpf {

agent::GcKernelOpener gc_kernel();
agent::LibpqKernelOpener libpq_kernel();
agent::PgServerKernelOpener pgserver_kernel();
agent::BlockIoKernelOpener blockio_kernel();
agent::NvmeKernelOpener nvme_kernel();
agent::ReactorKernelOpener reactor_kernel();

}  // namespace sp::bpf
