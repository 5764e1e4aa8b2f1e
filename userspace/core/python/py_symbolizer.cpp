#include "core/python/py_symbolizer.h"

#include <fmt/core.h>
#include <sys/uio.h>

#include <algorithm>
#include <cstring>

namespace sp {
namespace {

// Longest name or file name read; longer ones are cut (a Python identifier or a path of this size is not real).
constexpr std::size_t kMaxStr = 1024;
// Largest line table read; a bigger one gets first-line-only symbols (line 0).
constexpr std::size_t kMaxLineTable = 64 * 1024;

template <typename T>
T load(const std::uint8_t* p) {
  T v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

void append_utf8(std::string& out, std::uint32_t cp) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xc0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3f));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xe0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3f));
    out += static_cast<char>(0x80 | (cp & 0x3f));
  } else if (cp < 0x110000) {
    out += static_cast<char>(0xf0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3f));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3f));
    out += static_cast<char>(0x80 | (cp & 0x3f));
  } else {
    out += '?';
  }
}

// The location table's variable-length integers: 6 bits per byte, bit 6 says another byte follows.
bool varint(std::span<const std::uint8_t> t, std::size_t& pos, std::uint32_t& out) {
  out = 0;
  for (unsigned shift = 0; shift < 32; shift += 6) {
    if (pos >= t.size()) return false;
    const std::uint8_t b = t[pos++];
    out |= static_cast<std::uint32_t>(b & 63) << shift;
    if (!(b & 64)) return true;
  }
  return false;
}

// Signed: the sign in the lowest bit.
bool svarint(std::span<const std::uint8_t> t, std::size_t& pos, int& out) {
  std::uint32_t v = 0;
  if (!varint(t, pos, v)) return false;
  out = (v & 1) ? -static_cast<int>(v >> 1) : static_cast<int>(v >> 1);
  return true;
}

}  // namespace

bool LiveProcessMemory::read(int pid, std::uint64_t addr, void* out, std::size_t len) {
  if (len == 0) return true;
  iovec local{out, len};
  iovec remote{reinterpret_cast<void*>(static_cast<std::uintptr_t>(addr)), len};
  return process_vm_readv(pid, &local, 1, &remote, 1, 0) == static_cast<ssize_t>(len);
}

// 3.10 (Objects/lnotab_notes.txt of 3.10): byte pairs (bytecode bytes covered, signed line delta); a delta of -128
// means "no line" for that range without moving the running line.
int py310_line_for_offset(std::span<const std::uint8_t> table, int first_line, int byte_offset) {
  if (byte_offset < 0) return 0;
  int line = first_line;
  long start = 0;
  for (std::size_t i = 0; i + 1 < table.size(); i += 2) {
    const long end = start + table[i];
    const int delta = static_cast<std::int8_t>(table[i + 1]);
    int range_line = -1;
    if (delta != -128) {
      line += delta;
      range_line = line;
    }
    if (byte_offset >= start && byte_offset < end) return range_line > 0 ? range_line : 0;
    start = end;
  }
  return 0;
}

// 3.11+ (InternalDocs/locations.md): entries starting with a byte 1CCCCLLL (code C, L + 1 code units), then:
// C 0-9 one byte of columns (same line), C 10-12 line + C - 10 and two bytes of columns, C 13 a signed line delta,
// C 14 a signed line delta and three more varints (end line, columns), C 15 no location.
int py311_line_for_offset(std::span<const std::uint8_t> table, int first_line, int byte_offset) {
  if (byte_offset < 0) return 0;
  int line = first_line;
  long addr = 0;
  std::size_t pos = 0;
  while (pos < table.size()) {
    const std::uint8_t first = table[pos++];
    if (!(first & 0x80)) return 0;  // not at an entry's start: malformed
    const int code = (first >> 3) & 15;
    const long end = addr + ((first & 7) + 1) * 2;
    bool has_line = true;
    if (code == 15) {
      has_line = false;
    } else if (code == 14) {
      int delta = 0;
      std::uint32_t skip = 0;
      if (!svarint(table, pos, delta) || !varint(table, pos, skip) || !varint(table, pos, skip) ||
          !varint(table, pos, skip))
        return 0;
      line += delta;
    } else if (code == 13) {
      int delta = 0;
      if (!svarint(table, pos, delta)) return 0;
      line += delta;
    } else if (code >= 10) {
      line += code - 10;
      pos += 2;
    } else {
      pos += 1;
    }
    if (byte_offset >= addr && byte_offset < end) return has_line && line > 0 ? line : 0;
    addr = end;
  }
  return 0;
}

void PySymbolizer::set_process(int pid, const PyCodeLayout& layout) {
  auto it = procs_.find(pid);
  if (it != procs_.end() && it->second.code_type == layout.code_type && it->second.minor == layout.minor &&
      it->second.offsets == layout.offsets)
    return;
  forget_process(pid);
  procs_[pid] = layout;
}

void PySymbolizer::forget_process(int pid) {
  procs_.erase(pid);
  cache_.erase(cache_.lower_bound({pid, 0}), cache_.lower_bound({pid + 1, 0}));
}

bool PySymbolizer::read_identity(int pid, const PyCodeLayout& l, std::uint64_t code, Identity& id,
                                 std::string& error) {
  const PyFrameOffsets& o = l.offsets;
  const std::uint32_t qual = o.co_qualname.value_or(o.co_name);
  const std::size_t span = std::max({o.ob_type, o.co_name, qual, o.co_filename, o.co_linetable}) + 8;
  const std::size_t size = std::max<std::size_t>(span, o.co_firstlineno + 4);
  std::uint8_t buf[512];
  if (size > sizeof buf) {
    error = "code object offsets out of range";
    return false;
  }
  if (!memory_.read(pid, code, buf, size)) {
    error = fmt::format("pid {}: code object at {:#x} unreadable", pid, code);
    return false;
  }
  id.type = load<std::uint64_t>(buf + o.ob_type);
  id.name = load<std::uint64_t>(buf + o.co_name);
  id.qualname = load<std::uint64_t>(buf + qual);
  id.filename = load<std::uint64_t>(buf + o.co_filename);
  id.linetable = load<std::uint64_t>(buf + o.co_linetable);
  id.first_line = load<std::int32_t>(buf + o.co_firstlineno);
  if (id.type != l.code_type) {
    error = fmt::format("pid {}: {:#x} is not a code object", pid, code);
    return false;
  }
  return true;
}

// A str object's text as UTF-8: compact ASCII strings (every identifier and nearly every path) and compact strings
// of the other kinds (1, 2 or 4 bytes per character). nullopt when unreadable or not compact.
std::optional<std::string> PySymbolizer::read_str(int pid, const PyCodeLayout& l, std::uint64_t str) {
  const PyFrameOffsets& o = l.offsets;
  if (!str) return std::nullopt;
  std::uint8_t head[64];
  if (o.str_data > sizeof head || !memory_.read(pid, str, head, o.str_data)) return std::nullopt;
  const auto length = load<std::int64_t>(head + o.str_length);
  const auto state = load<std::uint32_t>(head + o.str_state);
  if (length < 0 || !(state & o.state_compact)) return std::nullopt;
  const std::size_t n = std::min<std::size_t>(static_cast<std::size_t>(length), kMaxStr);
  if (state & o.state_ascii) {
    std::string s(n, '\0');
    if (!memory_.read(pid, str + o.str_data, s.data(), n)) return std::nullopt;
    return s;
  }
  // PyCompactUnicodeObject adds utf8_length and utf8 (and, before 3.12, wstr_length) to PyASCIIObject.
  const std::uint64_t data = str + o.str_data + (l.minor >= 12 ? 16 : 24);
  const unsigned kind = (state >> 2) & 7;  // interned:2 then kind:3
  if (kind != 1 && kind != 2 && kind != 4) return std::nullopt;
  std::vector<std::uint8_t> raw(n * kind);
  if (!memory_.read(pid, data, raw.data(), raw.size())) return std::nullopt;
  std::string s;
  for (std::size_t i = 0; i < n; ++i) {
    std::uint32_t cp = kind == 1 ? raw[i] : kind == 2 ? load<std::uint16_t>(&raw[i * 2]) : load<std::uint32_t>(&raw[i * 4]);
    append_utf8(s, cp);
  }
  return s;
}

bool PySymbolizer::fill(int pid, const PyCodeLayout& l, Entry& e, std::string& error) {
  auto function = read_str(pid, l, e.id.qualname);
  auto file = read_str(pid, l, e.id.filename);
  if (!function || !file) {
    error = fmt::format("pid {}: the code object's name or file name is unreadable", pid);
    return false;
  }
  e.function = std::move(*function);
  e.file = std::move(*file);
  e.linetable.clear();
  // The line table (a bytes object); a missing or oversized one leaves the first line only.
  std::uint8_t head[48];
  const PyFrameOffsets& o = l.offsets;
  if (e.id.linetable && o.bytes_data <= sizeof head && memory_.read(pid, e.id.linetable, head, o.bytes_data)) {
    const auto size = load<std::int64_t>(head + o.bytes_size);
    if (size > 0 && static_cast<std::size_t>(size) <= kMaxLineTable) {
      e.linetable.resize(static_cast<std::size_t>(size));
      if (!memory_.read(pid, e.id.linetable + o.bytes_data, e.linetable.data(), e.linetable.size()))
        e.linetable.clear();
    }
  }
  return true;
}

std::optional<PyFrameSymbol> PySymbolizer::symbolize(int pid, std::uint64_t code, std::int32_t instr_offset,
                                                     std::string& error) {
  auto p = procs_.find(pid);
  if (p == procs_.end()) {
    error = fmt::format("pid {}: no Python layout", pid);
    return std::nullopt;
  }
  const PyCodeLayout& l = p->second;
  Identity id;
  if (!read_identity(pid, l, code, id, error)) {
    cache_.erase({pid, code});
    return std::nullopt;
  }
  auto it = cache_.find({pid, code});
  if (it != cache_.end() && it->second.id == id) {
    ++stats_.hits;
  } else {
    if (it != cache_.end()) {
      ++stats_.reused;
    } else {
      ++stats_.misses;
      if (cache_.size() >= max_entries_) cache_.clear();  // crude but bounded; code objects are few in practice
      it = cache_.emplace(std::pair(pid, code), Entry{}).first;
    }
    it->second.id = id;
    if (!fill(pid, l, it->second, error)) {
      cache_.erase(it);
      return std::nullopt;
    }
  }
  const Entry& e = it->second;
  PyFrameSymbol s;
  s.function = e.function;
  s.file = e.file;
  s.first_line = e.id.first_line;
  s.line = l.minor >= 11 ? py311_line_for_offset(e.linetable, e.id.first_line, instr_offset)
                         : py310_line_for_offset(e.linetable, e.id.first_line, instr_offset);
  return s;
}

}  // namespace sp
