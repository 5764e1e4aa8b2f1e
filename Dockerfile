# syntax=docker/dockerfile:1
# The synapse-profiler container image (docs/deploy.md): `docker build -t synapse-profiler:latest .` at the top of the
# repository. Two stages on Debian bookworm: `build` installs the build dependencies with the same script as a
# developer machine (scripts/setup.sh --build-only) and builds with CMake; `runtime` holds only the shared libraries
# the binary links and the binary itself. The BPF programs are compiled into the binary (CO-RE skeletons); vmlinux.h
# is generated from the build host's /sys/kernel/btf/vmlinux (build elsewhere with --build-arg VMLINUX_BTF=FILE
# pointing at a BTF file in the build context). At run time the node's /sys/kernel/btf must be mounted (the k8s/
# manifests do).

FROM debian:bookworm AS build
WORKDIR /src
COPY scripts/ scripts/
RUN scripts/setup.sh --build-only && rm -rf /var/lib/apt/lists/*
COPY . .
ARG VMLINUX_BTF=/sys/kernel/btf/vmlinux
# Debug information goes, the symbol table stays: doctor's uprobe self-check attaches to a function of the binary
# itself, found by name in .symtab (a plain `strip` makes it fail).
RUN cmake -S . -B /build -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSP_BUILD_TESTS=OFF -DSP_WERROR=ON \
        -DSP_VMLINUX_BTF="$VMLINUX_BTF" \
    && cmake --build /build -j"$(nproc)" --target synapse-profiler \
    && strip --strip-debug /build/synapse-profiler \
    && /build/synapse-profiler --version

FROM debian:bookworm-slim AS runtime
# Exactly the packages of the libraries the binary links (tests/dockerfile_test.sh checks this list against `ldd`).
RUN apt-get update \
    && apt-get install -y --no-install-recommends \
        libbpf1 zlib1g libfmt9 libyaml-cpp0.7 libboost-program-options1.74.0 \
        libmicrohttpd12 libcurl4 \
        libstdc++6 libgcc-s1 libc6 \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build /build/synapse-profiler /usr/bin/synapse-profiler
# Root, but not privileged: loading BPF programs and attaching uprobes needs CAP_SYS_ADMIN (plus CAP_SYS_PTRACE and
# CAP_DAC_READ_SEARCH to read other containers' files), and Kubernetes hands added capabilities to a non-root process
# only through file capabilities, which allowPrivilegeEscalation: false (no_new_privs) disables. The manifests run
# uid 0 with every capability dropped except those, and the agent drops what it no longer needs after attaching.
USER 0:0
EXPOSE 9477
ENTRYPOINT ["/usr/bin/synapse-profiler"]
CMD ["run"]
