// The CPython offset tables against each version's own headers (offsetof in tests/unit/pyheaders, compiled for every
// version whose internal headers CMake found: Debian's python3.11-dev, pyenv builds), _Py_DebugOffsets parsing
// against a real 3.13 libpython where one is installed, the plan for Debian's python3.11, load bases, and glibc's
// thread-specific block checked on a live thread of this process.
#include "core/python/py_offsets.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <gnu/libc-version.h>
#include <pthread.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "core/python/elf_file.h"
#include "../pyheaders/py_header_offsets.h"

namespace {

std::optional<sp::ElfFile> load(const std::string& path) {
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return std::nullopt;
  std::string error;
  auto f = sp::ElfFile::from_fd(fd, error);
  close(fd);
  return f;
}

sp::PythonVersion version(int minor, int micro = 0) {
  sp::PythonVersion v;
  v.major = 3;
  v.minor = minor;
  v.micro = micro;
  return v;
}

void expect_table_matches_headers(int minor, const sp_py_header_offsets& h) {
  std::string why;
  auto t = sp::py_offsets_for_version(version(minor), why);
  ASSERT_TRUE(t) << why;
  EXPECT_EQ((h.version_hex >> 16) & 0xff, static_cast<unsigned long>(minor));
  EXPECT_EQ(t->tss_key, h.tss_key);
  EXPECT_EQ(t->interp_head, h.interp_head);
  EXPECT_EQ(t->threads_head, h.threads_head);
  EXPECT_EQ(t->ts_next, h.ts_next);
  EXPECT_EQ(t->ts_thread_id, h.ts_thread_id);
  EXPECT_EQ(t->ts_frame, h.ts_frame);
  if (h.cframe_current < 0) {
    EXPECT_FALSE(t->cframe_current);
  } else {
    ASSERT_TRUE(t->cframe_current);
    EXPECT_EQ(*t->cframe_current, h.cframe_current);
  }
  EXPECT_EQ(t->f_code, h.f_code);
  EXPECT_EQ(t->f_back, h.f_back);
  EXPECT_EQ(t->f_locals, h.f_locals);
  EXPECT_EQ(t->co_name, h.co_name);
  EXPECT_EQ(t->co_varnames, h.co_varnames);
  EXPECT_EQ(t->ob_type, h.ob_type);
  EXPECT_EQ(t->tuple_size, h.tuple_size);
  EXPECT_EQ(t->tuple_items, h.tuple_items);
  EXPECT_EQ(t->str_length, h.str_length);
  EXPECT_EQ(t->str_state, h.str_state);
  EXPECT_EQ(t->str_data, h.str_data);
  EXPECT_EQ(t->state_compact, h.state_compact);
  EXPECT_EQ(t->state_ascii, h.state_ascii);
  // Stacks
  EXPECT_EQ(t->f_instr, h.f_instr);
  EXPECT_EQ(t->instr_is_pointer, minor >= 11);
  if (h.f_owner < 0) {
    EXPECT_FALSE(t->f_owner);
  } else {
    ASSERT_TRUE(t->f_owner);
    EXPECT_EQ(*t->f_owner, h.f_owner);
    EXPECT_EQ(t->owner_cstack, h.owner_cstack);
  }
  if (h.co_qualname < 0) {
    EXPECT_FALSE(t->co_qualname);
  } else {
    ASSERT_TRUE(t->co_qualname);
    EXPECT_EQ(*t->co_qualname, h.co_qualname);
    EXPECT_EQ(t->co_code_adaptive, h.co_code_adaptive);
  }
  EXPECT_EQ(t->co_filename, h.co_filename);
  EXPECT_EQ(t->co_firstlineno, h.co_firstlineno);
  EXPECT_EQ(t->co_linetable, h.co_linetable);
  EXPECT_EQ(t->bytes_size, h.bytes_size);
  EXPECT_EQ(t->bytes_data, h.bytes_data);
}

#define SP_HEADER_TEST(minor)                                                                  \
  TEST(PyOffsets, Table3##minor##MatchesInstalledHeaders) {                                    \
    sp_py_header_offsets h{};                                                                  \
    ASSERT_EQ(sp_py3##minor##_header_offsets(&h), 0);                                          \
    expect_table_matches_headers(minor, h);                                                    \
  }

#ifdef SP_HAVE_PY311_HEADERS
SP_HEADER_TEST(11)
#endif
#ifdef SP_HAVE_PY310_HEADERS
SP_HEADER_TEST(10)
#endif
#ifdef SP_HAVE_PY312_HEADERS
SP_HEADER_TEST(12)
#endif
#ifdef SP_HAVE_PY313_HEADERS
SP_HEADER_TEST(13)
#endif

TEST(PyOffsets, UnknownVersionsHaveNoTableAndSayWhy) {
  std::string why;
  EXPECT_FALSE(sp::py_offsets_for_version(version(9, 18), why));
  EXPECT_NE(why.find("3.9.18 has no offset table"), std::string::npos) << why;
  EXPECT_FALSE(sp::py_offsets_for_version(version(14, 0), why));
  EXPECT_NE(why.find("3.14.0"), std::string::npos) << why;
  EXPECT_FALSE(sp::py_offsets_for_version(sp::PythonVersion{}, why));
  EXPECT_NE(why.find("unknown"), std::string::npos) << why;
  auto ft = version(13);
  ft.free_threaded = true;
  EXPECT_FALSE(sp::py_offsets_for_version(ft, why));
  EXPECT_NE(why.find("free-threaded"), std::string::npos) << why;
  auto dbg = version(11);
  dbg.debug = true;
  EXPECT_FALSE(sp::py_offsets_for_version(dbg, why));
  EXPECT_NE(why.find("debug"), std::string::npos) << why;
}

std::vector<std::uint8_t> debug_offsets_bytes(std::uint64_t version_hex) {
  std::vector<std::uint64_t> w(73, 0);
  std::memcpy(w.data(), "xdebugpy", 8);
  w[1] = version_hex;
  w[3] = 3000;  // runtime size
  w[5] = 632;
  w[6] = 9000;  // interpreter size
  w[9] = 7344;
  w[19] = 300;  // thread state size
  w[21] = 8, w[23] = 72, w[24] = 152;
  w[28] = 80;  // frame size
  w[29] = 8, w[30] = 0, w[32] = 72;
  w[34] = 200;  // code size
  w[36] = 120, w[41] = 96, w[45] = 8, w[51] = 24, w[52] = 16, w[68] = 32, w[69] = 16, w[70] = 40;
  std::vector<std::uint8_t> b(w.size() * 8);
  std::memcpy(b.data(), w.data(), b.size());
  return b;
}

TEST(PyOffsets, DebugOffsetsParseTheThreeThirteenLayout) {
  std::string error;
  auto bytes = debug_offsets_bytes(0x030d01f0);
  auto d = sp::parse_py_debug_offsets(bytes, error);
  ASSERT_TRUE(d) << error;
  EXPECT_EQ(d->interp_head, 632u);
  EXPECT_EQ(d->threads_head, 7344u);
  EXPECT_EQ(d->ts_current_frame, 72u);
  EXPECT_EQ(d->ts_thread_id, 152u);
  EXPECT_EQ(d->f_localsplus, 72u);
  EXPECT_EQ(d->co_localsplusnames, 96u);
  EXPECT_EQ(d->str_ascii_size, 40u);
  EXPECT_FALSE(d->free_threaded);
}

TEST(PyOffsets, DebugOffsetsRejectWhatTheyDoNotKnow) {
  std::string error;
  auto bytes = debug_offsets_bytes(0x030d00f0);
  bytes[0] = 'y';
  EXPECT_FALSE(sp::parse_py_debug_offsets(bytes, error));
  EXPECT_NE(error.find("cookie"), std::string::npos);
  EXPECT_FALSE(sp::parse_py_debug_offsets(debug_offsets_bytes(0x030e00f0), error));  // 3.14 grew the struct
  EXPECT_NE(error.find("3.14"), std::string::npos) << error;
  auto whole = debug_offsets_bytes(0x030d00f0);
  EXPECT_FALSE(sp::parse_py_debug_offsets(std::span(whole).first(200), error));
  EXPECT_NE(error.find("truncated"), std::string::npos) << error;
  auto insane = debug_offsets_bytes(0x030d00f0);
  std::uint64_t huge = 1u << 30;
  std::memcpy(insane.data() + 23 * 8, &huge, 8);  // current_frame beyond the thread state
  EXPECT_FALSE(sp::parse_py_debug_offsets(insane, error));
  EXPECT_NE(error.find("outside"), std::string::npos) << error;
}

// A real 3.13 build describes itself: its _Py_DebugOffsets must agree with the table everywhere both speak.
TEST(PyOffsets, ThreeThirteenLibpythonDebugOffsetsAgreeWithTheTable) {
#ifndef SP_PY313_LIBPYTHON
  GTEST_SKIP() << "no CPython 3.13 libpython found at configure time";
#else
  auto elf = load(SP_PY313_LIBPYTHON);
  ASSERT_TRUE(elf);
  std::string why;
  auto plan = sp::plan_desc_attribution(*elf, SP_PY313_LIBPYTHON, why);
  ASSERT_TRUE(plan) << why;
  EXPECT_NE(plan->offsets.source.find("_Py_DebugOffsets"), std::string::npos) << plan->offsets.source;
  auto table = sp::py_offsets_for_version(plan->version, why);
  ASSERT_TRUE(table);
  table->source = plan->offsets.source;
  EXPECT_EQ(plan->offsets, *table);
#endif
}

TEST(PyOffsets, DebianPython311PlanFindsTheRuntimeAndTypes) {
  auto elf = load("/usr/bin/python3.11");
  ASSERT_TRUE(elf) << "Debian's python3.11 is part of the build environment";
  std::string why;
  auto plan = sp::plan_desc_attribution(*elf, "/usr/bin/python3.11", why);
  ASSERT_TRUE(plan) << why;
  EXPECT_EQ(plan->version.minor, 11);
  EXPECT_GE(plan->version.micro, 0) << "PY_VERSION read from the binary";
  EXPECT_EQ(plan->offsets.source, "table 3.11");
  auto runtime = elf->find_symbol("_PyRuntime");
  ASSERT_TRUE(runtime);
  EXPECT_EQ(plan->runtime_vaddr, runtime->value);
  EXPECT_NE(plan->str_type_vaddr, 0u);
  EXPECT_NE(plan->code_type_vaddr, 0u);
  EXPECT_NE(plan->detail.find("3.11"), std::string::npos);
}

TEST(PyOffsets, NinePlanSaysWhyNot) {
  // A 3.9 libpython from pyenv when there is one; otherwise the decision is made from the name alone.
  std::string why;
  std::string path;
  for (const auto& root : {std::string(getenv("HOME") ? getenv("HOME") : "") + "/.pyenv/versions"}) {
    std::error_code ec;
    for (const auto& e : std::filesystem::directory_iterator(root, ec)) {
      auto p = e.path() / "lib" / "libpython3.9.so.1.0";
      if (std::filesystem::exists(p)) path = p;
    }
  }
  if (path.empty()) GTEST_SKIP() << "no CPython 3.9 libpython installed";
  auto elf = load(path);
  ASSERT_TRUE(elf);
  EXPECT_FALSE(sp::plan_desc_attribution(*elf, path, why));
  EXPECT_NE(why.find("3.9"), std::string::npos) << why;
  EXPECT_NE(why.find("no offset table"), std::string::npos) << why;
}

TEST(PyOffsets, MappedRangesAndLoadBase) {
  auto ranges = sp::parse_mapped_ranges(
      "55d0c0000000-55d0c0001000 r--p 00000000 fd:01 42 /usr/lib/libx.so\n"
      "55d0c0001000-55d0c0005000 r-xp 00001000 fd:01 42 /usr/lib/libx.so\n"
      "garbage line\n"
      "7f0000000000-7f0000001000 rw-p 00000000 00:00 0 \n"
      "7f0000002000-7f0000003000 r--p 00002000 fd:01 43 /tmp/a b (deleted)\n");
  ASSERT_EQ(ranges.size(), 4u);
  EXPECT_EQ(ranges[1].start, 0x55d0c0001000u);
  EXPECT_EQ(ranges[1].offset, 0x1000u);
  EXPECT_EQ(ranges[2].path, "");
  EXPECT_EQ(ranges[3].path, "/tmp/a b");

  // A shared object: the runtime address of the first PT_LOAD minus its link-time address.
  auto lib = load("/usr/lib/x86_64-linux-gnu/libpython3.11.so.1.0");
  ASSERT_TRUE(lib);
  std::uint64_t first_vaddr = 0, first_offset = 0;
  for (const auto& s : lib->segments()) {
    if (s.type == 1 /* PT_LOAD */) {
      first_vaddr = s.vaddr, first_offset = s.offset;
      break;
    }
  }
  std::vector<sp::MappedRange> maps = {{0x7f1234560000, first_offset & ~0xfffull, "/usr/lib/libpython3.11.so.1.0"}};
  auto base = sp::load_base(*lib, maps, "/usr/lib/libpython3.11.so.1.0");
  ASSERT_TRUE(base);
  EXPECT_EQ(*base, 0x7f1234560000u - (first_vaddr & ~0xfffull));
  EXPECT_FALSE(sp::load_base(*lib, maps, "/other/path"));
  // A non-PIE executable is where it was linked.
  auto exe = load("/usr/bin/python3.11");
  ASSERT_TRUE(exe);
  EXPECT_EQ(sp::load_base(*exe, {}, "/usr/bin/python3.11"), 0u);
}

// glibc keeps the first 32 thread-specific values inside the thread's TCB; the offset the probe uses for this glibc
// must find, on a live thread, the value pthread_setspecific stored.
TEST(PyOffsets, GlibcSpecificBlockOffsetFindsALiveThreadsValue) {
  auto libc = load("/lib/x86_64-linux-gnu/libc.so.6");
  ASSERT_TRUE(libc);
  auto v = sp::glibc_version(*libc);
  ASSERT_TRUE(v);
  EXPECT_EQ(std::to_string(v->first) + "." + std::to_string(v->second), std::string(gnu_get_libc_version()));
  std::string detail;
  auto offset = sp::glibc_specific_offset(*libc, detail);
  if (!offset) GTEST_SKIP() << "this glibc is not one the probe reads directly: " << detail;
  pthread_key_t keys[3];
  int marker[3];
  for (int i = 0; i < 3; ++i) {
    ASSERT_EQ(pthread_key_create(&keys[i], nullptr), 0);
    ASSERT_LT(keys[i], 32u);
    ASSERT_EQ(pthread_setspecific(keys[i], &marker[i]), 0);
  }
  // pthread_self() is the TCB, which is also what %fs points at on x86-64.
  auto tcb = reinterpret_cast<const char*>(pthread_self());
  for (int i = 0; i < 3; ++i) {
    const void* stored = nullptr;
    std::memcpy(&stored, tcb + *offset + keys[i] * 16 + 8, sizeof stored);
    EXPECT_EQ(stored, &marker[i]) << "key " << keys[i];
    pthread_key_delete(keys[i]);
  }
}

}  // namespace
