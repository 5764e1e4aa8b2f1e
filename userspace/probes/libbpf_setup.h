// One-time libbpf set-up for the process: strict mode, and libbpf's own messages routed into the project's logger
// (libbpf debug output only with --verbose).
#pragma once

namespace sp::bpf {

void init_libbpf(bool verbose);

}  // namespace sp::bpf
