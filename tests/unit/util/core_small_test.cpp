// Small pure helpers: durations, capabilities, JSON quoting.
#include <gtest/gtest.h>

#include <cerrno>

#include "core/proc/capabilities.h"
#include "core/util/duration.h"
#include "core/util/json.h"
#include "core/util/safe_file.h"
#include "core/model/process_book.h"

using namespace std::chrono_literals;

TEST(Duration, ParsesUnitsAndCombinations) {
  EXPECT_EQ(sp::parse_duration("5s"), 5s);
  EXPECT_EQ(sp::parse_duration("250ms"), 250ms);
  EXPECT_EQ(sp::parse_duration("1m30s"), 90s);
  EXPECT_EQ(sp::parse_duration("2h"), 2h);
  EXPECT_EQ(sp::parse_duration("10"), 10s);
  EXPECT_EQ(sp::parse_duration("1.5s"), 1500ms);
  EXPECT_EQ(sp::parse_duration("7us"), 7us);
}

TEST(Duration, RejectsGarbage) {
  for (const char* bad : {"", "s", "5x", "-1s", "1s5", "5 s", "1e400s", "..s"}) {
    EXPECT_FALSE(sp::parse_duration(bad)) << bad;
  }
}

TEST(Duration, FormatsInTheLargestExactUnit) {
  EXPECT_EQ(sp::format_duration(5s), "5s");
  EXPECT_EQ(sp::format_duration(1500ms), "1500ms");
  EXPECT_EQ(sp::format_duration(3ns), "3ns");
}

TEST(Capabilities, ParsesCapEffFromStatus) {
  const char* status = "Name:\tx\nCapInh:\t0000000000000000\nCapEff:\t000001ffffffffff\nCapBnd:\t0\n";
  auto caps = sp::parse_cap_eff(status);
  ASSERT_TRUE(caps);
  EXPECT_TRUE(sp::has_cap(*caps, sp::Cap::SysAdmin));
  EXPECT_TRUE(sp::has_cap(*caps, sp::Cap::Bpf));
  auto bpf_only = sp::parse_cap_eff("CapEff:\t000000c000000000\n");  // CAP_PERFMON (38) + CAP_BPF (39)
  ASSERT_TRUE(bpf_only);
  EXPECT_TRUE(sp::has_cap(*bpf_only, sp::Cap::Perfmon));
  EXPECT_FALSE(sp::has_cap(*bpf_only, sp::Cap::SysAdmin));
  EXPECT_FALSE(sp::parse_cap_eff("CapEff:\tzz\n"));
  EXPECT_FALSE(sp::parse_cap_eff("nothing here"));
  EXPECT_EQ(sp::cap_name(sp::Cap::SysPtrace), "CAP_SYS_PTRACE");
}

TEST(ErrnoText, ReadsLibbpfsNegativeCodesAsTheirErrno) {
  EXPECT_EQ(sp::errno_text(ENOENT), "No such file or directory");
  EXPECT_EQ(sp::errno_text(-ENOENT), sp::errno_text(ENOENT));
  EXPECT_EQ(sp::errno_text(-EPERM), "Operation not permitted");
}

TEST(Json, QuotesAndEscapesEverythingUnsafe) {
  EXPECT_EQ(sp::json_quote("plain"), "\"plain\"");
  EXPECT_EQ(sp::json_quote("a\"b\\c\n"), "\"a\\\"b\\\\c\\n\"");
  EXPECT_EQ(sp::json_quote(std::string("\x01\xff", 2)), "\"\\u0001\\u00ff\"");
}

TEST(ProcessBook, ForgettingAWorkerDropsItsRetiredTotalsButNotALiveProcess) {
  struct Count {
    int n = 0;
    void add(const Count& o) { n += o.n; }
  };
  const sp::WorkerLabels a{"a", "synapse.app.generic_worker"}, b{"b", "synapse.app.generic_worker"};
  sp::ProcessBook<int, Count> book;
  book.set_live(10, a, 0, {3});
  book.retire(10);
  book.set_live(11, b, 0, {5});
  book.retire(11);
  book.set_live(12, b, 0, {7});  // b restarted: live again under the same labels
  book.forget(a);
  book.forget(b);
  auto totals = book.totals();
  EXPECT_EQ(totals.count({a, 0}), 0u);
  ASSERT_EQ(totals.count({b, 0}), 1u);
  EXPECT_EQ(totals.at({b, 0}).n, 7);  // the retired 5 went, the live 7 stays
}
