// Recordings from synthetic events: what the cap and the span admit, and what they count as dropped.
#include <gtest/gtest.h>

#include "core/record/recording.h"
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
