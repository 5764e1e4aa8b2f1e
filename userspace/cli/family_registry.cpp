#include "cli/family_registry.h"

#include "agent/families/blockio_family.h"
#include "agent/families/gc_family.h"
#include "agent/families/libpq_family.h"
#include "agent/families/nvme_family.h"
#include "agent/families/pgserver_family.h"
#include "agent/families/reactor_family.h"
#include "probes/openers.h"

namespace sp::cli {
namespace {

agent::LibpqOptions libpq_options(const CliOptions& o) {
  agent::LibpqOptions l;
  l.async_mode = o.libpq_async == "on"    ? agent::LibpqAsyncMode::On
                 : o.libpq_async == "off" ? agent::LibpqAsyncMode::Off
                                          : agent::LibpqAsyncMode::Auto;
  l.table_labels = o.db_table_labels;
  l.desc_labels = o.db_desc_labels;
  return l;
}

}  // namespace

agent::Families make_probe_families(const CliOptions& o, bool keep_fingerprints) {
  agent::Families f;
  f.push_back(std::make_unique<agent::GcFamily>(o.proc_root, bpf::gc_kernel()));
  f.push_back(std::make_unique<agent::LibpqFamily>(o.proc_root, bpf::libpq_kernel(), libpq_options(o)));
  auto pg = std::make_unique<agent::PgServerFamily>(o.proc_root, bpf::pgserver_kernel());
  pg->set_fingerprints(keep_fingerprints);
  const agent::BackendDecisions* backends = pg.get();
  f.push_back(std::move(pg));
  f.push_back(std::make_unique<agent::BlockIoFamily>("/sys", o.devices, bpf::blockio_kernel(), backends));
  f.push_back(std::make_unique<agent::NvmeFamily>("/sys", o.devices, bpf::nvme_kernel()));
  f.push_back(std::make_unique<agent::ReactorFamily>(o.proc_root, bpf::reactor_kernel()));
  return f;
}

}  // namespace sp::cli
