#include "probes/openers.h"

#include "probes/blockio_probe.h"
#include "probes/gc_probe.h"
#include "probes/libpq_probe.h"
#include "probes/nvme_probe.h"
#include "probes/pgserver_probe.h"
#include "probes/reactor_probe.h"

namespace sp::bpf {
namespace {

// An opener of interface `Kernel` backed by probe class `Probe` (its static create(error)).
template <typename Kernel, typename Probe>
std::function<std::unique_ptr<Kernel>(std::string&)> opener() {
  return [](std::string& error) -> std::unique_ptr<Kernel> { return Probe::create(error); };
}

}  // namespace

agent::GcKernelOpener gc_kernel() { return opener<agent::GcKernel, GcProbe>(); }
agent::LibpqKernelOpener libpq_kernel() { return opener<agent::LibpqKernel, LibpqProbe>(); }
agent::PgServerKernelOpener pgserver_kernel() { return opener<agent::PgServerKernel, PgServerProbe>(); }
agent::BlockIoKernelOpener blockio_kernel() { return opener<agent::BlockIoKernel, BlockIoProbe>(); }
agent::NvmeKernelOpener nvme_kernel() { return opener<agent::NvmeKernel, NvmeProbe>(); }
agent::ReactorKernelOpener reactor_kernel() { return opener<agent::ReactorKernel, ReactorProbe>(); }

}  // namespace sp::bpf
