#include "core/python/elf_file.h"

#include <elf.h>
#include <fmt/core.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

namespace sp {
namespace {

// Copies a trivially copyable struct out of the image if it lies fully inside it.
template <typename T>
bool read_at(std::span<const std::uint8_t> data, std::uint64_t off, T& out) {
  if (off > data.size() || data.size() - off < sizeof(T)) return false;
  std::memcpy(&out, data.data() + off, sizeof(T));
  return true;
}

// A NUL-terminated string inside [begin, end) of the image, or empty when unterminated.
std::string_view cstr_at(std::span<const std::uint8_t> data, std::uint64_t begin, std::uint64_t end) {
  if (end > data.size() || begin >= end) return {};
  const char* p = reinterpret_cast<const char*>(data.data() + begin);
  std::size_t max = end - begin;
  std::size_t len = strnlen(p, max);
  if (len == max) return {};
  return {p, len};
}

// Memory for an image: an anonymous mapping of its own, so that the bytes of a large file (a Python executable is
// several MB, read once per worker) go back to the kernel as soon as the last ElfFile using them is gone; a heap
// block that size would raise glibc's mmap threshold and stay in the agent's RSS. Null when out of memory.
std::shared_ptr<std::uint8_t> image_buffer(std::size_t size) {
  const std::size_t len = std::max<std::size_t>(size, 1);
  void* p = mmap(nullptr, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) return nullptr;
  return std::shared_ptr<std::uint8_t>(static_cast<std::uint8_t*>(p), [len](std::uint8_t* q) { munmap(q, len); });
}

}  // namespace

std::optional<ElfFile> ElfFile::parse(std::span<const std::uint8_t> bytes, std::string& error) {
  auto image = image_buffer(bytes.size());
  if (!image) {
    error = fmt::format("cannot allocate {} bytes", bytes.size());
    return std::nullopt;
  }
  if (!bytes.empty()) std::memcpy(image.get(), bytes.data(), bytes.size());
  return parse_image(std::move(image), bytes.size(), error);
}

std::optional<ElfFile> ElfFile::parse_image(std::shared_ptr<const std::uint8_t> image, std::size_t size,
                                            std::string& error) {
  ElfFile f;
  f.image_ = std::move(image);
  f.data_ = std::span<const std::uint8_t>(f.image_.get(), size);
  std::span<const std::uint8_t> d(f.data_);
  Elf64_Ehdr eh{};
  if (!read_at(d, 0, eh) || std::memcmp(eh.e_ident, ELFMAG, SELFMAG) != 0) {
    error = "not an ELF file";
    return std::nullopt;
  }
  if (eh.e_ident[EI_CLASS] != ELFCLASS64 || eh.e_ident[EI_DATA] != ELFDATA2LSB) {
    error = "only 64-bit little-endian ELF files are supported";
    return std::nullopt;
  }
  f.type_ = eh.e_type;
  f.machine_ = eh.e_machine;

  if (eh.e_phoff != 0 && eh.e_phentsize == sizeof(Elf64_Phdr)) {
    for (std::uint16_t i = 0; i < eh.e_phnum; ++i) {
      Elf64_Phdr ph{};
      if (!read_at(d, eh.e_phoff + std::uint64_t{i} * sizeof ph, ph)) {
        error = "truncated program header table";
        return std::nullopt;
      }
      f.segments_.push_back({ph.p_type, ph.p_flags, ph.p_offset, ph.p_vaddr, ph.p_filesz, ph.p_memsz});
    }
  }

  if (eh.e_shoff != 0 && eh.e_shentsize == sizeof(Elf64_Shdr) && eh.e_shnum > 0) {
    std::vector<Elf64_Shdr> raw(eh.e_shnum);
    for (std::uint16_t i = 0; i < eh.e_shnum; ++i) {
      if (!read_at(d, eh.e_shoff + std::uint64_t{i} * sizeof(Elf64_Shdr), raw[i])) {
        error = "truncated section header table";
        return std::nullopt;
      }
    }
    const Elf64_Shdr* strtab = eh.e_shstrndx < raw.size() ? &raw[eh.e_shstrndx] : nullptr;
    for (const auto& sh : raw) {
      ElfSection s;
      if (strtab && sh.sh_name < strtab->sh_size) {
        s.name = std::string(cstr_at(d, strtab->sh_offset + sh.sh_name, strtab->sh_offset + strtab->sh_size));
      }
      s.type = sh.sh_type;
      s.flags = sh.sh_flags;
      s.addr = sh.sh_addr;
      s.offset = sh.sh_offset;
      s.size = sh.sh_size;
      s.link = sh.sh_link;
      s.info = sh.sh_info;
      s.entsize = sh.sh_entsize;
      f.sections_.push_back(std::move(s));
    }
  }
  return f;
}

std::optional<ElfFile> ElfFile::from_fd(int fd, std::string& error, std::size_t max_bytes) {
  struct stat st {};
  if (fstat(fd, &st) != 0) {
    error = fmt::format("fstat: {}", std::strerror(errno));
    return std::nullopt;
  }
  if (!S_ISREG(st.st_mode)) {
    error = "not a regular file";
    return std::nullopt;
  }
  if (static_cast<std::uint64_t>(st.st_size) > max_bytes) {
    error = fmt::format("file is {} bytes, more than the {} byte limit", st.st_size, max_bytes);
    return std::nullopt;
  }
  const auto size = static_cast<std::size_t>(st.st_size);
  auto image = image_buffer(size);
  if (!image) {
    error = fmt::format("cannot allocate {} bytes", size);
    return std::nullopt;
  }
  // Read straight into the image (no second copy); a file that shrank meanwhile is parsed as far as it goes.
  std::size_t got = 0;
  while (got < size) {
    ssize_t n = pread(fd, image.get() + got, size - got, static_cast<off_t>(got));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      error = fmt::format("read: {}", std::strerror(errno));
      return std::nullopt;
    }
    if (n == 0) break;
    got += static_cast<std::size_t>(n);
  }
  return parse_image(std::move(image), got, error);
}

const ElfSection* ElfFile::find_section(std::string_view name) const {
  for (const auto& s : sections_) {
    if (s.name == name) return &s;
  }
  return nullptr;
}

std::span<const std::uint8_t> ElfFile::section_bytes(const ElfSection& s) const {
  if (s.type == SHT_NOBITS || s.offset > data_.size() || data_.size() - s.offset < s.size) return {};
  return std::span<const std::uint8_t>(data_).subspan(s.offset, s.size);
}

void ElfFile::read_symbols(const ElfSection& table, bool dynamic, std::vector<ElfSymbol>& out) const {
  if (table.link >= sections_.size()) return;
  const ElfSection& strs = sections_[table.link];
  std::span<const std::uint8_t> d(data_);
  auto bytes = section_bytes(table);
  std::size_t count = bytes.size() / sizeof(Elf64_Sym);
  for (std::size_t i = 0; i < count; ++i) {
    Elf64_Sym sym{};
    if (!read_at(d, table.offset + i * sizeof(Elf64_Sym), sym)) break;
    if (sym.st_name == 0 || sym.st_name >= strs.size) continue;
    ElfSymbol s;
    s.name = std::string(cstr_at(d, strs.offset + sym.st_name, strs.offset + strs.size));
    if (s.name.empty()) continue;
    s.value = sym.st_value;
    s.size = sym.st_size;
    s.type = ELF64_ST_TYPE(sym.st_info);
    s.bind = ELF64_ST_BIND(sym.st_info);
    s.shndx = sym.st_shndx;
    s.dynamic = dynamic;
    out.push_back(std::move(s));
  }
}

std::vector<ElfSymbol> ElfFile::symbols() const {
  std::vector<ElfSymbol> out;
  for (const auto& s : sections_) {
    if (s.type == SHT_SYMTAB) read_symbols(s, false, out);
  }
  for (const auto& s : sections_) {
    if (s.type == SHT_DYNSYM) read_symbols(s, true, out);
  }
  return out;
}

std::optional<ElfSymbol> ElfFile::find_symbol(std::string_view name) const {
  for (auto& s : symbols()) {
    if (s.name == name && s.shndx != SHN_UNDEF) return s;
  }
  return std::nullopt;
}

std::vector<UsdtNote> ElfFile::usdt_notes() const {
  std::vector<UsdtNote> out;
  std::span<const std::uint8_t> d(data_);
  for (const auto& s : sections_) {
    if (s.type != SHT_NOTE || s.name != ".note.stapsdt") continue;
    auto bytes = section_bytes(s);
    std::uint64_t pos = s.offset;
    const std::uint64_t end = s.offset + bytes.size();
    while (pos + sizeof(Elf64_Nhdr) <= end) {
      Elf64_Nhdr nh{};
      if (!read_at(d, pos, nh)) break;
      std::uint64_t name_off = pos + sizeof nh;
      std::uint64_t desc_off = name_off + ((std::uint64_t{nh.n_namesz} + 3) & ~std::uint64_t{3});
      std::uint64_t next = desc_off + ((std::uint64_t{nh.n_descsz} + 3) & ~std::uint64_t{3});
      if (next > end || next <= pos) break;
      if (nh.n_type == 3 && cstr_at(d, name_off, desc_off) == "stapsdt" && nh.n_descsz >= 24) {
        UsdtNote n;
        std::uint64_t desc_end = desc_off + nh.n_descsz;
        read_at(d, desc_off, n.pc);
        read_at(d, desc_off + 8, n.base);
        read_at(d, desc_off + 16, n.semaphore);
        std::uint64_t p = desc_off + 24;
        std::string_view provider = cstr_at(d, p, desc_end);
        p += provider.size() + 1;
        std::string_view name = cstr_at(d, p, desc_end);
        p += name.size() + 1;
        std::string_view args = cstr_at(d, p, desc_end);
        if (!provider.empty() && !name.empty()) {
          n.provider = provider;
          n.name = name;
          n.args = args;
          out.push_back(std::move(n));
        }
      }
      pos = next;
    }
  }
  return out;
}

bool ElfFile::has_usdt(std::string_view provider, std::string_view name) const {
  for (const auto& n : usdt_notes()) {
    if (n.provider == provider && n.name == name) return true;
  }
  return false;
}

std::optional<std::uint64_t> ElfFile::vaddr_to_offset(std::uint64_t vaddr) const {
  for (const auto& seg : segments_) {
    if (seg.type != PT_LOAD) continue;
    if (vaddr >= seg.vaddr && vaddr - seg.vaddr < seg.filesz) return seg.offset + (vaddr - seg.vaddr);
  }
  return std::nullopt;
}

std::optional<std::span<const std::uint8_t>> ElfFile::read_vaddr(std::uint64_t vaddr, std::size_t n) const {
  for (const auto& seg : segments_) {
    if (seg.type != PT_LOAD || vaddr < seg.vaddr || vaddr - seg.vaddr >= seg.filesz) continue;
    std::uint64_t rel = vaddr - seg.vaddr;
    if (seg.filesz - rel < n) return std::nullopt;
    std::uint64_t off = seg.offset + rel;
    if (off > data_.size() || data_.size() - off < n) return std::nullopt;
    return std::span<const std::uint8_t>(data_).subspan(off, n);
  }
  return std::nullopt;
}

}  // namespace sp

namespace sp {

std::vector<ElfRela> ElfFile::relocations() const {
  std::vector<ElfRela> out;
  std::span<const std::uint8_t> d(data_);
  for (const auto& s : sections_) {
    if (s.type != SHT_RELA) continue;
    auto bytes = section_bytes(s);
    const std::size_t count = bytes.size() / sizeof(Elf64_Rela);
    out.reserve(out.size() + count);
    for (std::size_t i = 0; i < count; ++i) {
      Elf64_Rela r{};
      if (!read_at(d, s.offset + i * sizeof(Elf64_Rela), r)) break;
      out.push_back({r.r_offset, static_cast<std::uint32_t>(ELF64_R_TYPE(r.r_info)),
                     static_cast<std::uint32_t>(ELF64_R_SYM(r.r_info)), r.r_addend, s.link});
    }
  }
  return out;
}

bool ElfFile::is_relative_relocation(std::uint32_t type) const {
  switch (machine_) {
    case EM_X86_64:
      return type == R_X86_64_RELATIVE;
    case EM_AARCH64:
      return type == R_AARCH64_RELATIVE;
    default:
      return false;
  }
}

bool ElfFile::is_absolute64_relocation(std::uint32_t type) const {
  switch (machine_) {
    case EM_X86_64:
      return type == R_X86_64_64;
    case EM_AARCH64:
      return type == R_AARCH64_ABS64;
    default:
      return false;
  }
}

std::optional<ElfSymbol> ElfFile::symbol_at(std::uint32_t table, std::uint32_t index) const {
  if (table >= sections_.size()) return std::nullopt;
  const ElfSection& t = sections_[table];
  if (t.type != SHT_SYMTAB && t.type != SHT_DYNSYM) return std::nullopt;
  if (index >= section_bytes(t).size() / sizeof(Elf64_Sym)) return std::nullopt;
  Elf64_Sym sym{};
  std::span<const std::uint8_t> d(data_);
  if (!read_at(d, t.offset + std::uint64_t{index} * sizeof(Elf64_Sym), sym)) return std::nullopt;
  ElfSymbol s;
  if (t.link < sections_.size() && sym.st_name != 0) {
    const ElfSection& strs = sections_[t.link];
    if (sym.st_name < strs.size) s.name = std::string(cstr_at(d, strs.offset + sym.st_name, strs.offset + strs.size));
  }
  s.value = sym.st_value;
  s.size = sym.st_size;
  s.type = ELF64_ST_TYPE(sym.st_info);
  s.bind = ELF64_ST_BIND(sym.st_info);
  s.shndx = sym.st_shndx;
  s.dynamic = t.type == SHT_DYNSYM;
  return s;
}

std::optional<std::string> ElfFile::soname() const {
  std::span<const std::uint8_t> d(data_);
  for (const auto& s : sections_) {
    if (s.type != SHT_DYNAMIC || s.link >= sections_.size()) continue;
    const ElfSection& strs = sections_[s.link];
    auto bytes = section_bytes(s);
    const std::size_t count = bytes.size() / sizeof(Elf64_Dyn);
    for (std::size_t i = 0; i < count; ++i) {
      Elf64_Dyn dyn{};
      if (!read_at(d, s.offset + i * sizeof(Elf64_Dyn), dyn) || dyn.d_tag == DT_NULL) break;
      if (dyn.d_tag != DT_SONAME || dyn.d_un.d_val >= strs.size) continue;
      auto name = cstr_at(d, strs.offset + dyn.d_un.d_val, strs.offset + strs.size);
      if (!name.empty()) return std::string(name);
    }
  }
  return std::nullopt;
}

std::vector<std::uint64_t> ElfFile::find_cstring(std::string_view text) const {
  std::vector<std::uint64_t> out;
  if (text.empty()) return out;
  // The needle includes the terminating NUL so that "collect" does not match inside "collection".
  std::string needle(text);
  needle.push_back('\0');
  for (const auto& s : sections_) {
    if (s.type != SHT_PROGBITS || !(s.flags & SHF_ALLOC) || (s.flags & SHF_EXECINSTR)) continue;
    auto bytes = section_bytes(s);
    std::string_view hay(reinterpret_cast<const char*>(bytes.data()), bytes.size());
    for (std::size_t pos = hay.find(needle); pos != std::string_view::npos; pos = hay.find(needle, pos + 1)) {
      out.push_back(s.addr + pos);
    }
  }
  return out;
}

std::optional<std::string_view> ElfFile::cstring_at_vaddr(std::uint64_t vaddr, std::size_t max_len) const {
  for (const auto& seg : segments_) {
    if (seg.type != PT_LOAD || vaddr < seg.vaddr || vaddr - seg.vaddr >= seg.filesz) continue;
    const std::uint64_t off = seg.offset + (vaddr - seg.vaddr);
    const std::uint64_t seg_end = seg.offset + seg.filesz;
    if (off >= data_.size()) return std::nullopt;
    std::uint64_t end = std::min<std::uint64_t>({seg_end, data_.size(), off + max_len + 1});
    const char* p = reinterpret_cast<const char*>(data_.data() + off);
    const std::size_t len = strnlen(p, end - off);
    if (len == end - off) return std::nullopt;
    return std::string_view(p, len);
  }
  return std::nullopt;
}

bool ElfFile::is_executable_vaddr(std::uint64_t vaddr) const {
  for (const auto& seg : segments_) {
    if (seg.type == PT_LOAD && (seg.flags & PF_X) && vaddr >= seg.vaddr && vaddr - seg.vaddr < seg.memsz) return true;
  }
  return false;
}

}  // namespace sp
