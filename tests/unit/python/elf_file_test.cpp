#include <elf.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstring>
#include <vector>

#include "core/python/elf_file.h"

namespace {

std::optional<sp::ElfFile> load(const char* path, std::string& error) {
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    error = "open failed";
    return std::nullopt;
  }
  auto f = sp::ElfFile::from_fd(fd, error);
  close(fd);
  return f;
}

}  // namespace

// Debian's python3.11 is built with --with-dtrace: its GC probes are SDT notes with semaphores.
TEST(ElfFile, FindsPythonGcUsdtNotesInDebianPython) {
  std::string error;
  auto f = load("/usr/bin/python3.11", error);
  ASSERT_TRUE(f) << error;
  EXPECT_TRUE(f->has_usdt("python", "gc__start"));
  EXPECT_TRUE(f->has_usdt("python", "gc__done"));
  for (const auto& n : f->usdt_notes()) {
    if (n.provider == "python" && n.name == "gc__start") {
      EXPECT_NE(n.semaphore, 0u);
      EXPECT_NE(n.pc, 0u);
      EXPECT_FALSE(n.args.empty());
    }
  }
  EXPECT_FALSE(f->has_usdt("python", "no_such_probe"));
}

TEST(ElfFile, FindsLibpqEntryPointsInDynsym) {
  std::string error;
  auto f = load("/usr/lib/x86_64-linux-gnu/libpq.so.5", error);
  ASSERT_TRUE(f) << error;
  EXPECT_EQ(f->type(), ET_DYN);
  auto sym = f->find_symbol("PQexec");
  ASSERT_TRUE(sym);
  EXPECT_EQ(sym->type, STT_FUNC);
  EXPECT_TRUE(sym->dynamic);
  auto off = f->vaddr_to_offset(sym->value);
  ASSERT_TRUE(off);
  EXPECT_FALSE(f->find_symbol("PQdefinitelyNotAFunction"));
}

TEST(ElfFile, RejectsNonElfAndTruncatedInput) {
  std::string error;
  std::vector<std::uint8_t> junk = {'n', 'o', 't', ' ', 'e', 'l', 'f'};
  EXPECT_FALSE(sp::ElfFile::parse(junk, error));
  EXPECT_EQ(error, "not an ELF file");

  // A valid header whose section table points past the end of the file.
  Elf64_Ehdr eh{};
  std::memcpy(eh.e_ident, ELFMAG, SELFMAG);
  eh.e_ident[EI_CLASS] = ELFCLASS64;
  eh.e_ident[EI_DATA] = ELFDATA2LSB;
  eh.e_type = ET_DYN;
  eh.e_shoff = 1 << 20;
  eh.e_shentsize = sizeof(Elf64_Shdr);
  eh.e_shnum = 4;
  std::vector<std::uint8_t> bytes(sizeof eh);
  std::memcpy(bytes.data(), &eh, sizeof eh);
  EXPECT_FALSE(sp::ElfFile::parse(bytes, error));
  EXPECT_NE(error.find("truncated"), std::string::npos);

  eh.e_ident[EI_CLASS] = ELFCLASS32;
  std::memcpy(bytes.data(), &eh, sizeof eh);
  EXPECT_FALSE(sp::ElfFile::parse(bytes, error));
}

// Every prefix of a real binary's first bytes parses or fails cleanly (the fuzzer goes further).
TEST(ElfFile, TruncationsOfARealBinaryNeverCrash) {
  int fd = open("/usr/lib/x86_64-linux-gnu/libpq.so.5", O_RDONLY | O_CLOEXEC);
  ASSERT_GE(fd, 0);
  std::vector<std::uint8_t> head(64 * 1024);
  ssize_t n = pread(fd, head.data(), head.size(), 0);
  close(fd);
  ASSERT_GT(n, 0);
  head.resize(static_cast<std::size_t>(n));
  for (std::size_t len = 0; len < head.size(); len += 509) {
    std::string error;
    auto f = sp::ElfFile::parse(std::span(head.data(), len), error);
    if (f) {
      (void)f->symbols();
      (void)f->usdt_notes();
    }
  }
}
