// Small helpers shared by the probe loaders: reading per-CPU counters, walking hash maps, and ring buffers that hand
// fixed-size records to a callback.
#pragma once

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include <cstdint>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "core/util/safe_file.h"
#include "probes/handles.h"

namespace sp::bpf {

// One errno_text for the whole agent (core/util/safe_file.h), libbpf's negative codes included.
using sp::errno_text;

// Hook invocations the kernel skipped for the loaded programs of `obj`: a program does not run while a BPF program
// of its kind is already running on that CPU (e.g. a completion interrupt arriving inside one of our handlers), and
// the kernel counts each such miss per program (bpf_prog_info.recursion_misses). What a skipped run would have
// counted is lost; this says how often.
std::uint64_t recursion_misses(const bpf_object* obj);

// Sum over CPUs of a BPF_MAP_TYPE_PERCPU_ARRAY of __u64 at `idx`; 0 when unreadable.
std::uint64_t percpu_sum(const bpf_map* map, std::uint32_t idx);

// Every (key, value) of a hash map, read with the syscall interface (a consistent-enough snapshot: entries added or
// removed meanwhile may or may not appear).
template <typename K, typename V>
std::vector<std::pair<K, V>> hash_entries(const bpf_map* map) {
  std::vector<std::pair<K, V>> out;
  int fd = bpf_map__fd(map);
  K key{};
  K next{};
  const void* prev = nullptr;
  while (bpf_map_get_next_key(fd, prev, &next) == 0) {
    V value{};
    if (bpf_map_lookup_elem(fd, &next, &value) == 0) out.emplace_back(next, value);
    key = next;
    prev = &key;
  }
  return out;
}

// A ring buffer delivering records of type T. drain() calls `fn` for each record and returns how many. Records may
// be cut short to `MinSize` bytes or more (a text field sized to its text): the missing tail reads as zeros.
template <typename T, std::size_t MinSize = sizeof(T)>
class TypedRing {
  static_assert(MinSize <= sizeof(T));

 public:
  bool open(const bpf_map* map, std::string& error) {
    fd_ = bpf_map__fd(map);
    ring_.reset(ring_buffer__new(fd_, &TypedRing::on_record, this, nullptr));
    if (!ring_) error = "create ring buffer " + std::string(bpf_map__name(map)) + ": " + errno_text(errno);
    return ring_ != nullptr;
  }
  int drain(const std::function<void(const T&)>& fn) {
    sink_ = &fn;
    int n = ring_buffer__consume(ring_.get());
    sink_ = nullptr;
    return n < 0 ? 0 : n;
  }
  // The ring map's descriptor, for a RingWaker (core/util/ring_waker.h) to watch; -1 before open().
  int fd() const { return fd_; }

 private:
  static int on_record(void* ctx, void* data, size_t size) {
    auto* self = static_cast<TypedRing*>(ctx);
    if (!self->sink_ || size < MinSize) return 0;
    if (size >= sizeof(T)) {
      (*self->sink_)(*static_cast<const T*>(data));
    } else {
      T full{};
      std::memcpy(&full, data, size);
      (*self->sink_)(full);
    }
    return 0;
  }
  RingBuffer ring_;
  int fd_ = -1;
  const std::function<void(const T&)>* sink_ = nullptr;
};

}  // namespace sp::bpf
