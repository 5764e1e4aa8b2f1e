// Recordings from synthetic events: what the cap and the span admit, and what they count as dropped.
#include <gtest/gtest.h>
#include <malloc.h>  // mallinfo2

#include <string>
#include <string_view>

#include "core/record/recording.h"
#include "core/record/trace_json.h"
#include "sample_recording.h"

using sp::test::gc;
using sp::test::io;
using sp::test::kMs;
using sp::test::kSync;
using sp::test::kT0;
using sp::test::query;

TEST(Recording, TheCapDropsAndCountsLaterEvents) {
  sp::Recording r(3);
  r.start(kT0, {});
  EXPECT_TRUE(r.add_gc(gc(kSync, 1, 2)));
  EXPECT_TRUE(r.add_gc(gc(kSync, 3, 4)));
  EXPECT_TRUE(r.add_query(query(kSync, 1, 5, 6)));
  EXPECT_FALSE(r.add_query(query(kSync, 1, 7, 8)));
  EXPECT_FALSE(r.add_io(io(kSync, 9, 10, 11)));
  EXPECT_EQ(r.events(), 3u);
  EXPECT_EQ(r.dropped(), 2u);
  // Events that ended before the start are not part of the recording (and not counted as dropped).
  sp::Recording early(10);
  early.start(kT0 + 100 * kMs, {});
  EXPECT_FALSE(early.add_gc(gc(kSync, 1, 50)));
  EXPECT_EQ(early.dropped(), 0u);
}

namespace {

// Counts the bytes, keeps none.
class DiscardingOutput : public sp::TraceOutput {
 public:
  void write(std::string_view bytes) override { bytes_ += bytes.size(); }
  bool close(std::string&) override { return true; }
  std::uint64_t bytes_ = 0;
};

std::size_t heap_in_use() { return mallinfo2().uordblks; }

}  // namespace

// Memory does not grow with the recording's length: after a warm-up (every worker, statement, transaction and track
// seen), 200 000 more events over another 100 s of recording leave the heap where it was. Holding the events, as
// recordings did before, would add 200-400 bytes each (tens of MB).
TEST(Recording, MemoryStaysFlatAsTheRecordingGoesOn) {
  DiscardingOutput out;
  sp::TraceStream trace(out);
  sp::Recording r;
  r.set_trace(&trace);
  r.start(kT0, {});
  const sp::WorkerLabels workers[] = {{"w1", "synapse.app.generic_worker"}, {"w2", "synapse.app.generic_worker"}};
  auto feed = [&](std::uint64_t from_event, std::uint64_t to_event) {
    for (std::uint64_t i = from_event; i < to_event; ++i) {
      const std::uint64_t at = i * 500'000;  // 2 000 events/s
      sp::QueryEvent q = query(workers[i % 2], 100 + static_cast<std::uint32_t>(i % 8), 0, 0, i % 3 == 0,
                               "SELECT * FROM t" + std::to_string(i % 50) + " WHERE id = $1");
      q.start_ns = kT0 + at;
      q.end_ns = q.start_ns + 200'000 + (i % 13) * 10'000;
      q.desc = "txn_" + std::to_string(i % 20);
      ASSERT_TRUE(r.add_query(q));
      if (i % 1000 == 0) {
        ASSERT_TRUE(r.add_gc(gc(workers[i % 2], at / kMs, at / kMs + 3)));
      }
      if (i % 100 == 0) {
        ASSERT_TRUE(r.add_io(io(workers[i % 2], at / kMs, at / kMs + 1, at / kMs + 2)));
      }
    }
  };
  feed(0, 100'000);
  const std::size_t warm = heap_in_use();
  feed(100'000, 300'000);
  const std::size_t after = heap_in_use();
  EXPECT_LT(static_cast<double>(after) - static_cast<double>(warm), 1.5 * 1024 * 1024)
      << "heap grew from " << warm << " to " << after << " bytes";
  EXPECT_GT(out.bytes_, 300'000u * 100) << "the events went to the trace";
  EXPECT_EQ(r.events(), 300'000u + 300u + 3'000u);
}
