// A small, bounds-checked reader for 64-bit little-endian ELF files (executables and shared objects): sections,
// program headers, symbols and SystemTap SDT (USDT) notes. Used to learn, before attaching anything, whether a
// process's Python has USDT GC probes, where libpq's entry points are, and (for stripped Pythons) where gc.collect()
// lives. Every offset read from the file is checked: a truncated or hostile file gives an error, never a crash.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace sp {

struct ElfSection {
  std::string name;
  std::uint32_t type = 0;
  std::uint64_t flags = 0;
  std::uint64_t addr = 0;
  std::uint64_t offset = 0;
  std::uint64_t size = 0;
  std::uint32_t link = 0;
  std::uint32_t info = 0;
  std::uint64_t entsize = 0;
};

struct ElfSegment {
  std::uint32_t type = 0;
  std::uint32_t flags = 0;
  std::uint64_t offset = 0;
  std::uint64_t vaddr = 0;
  std::uint64_t filesz = 0;
  std::uint64_t memsz = 0;
};

struct ElfSymbol {
  std::string name;
  std::uint64_t value = 0;
  std::uint64_t size = 0;
  std::uint8_t type = 0;   // STT_*
  std::uint8_t bind = 0;   // STB_*
  std::uint16_t shndx = 0;
  bool dynamic = false;    // from .dynsym rather than .symtab
};

// One entry of a SHT_RELA section (.rela.dyn, .rela.plt).
struct ElfRela {
  std::uint64_t offset = 0;  // r_offset: link-time address of the word the loader patches
  std::uint32_t type = 0;    // ELF64_R_TYPE(r_info), machine-specific (R_X86_64_RELATIVE, R_AARCH64_RELATIVE, ...)
  std::uint32_t symbol = 0;  // ELF64_R_SYM(r_info): index into the linked symbol table, 0 for RELATIVE
  std::int64_t addend = 0;   // r_addend; for RELATIVE relocations the link-time address stored at `offset`
  std::uint32_t symtab = 0;  // section index of the symbol table `symbol` refers to (the RELA section's sh_link)
};

struct UsdtNote {
  std::string provider;
  std::string name;
  std::string args;              // e.g. "-4@112(%rsp)"
  std::uint64_t pc = 0;          // link-time address of the probe
  std::uint64_t base = 0;        // link-time address of .stapsdt.base
  std::uint64_t semaphore = 0;   // link-time address of the semaphore, 0 if none
};

class ElfFile {
 public:
  // Parses an in-memory image (the caller keeps nothing alive: the bytes are copied). Errors describe the problem.
  // Copies of an ElfFile share one image.
  static std::optional<ElfFile> parse(std::span<const std::uint8_t> bytes, std::string& error);
  // Reads and parses an open file descriptor (at most max_bytes).
  static std::optional<ElfFile> from_fd(int fd, std::string& error, std::size_t max_bytes = 512u << 20);

  std::uint16_t type() const { return type_; }  // ET_EXEC, ET_DYN
  std::uint16_t machine() const { return machine_; }
  const std::vector<ElfSection>& sections() const { return sections_; }
  const std::vector<ElfSegment>& segments() const { return segments_; }
  const ElfSection* find_section(std::string_view name) const;

  // Bytes of a section (empty for SHT_NOBITS or out-of-range sections).
  std::span<const std::uint8_t> section_bytes(const ElfSection& s) const;

  // Symbols of .symtab and .dynsym (both, in that order).
  std::vector<ElfSymbol> symbols() const;
  std::optional<ElfSymbol> find_symbol(std::string_view name) const;

  std::vector<UsdtNote> usdt_notes() const;
  bool has_usdt(std::string_view provider, std::string_view name) const;

  // Every entry of every SHT_RELA section, in file order.
  std::vector<ElfRela> relocations() const;
  // True for the machine's R_*_RELATIVE type (x86-64 and AArch64; false for other machines).
  bool is_relative_relocation(std::uint32_t type) const;
  // True for the machine's 64-bit absolute type (R_X86_64_64, R_AARCH64_ABS64): symbol value + addend.
  bool is_absolute64_relocation(std::uint32_t type) const;
  // Entry `index` of the symbol table in section `table` (nameless entries included), nullopt when out of range.
  std::optional<ElfSymbol> symbol_at(std::uint32_t table, std::uint32_t index) const;

  // DT_SONAME of the dynamic section, if any (e.g. "libpython3.11.so.1.0").
  std::optional<std::string> soname() const;

  // Link-time addresses of every occurrence of `text` followed by a NUL byte inside allocated, non-executable
  // PROGBITS sections (.rodata, .data, ...). A match may be the tail of a longer string: linkers merge string
  // literals by suffix, so a pointer to "collect" may point into "gc_collect".
  std::vector<std::uint64_t> find_cstring(std::string_view text) const;
  // The NUL-terminated string at a link-time address, at most max_len bytes long (nullopt if unterminated or not
  // file-backed).
  std::optional<std::string_view> cstring_at_vaddr(std::uint64_t vaddr, std::size_t max_len = 256) const;
  // True if the address lies in an executable PT_LOAD segment.
  bool is_executable_vaddr(std::uint64_t vaddr) const;

  // Link-time virtual address -> file offset, through the PT_LOAD segments.
  std::optional<std::uint64_t> vaddr_to_offset(std::uint64_t vaddr) const;
  // Reads `n` bytes at a link-time virtual address (file-backed part only).
  std::optional<std::span<const std::uint8_t>> read_vaddr(std::uint64_t vaddr, std::size_t n) const;

 private:
  // Parses the `size` bytes at `image`, which the file then keeps alive (copies share them).
  static std::optional<ElfFile> parse_image(std::shared_ptr<const std::uint8_t> image, std::size_t size,
                                            std::string& error);

  std::shared_ptr<const std::uint8_t> image_;  // owns the bytes data_ views
  std::span<const std::uint8_t> data_;
  std::uint16_t type_ = 0;
  std::uint16_t machine_ = 0;
  std::vector<ElfSection> sections_;
  std::vector<ElfSegment> segments_;

  void read_symbols(const ElfSection& table, bool dynamic, std::vector<ElfSymbol>& out) const;
};

}  // namespace sp
