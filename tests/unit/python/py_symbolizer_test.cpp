// The Python frame symbolizer against a fake process memory (code objects, str and bytes objects laid out with the
// real 3.10-3.13 offsets), and both line-table decoders against the lines each real interpreter computes itself
// (tests/data/python/linetables.txt, written by make_linetables.py under pyenv 3.10-3.13).
#include "core/python/py_symbolizer.h"

#include <gtest/gtest.h>

#include <cstring>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "../../common/test_data.h"

namespace {

class FakeMemory : public sp::ProcessMemory {
 public:
  bool read(int pid, std::uint64_t addr, void* out, std::size_t len) override {
    ++reads;
    if (pid != pid_) return false;
    auto it = regions.upper_bound(addr);
    if (it == regions.begin()) return false;
    --it;
    const auto& [start, bytes] = *it;
    if (addr < start || addr + len > start + bytes.size()) return false;
    std::memcpy(out, bytes.data() + (addr - start), len);
    return true;
  }
  void put(std::uint64_t addr, std::vector<std::uint8_t> bytes) { regions[addr] = std::move(bytes); }
  template <typename T>
  void poke(std::uint64_t region, std::size_t offset, T v) {
    std::memcpy(regions.at(region).data() + offset, &v, sizeof v);
  }
  std::map<std::uint64_t, std::vector<std::uint8_t>> regions;
  int pid_ = 42;
  int reads = 0;
};

std::vector<std::uint8_t> from_hex(const std::string& hex) {
  std::vector<std::uint8_t> out;
  for (std::size_t i = 0; i + 1 < hex.size(); i += 2) out.push_back(static_cast<std::uint8_t>(std::stoi(hex.substr(i, 2), nullptr, 16)));
  return out;
}

sp::PyCodeLayout layout(int minor) {
  sp::PythonVersion v;
  v.major = 3;
  v.minor = minor;
  std::string why;
  auto o = sp::py_offsets_for_version(v, why);
  EXPECT_TRUE(o) << why;
  sp::PyCodeLayout l;
  l.minor = minor;
  l.offsets = *o;
  l.code_type = 0x7000;
  return l;
}

// Lays a compact str out at `addr` (kind 1 = ASCII when `ascii`).
void put_str(FakeMemory& m, const sp::PyCodeLayout& l, std::uint64_t addr, const std::u32string& text, unsigned kind,
             bool ascii) {
  const auto& o = l.offsets;
  const std::size_t head = o.str_data + (ascii ? 0 : (l.minor >= 12 ? 16 : 24));
  std::vector<std::uint8_t> b(head + (text.size() + 1) * kind, 0);
  const std::int64_t len = static_cast<std::int64_t>(text.size());
  std::memcpy(&b[o.str_length], &len, 8);
  std::uint32_t state = o.state_compact | (kind << 2) | (ascii ? o.state_ascii : 0);
  std::memcpy(&b[o.str_state], &state, 4);
  for (std::size_t i = 0; i < text.size(); ++i) {
    const std::uint32_t c = text[i];
    std::memcpy(&b[head + i * kind], &c, kind);  // little-endian: the low bytes
  }
  m.put(addr, std::move(b));
}

void put_bytes(FakeMemory& m, const sp::PyCodeLayout& l, std::uint64_t addr, const std::vector<std::uint8_t>& data) {
  std::vector<std::uint8_t> b(l.offsets.bytes_data + data.size() + 1, 0);
  const std::int64_t len = static_cast<std::int64_t>(data.size());
  std::memcpy(&b[l.offsets.bytes_size], &len, 8);
  std::memcpy(&b[l.offsets.bytes_data], data.data(), data.size());
  m.put(addr, std::move(b));
}

constexpr std::uint64_t kCode = 0x10000, kName = 0x20000, kQual = 0x21000, kFile = 0x22000, kTable = 0x23000;

void put_code(FakeMemory& m, const sp::PyCodeLayout& l, int first_line) {
  const auto& o = l.offsets;
  std::vector<std::uint8_t> b(256, 0);
  auto set = [&](std::uint32_t off, std::uint64_t v) { std::memcpy(&b[off], &v, 8); };
  set(o.ob_type, l.code_type);
  set(o.co_name, kName);
  if (o.co_qualname) set(*o.co_qualname, kQual);
  set(o.co_filename, kFile);
  set(o.co_linetable, kTable);
  std::int32_t fl = first_line;
  std::memcpy(&b[o.co_firstlineno], &fl, 4);
  m.put(kCode, std::move(b));
}

struct TableCase {
  int minor = 0, first_line = 0;
  std::vector<std::uint8_t> table;
  std::vector<std::pair<int, int>> lines;  // byte offset, line (-1: none)
};

std::vector<TableCase> table_cases() {
  std::vector<TableCase> out;
  std::istringstream in(sp::test::read_test_data("python/linetables.txt"));
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream f(line);
    TableCase c;
    std::string hex, pair;
    f >> c.minor >> c.first_line >> hex;
    c.table = from_hex(hex);
    while (f >> pair) {
      auto colon = pair.find(':');
      c.lines.emplace_back(std::stoi(pair.substr(0, colon)), std::stoi(pair.substr(colon + 1)));
    }
    out.push_back(std::move(c));
  }
  return out;
}

TEST(PyLineTable, EveryInstructionOfRealCodeObjectsGetsTheInterpretersLine) {
  auto cases = table_cases();
  ASSERT_EQ(cases.size(), 16u);  // 4 code objects x 3.10-3.13
  std::map<int, int> per_minor;
  for (const auto& c : cases) {
    ++per_minor[c.minor];
    ASSERT_FALSE(c.lines.empty());
    for (auto [off, want] : c.lines) {
      const int got = c.minor >= 11 ? sp::py311_line_for_offset(c.table, c.first_line, off)
                                    : sp::py310_line_for_offset(c.table, c.first_line, off);
      EXPECT_EQ(got, want < 0 ? 0 : want) << "3." << c.minor << " first line " << c.first_line << " offset " << off;
    }
    // Past the end, before the start, and cut tables never read out of bounds and answer 0.
    auto decode = c.minor >= 11 ? sp::py311_line_for_offset : sp::py310_line_for_offset;
    EXPECT_EQ(decode(c.table, c.first_line, c.lines.back().first + 1000), 0);
    EXPECT_EQ(decode(c.table, c.first_line, -2), 0);
    for (std::size_t cut = 0; cut < c.table.size(); ++cut) {
      std::span<const std::uint8_t> part(c.table.data(), cut);
      (void)sp::py311_line_for_offset(part, c.first_line, c.lines.back().first);
      (void)sp::py310_line_for_offset(part, c.first_line, c.lines.back().first);
    }
  }
  EXPECT_EQ(per_minor, (std::map<int, int>{{10, 4}, {11, 4}, {12, 4}, {13, 4}}));
}

class Symbolizer : public ::testing::TestWithParam<int> {};

TEST_P(Symbolizer, NamesCodeObjectsAndLinesAndNoticesReuse) {
  const int minor = GetParam();
  const auto l = layout(minor);
  // A real table of this version: the first code object of the fixture for it (first line 8, `sample`).
  TableCase tc;
  for (auto& c : table_cases())
    if (c.minor == minor) {
      tc = c;
      break;
    }
  ASSERT_FALSE(tc.table.empty());
  FakeMemory m;
  put_code(m, l, tc.first_line);
  put_str(m, l, kName, U"method", 1, true);
  put_str(m, l, kQual, U"Holder.method", 1, true);
  put_str(m, l, kFile, U"/srv/app/h\u00e9llo_\u4e16.py", 2, false);  // a non-ASCII path (UCS-2)
  put_bytes(m, l, kTable, tc.table);

  sp::PySymbolizer sym(m);
  std::string error;
  EXPECT_FALSE(sym.symbolize(42, kCode, 0, error));
  EXPECT_NE(error.find("no Python layout"), std::string::npos) << error;
  sym.set_process(42, l);

  const auto [off, want_line] = tc.lines.back();
  auto s = sym.symbolize(42, kCode, off, error);
  ASSERT_TRUE(s) << error;
  EXPECT_EQ(s->function, minor >= 11 ? "Holder.method" : "method");  // 3.10 has no co_qualname
  EXPECT_EQ(s->file, "/srv/app/h\xc3\xa9llo_\xe4\xb8\x96.py");
  EXPECT_EQ(s->first_line, tc.first_line);
  EXPECT_EQ(s->line, want_line);
  EXPECT_EQ(sym.symbolize(42, kCode, -1, error)->line, 0);  // not started yet: first line only
  EXPECT_EQ(sym.stats().misses, 1u);
  EXPECT_EQ(sym.stats().hits, 1u);

  // A hit re-reads only the header: one read.
  const int before = m.reads;
  ASSERT_TRUE(sym.symbolize(42, kCode, off, error));
  EXPECT_EQ(m.reads - before, 1);

  // The code object was freed and another one took its place: new name pointer, new first line.
  put_str(m, l, kName + 0x800, U"other", 1, true);
  put_str(m, l, kQual + 0x800, U"Other.fn", 1, true);
  m.poke<std::uint64_t>(kCode, l.offsets.co_name, kName + 0x800);
  if (l.offsets.co_qualname) m.poke<std::uint64_t>(kCode, *l.offsets.co_qualname, kQual + 0x800);
  m.poke<std::int32_t>(kCode, l.offsets.co_firstlineno, 500);
  s = sym.symbolize(42, kCode, -1, error);
  ASSERT_TRUE(s) << error;
  EXPECT_EQ(s->function, minor >= 11 ? "Other.fn" : "other");
  EXPECT_EQ(s->first_line, 500);
  EXPECT_EQ(sym.stats().reused, 1u);

  // Not a code object any more (some other object reused the memory): an error, and the entry is dropped.
  m.poke<std::uint64_t>(kCode, l.offsets.ob_type, 0x9999);
  EXPECT_FALSE(sym.symbolize(42, kCode, off, error));
  EXPECT_NE(error.find("not a code object"), std::string::npos) << error;
  EXPECT_EQ(sym.cached(), 0u);

  // Unreadable memory, an unreadable name: errors, no crash.
  EXPECT_FALSE(sym.symbolize(42, 0xdead0000, 0, error));
  m.poke<std::uint64_t>(kCode, l.offsets.ob_type, l.code_type);
  m.poke<std::uint64_t>(kCode, l.offsets.co_filename, 0xbad);
  EXPECT_FALSE(sym.symbolize(42, kCode, 0, error));

  // A process that exits takes its entries along.
  m.poke<std::uint64_t>(kCode, l.offsets.co_filename, kFile);
  ASSERT_TRUE(sym.symbolize(42, kCode, 0, error)) << error;
  EXPECT_EQ(sym.cached(), 1u);
  sym.forget_process(42);
  EXPECT_EQ(sym.cached(), 0u);
  EXPECT_FALSE(sym.symbolize(42, kCode, 0, error));
}

TEST_P(Symbolizer, OversizedOrMissingLineTableGivesFirstLineOnly) {
  const int minor = GetParam();
  const auto l = layout(minor);
  FakeMemory m;
  put_code(m, l, 77);
  put_str(m, l, kName, U"f", 1, true);
  put_str(m, l, kQual, U"f", 1, true);
  put_str(m, l, kFile, U"a.py", 1, true);
  std::vector<std::uint8_t> huge(l.offsets.bytes_data + 8, 0);
  const std::int64_t size = 1 << 30;
  std::memcpy(&huge[l.offsets.bytes_size], &size, 8);
  m.put(kTable, huge);
  sp::PySymbolizer sym(m);
  sym.set_process(42, l);
  std::string error;
  auto s = sym.symbolize(42, kCode, 4, error);
  ASSERT_TRUE(s) << error;
  EXPECT_EQ(s->first_line, 77);
  EXPECT_EQ(s->line, 0);
}

INSTANTIATE_TEST_SUITE_P(Versions, Symbolizer, ::testing::Values(10, 11, 12, 13),
                         [](const auto& info) { return "Py3" + std::to_string(info.param); });

}  // namespace
