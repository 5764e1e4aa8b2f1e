// LibpqFamily against a fake kernel side: when and how it attaches, what a record of a libpq call becomes (the
// fingerprint, never the SQL; verb and table series; the Synapse transaction it was sent from), records the ring
// lost, and what is left of a worker's process after it exits. Desc attribution stays off here: turning it on needs
// a live CPython (tests/integration covers it); the reason it is off is checked.
#include "agent/families/libpq_family.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "family_test_util.h"

namespace {

using sp::agent::LibpqAsyncMode;
using sp::agent::LibpqAttachSpec;
using sp::agent::LibpqFamily;
using sp::test::worker_labels;
using sp::test::worker_sample;
using testing::ElementsAre;
using testing::HasSubstr;
using testing::IsEmpty;
using testing::Not;

constexpr int kFakeRingFd = 78;
constexpr const char* kLibpq = "/usr/lib/x86_64-linux-gnu/libpq.so.5.15";
constexpr const char* kDescQueries = "synapse_profiler_db_desc_queries_total";

// The libpq object as the family sees it: the test makes libpq calls happen in traced processes (a record in the
// ring, or counted per process as lost when the ring is full, as libpq.bpf.c does), scripts attach failures, and
// reads back which calls the family made.
class FakeLibpqKernel : public sp::agent::LibpqKernel, public sp::test::FakeKernelSide<LibpqAttachSpec, pq_event> {
 public:
  bool ring_full = false;
  std::uint64_t misses = 0;

  // One call of process `tgid` through entry point `kind`, whose text (SQL, or a prepared statement's name) is
  // `text`, made from a Python stack where the frame walk found `desc_status` (and `desc`).
  void call(std::uint32_t tgid, std::string_view text, std::uint64_t duration_ns, std::uint32_t kind = SP_PQ_EXEC,
            std::uint32_t desc_status = SP_PY_DESC_OFF, std::string_view desc = "") {
    now_ns_ += duration_ns + 100'000;
    if (ring_full) {
      pq_lost& l = lost_[tgid];
      ++l.buckets[sp::LatencyHistogram::bucket_of(duration_ns)];
      ++l.count;
      l.sum_ns += duration_ns;
      ++lost_records_;
      return;
    }
    pq_event e{};
    e.tgid = tgid;
    e.tid = tgid;
    e.start_ns = now_ns_ - duration_ns;
    e.end_ns = now_ns_;
    e.conn = 0x5600'0000'1000ull + tgid;
    e.kind = kind;
    e.text_len = static_cast<__u32>(std::min<std::size_t>(text.size(), SP_PQ_TEXT_MAX - 1));
    std::memcpy(e.text, text.data(), e.text_len);
    e.desc_status = desc_status;
    e.desc_len = static_cast<__u32>(std::min<std::size_t>(desc.size(), SP_PY_DESC_MAX - 1));
    std::memcpy(e.desc, desc.data(), e.desc_len);
    push(e);
  }

  bool attach(const LibpqAttachSpec& spec, std::string& error) override { return scripted_attach(spec, error); }
  void detach(int host_pid) override { note("detach", host_pid); }
  bool set_python(int host_pid, const pq_py_proc&, std::string&) override {
    note("set_python", host_pid);
    return true;
  }
  int drain(const std::function<void(const pq_event&)>& fn) override { return drain_ring(fn); }
  int ring_fd() const override { return kFakeRingFd; }
  std::vector<std::pair<std::uint32_t, pq_lost>> read_lost() const override { return {lost_.begin(), lost_.end()}; }
  void erase_lost(int host_pid) override {
    note("erase_lost", host_pid);
    lost_.erase(static_cast<std::uint32_t>(host_pid));
  }
  std::uint64_t events_lost() const override { return lost_records_; }
  std::uint64_t hook_misses() const override { return misses; }

 private:
  std::map<std::uint32_t, pq_lost> lost_;
  std::uint64_t lost_records_ = 0;
  std::uint64_t now_ns_ = 1'000'000'000;
};

// Worker `name` as `pid`, with libpq mapped (it has connected to PostgreSQL).
sp::WorkerInfo pq_worker(int pid, const std::string& name) {
  sp::WorkerInfo w = sp::test::make_worker(pid, name);
  w.libpq_path = kLibpq;
  return w;
}

class LibpqFamilyTest : public sp::test::FamilyTest<LibpqFamily, sp::agent::LibpqKernel, FakeLibpqKernel> {
 protected:
  // Worker `name` runs as `pid`, connected to PostgreSQL, and is attached to.
  void attach(int pid, const std::string& name) {
    discovery_.start(pq_worker(pid, name));
    discovery_.rescan();
  }

  // How many queries of (worker, verb, table) the family exports.
  std::string query_count(const std::string& worker, const std::string& verb, const std::string& table) const {
    return worker_sample(sp::test::exposition(family_), "synapse_profiler_db_client_query_seconds_count", worker,
                         ",verb=\"" + verb + "\",table=\"" + table + "\"");
  }
  // The sample of a per-desc series (`label` "desc" or "result") of the family's exposition.
  std::string desc_sample(const char* metric, const std::string& worker, const char* label,
                          const std::string& value) const {
    return worker_sample(sp::test::exposition(family_), metric, worker,
                         std::string(",") + label + "=\"" + value + "\"");
  }
};

TEST_F(LibpqFamilyTest, AttachesOnceLibpqIsMappedThroughTheProcessRoot) {
  discovery_.start(sp::test::make_worker(101, "synchrotron1"));  // not connected yet
  discovery_.rescan();
  EXPECT_THAT(kernel_->calls, IsEmpty());

  discovery_.running(101).libpq_path = kLibpq;  // same process, connected since
  discovery_.rescan();
  discovery_.rescan();
  EXPECT_THAT(kernel_->calls, ElementsAre("attach 101"));
  ASSERT_EQ(kernel_->specs.size(), 1u);
  EXPECT_EQ(kernel_->specs[0].libpq_path, proc_.path() + "/101/root" + kLibpq);
  EXPECT_EQ(kernel_->specs[0].description, "worker synchrotron1 (pid 101)");
  EXPECT_THAT(family_.ring_fds(), ElementsAre(kFakeRingFd));

  const auto status = family_.attach_status();
  ASSERT_EQ(status.size(), 2u);
  EXPECT_EQ(status[0].probe, "libpq");
  EXPECT_EQ(status[0].labels, worker_labels("synchrotron1"));
  EXPECT_TRUE(status[0].attached);
  EXPECT_EQ(status[0].method, "uprobe_sync_async");
  // No Python found for it: desc attribution is off, and says why.
  EXPECT_EQ(status[1].probe, "libpq_desc");
  EXPECT_EQ(status[1].method, "python_frames");
  EXPECT_FALSE(status[1].attached);
  EXPECT_THAT(status[1].error, HasSubstr("no Python executable or libpython"));
}

TEST_F(LibpqFamilyTest, ARefusedAttachIsReportedWithTheKernelsErrorAndNoDescAttribution) {
  kernel_->refusals[101] =
      std::string("attach uprobe ") + kLibpq + ":PQexec for worker synchrotron1 (pid 101): No such file or directory";
  attach(101, "synchrotron1");

  const auto status = family_.attach_status();
  ASSERT_EQ(status.size(), 1u);
  EXPECT_EQ(status[0].probe, "libpq");
  EXPECT_FALSE(status[0].attached);
  EXPECT_EQ(status[0].error, kernel_->refusals[101]);
  EXPECT_THAT(family_.snapshot().desc_status, IsEmpty());
}

// psycopg2 only calls libpq's synchronous API: the asynchronous probes would add traps for nothing.
TEST(LibpqFamily, AsynchronousProbesOnlyForClientsThatMayUseThem) {
  sp::test::FakeProcRoot proc;
  proc.add(101, "7f00-7f10 r-xp 00000000 08:01 42 /usr/lib/python3/dist-packages/psycopg2/_psycopg.cpython-311.so\n");
  proc.add(102, "7f00-7f10 r-xp 00000000 08:01 43 /usr/lib/python3/dist-packages/psycopg_c/_psycopg.so\n");
  // 103: no maps to read (it has exited): the probes a client might need.
  auto async_of = [&](LibpqAsyncMode mode) {
    FakeLibpqKernel* kernel = nullptr;
    LibpqFamily family(proc.path(), sp::test::fake_opener<sp::agent::LibpqKernel>(kernel), {mode});
    std::string why;
    EXPECT_TRUE(family.start(why)) << why;
    sp::test::FakeDiscovery discovery(family);
    for (int pid : {101, 102, 103}) discovery.start(pq_worker(pid, "w" + std::to_string(pid)));
    discovery.rescan();
    std::vector<std::string> out;
    for (const auto& st : family.attach_status()) {
      if (st.probe == "libpq") out.push_back(st.method);
    }
    for (std::size_t i = 0; i < kernel->specs.size() && i < out.size(); ++i) {
      EXPECT_EQ(kernel->specs[i].async, out[i] == "uprobe_sync_async") << out[i];
    }
    return out;
  };
  EXPECT_THAT(async_of(LibpqAsyncMode::Auto), ElementsAre("uprobe_sync", "uprobe_sync_async", "uprobe_sync_async"));
  EXPECT_THAT(async_of(LibpqAsyncMode::On), ElementsAre("uprobe_sync_async", "uprobe_sync_async", "uprobe_sync_async"));
  EXPECT_THAT(async_of(LibpqAsyncMode::Off), ElementsAre("uprobe_sync", "uprobe_sync", "uprobe_sync"));
}

TEST_F(LibpqFamilyTest, SqlIsFingerprintedAndItsLiteralsNeverReachTheSinkOrTheSeries) {
  attach(101, "synchrotron1");
  kernel_->call(101, "SELECT name FROM users WHERE name = 'syt_YWxpY2U_s3cret' AND creation_ts > 1712345678",
                2'000'000);
  kernel_->call(101, "select name\n  from users where name = 'bob' and creation_ts > 7", 1'000'000);
  family_.drain();

  ASSERT_EQ(sink_.queries.size(), 2u);
  const sp::QueryEvent& q = sink_.queries[0];
  EXPECT_EQ(q.worker, worker_labels("synchrotron1"));
  EXPECT_FALSE(q.server_side);
  EXPECT_EQ(q.tgid, 101u);
  EXPECT_EQ(q.conn, 0x5600'0000'1000ull + 101);
  EXPECT_EQ(q.end_ns - q.start_ns, 2'000'000u);
  EXPECT_EQ(q.verb, "SELECT");
  EXPECT_EQ(q.table, "users");
  EXPECT_EQ(q.fingerprint, "select name from users where name = ? and creation_ts > ?");
  EXPECT_THAT(q.fingerprint, Not(HasSubstr("s3cret")));
  EXPECT_THAT(q.fingerprint, Not(HasSubstr("1712345678")));
  EXPECT_NE(q.fingerprint_id, 0u);
  EXPECT_EQ(sink_.queries[1].fingerprint_id, q.fingerprint_id);  // other literals, other layout: one statement
  EXPECT_EQ(q.desc, "");

  const std::string text = sp::test::exposition(family_);
  EXPECT_THAT(text, Not(HasSubstr("s3cret")));
  EXPECT_EQ(query_count("synchrotron1", "SELECT", "users"), "2");
}

TEST_F(LibpqFamilyTest, CommitIsAVerbWithoutATable) {
  attach(101, "synchrotron1");
  kernel_->call(101, "BEGIN ISOLATION LEVEL REPEATABLE READ", 100'000);
  kernel_->call(101, "UPDATE stream_positions SET stream_id = 12 WHERE stream_name = 'events'", 300'000);
  kernel_->call(101, "COMMIT", 200'000);
  family_.poll();

  ASSERT_EQ(sink_.queries.size(), 3u);
  EXPECT_EQ(sink_.queries[2].verb, "COMMIT");
  EXPECT_EQ(sink_.queries[2].table, "");
  EXPECT_EQ(query_count("synchrotron1", "COMMIT", ""), "1");
  EXPECT_EQ(query_count("synchrotron1", "BEGIN", ""), "1");
  EXPECT_EQ(query_count("synchrotron1", "UPDATE", "stream_positions"), "1");
}

// PQexecPrepared and PQsendQueryPrepared carry a statement name where the others carry SQL: nothing to fingerprint.
TEST_F(LibpqFamilyTest, PreparedStatementRecordsCountAsOther) {
  attach(101, "synchrotron1");
  kernel_->call(101, "SELECT event_id FROM events WHERE room_id = $1", 100'000, SP_PQ_PREPARE);
  kernel_->call(101, "_pg3_0", 400'000, SP_PQ_EXEC_PREPARED);
  kernel_->call(101, "_pg3_0", 400'000, SP_PQ_ASYNC_PREPARED);
  family_.drain();

  ASSERT_EQ(sink_.queries.size(), 3u);
  EXPECT_EQ(sink_.queries[0].verb, "SELECT");  // PQprepare's text is SQL
  EXPECT_EQ(sink_.queries[0].table, "events");
  for (std::size_t i : {1u, 2u}) {
    EXPECT_EQ(sink_.queries[i].verb, "other") << i;
    EXPECT_EQ(sink_.queries[i].table, "") << i;
    EXPECT_EQ(sink_.queries[i].fingerprint, "") << i;
    EXPECT_EQ(sink_.queries[i].fingerprint_id, 0u) << i;
  }
  EXPECT_EQ(query_count("synchrotron1", "other", ""), "2");
  EXPECT_EQ(query_count("synchrotron1", "SELECT", "events"), "1");
}

TEST_F(LibpqFamilyTest, QueriesCarryTheTransactionTheFrameWalkFound) {
  attach(101, "synchrotron1");
  kernel_->call(101, "SELECT 1 FROM events", 3'000'000, SP_PQ_EXEC, SP_PY_DESC_FOUND, "get_events_as_list");
  kernel_->call(101, "SELECT 1 FROM events", 1'000'000, SP_PQ_EXEC, SP_PY_DESC_FOUND, "get_events_as_list");
  kernel_->call(101, "SELECT 1 FROM users", 500'000, SP_PQ_EXEC, SP_PY_DESC_NO_FRAME, "stale bytes");
  kernel_->call(101, "SELECT 1 FROM users", 250'000, SP_PQ_EXEC, SP_PY_DESC_OFF);
  kernel_->call(101, "SELECT 1 FROM users", 250'000, SP_PQ_EXEC, SP_PY_DESC_FOUND, "odd name\x01");
  family_.drain();

  ASSERT_EQ(sink_.queries.size(), 5u);
  EXPECT_EQ(sink_.queries[0].desc, "get_events_as_list");
  EXPECT_EQ(sink_.queries[2].desc, "");  // whatever desc[] holds, nothing was found
  EXPECT_EQ(sink_.queries[3].desc, "");
  EXPECT_EQ(sink_.queries[4].desc, "odd_name_");  // safe for a label

  const sp::DbClientSnapshot snap = family_.snapshot();
  const sp::WorkerLabels w = worker_labels("synchrotron1");
  EXPECT_EQ(snap.desc.at({w, "get_events_as_list"}).count, 2u);
  EXPECT_EQ(snap.desc.at({w, "get_events_as_list"}).sum_ns, 4'000'000u);
  EXPECT_EQ(snap.desc.at({w, ""}).count, 2u);
  EXPECT_EQ(snap.desc.at({w, ""}).sum_ns, 750'000u);
  EXPECT_EQ(snap.desc_walks.at({w, "found"}), 3u);
  EXPECT_EQ(snap.desc_walks.at({w, "no_frame"}), 1u);
  EXPECT_EQ(snap.desc_walks.at({w, "off"}), 1u);

  EXPECT_EQ(desc_sample(kDescQueries, "synchrotron1", "desc", "get_events_as_list"), "2");
  EXPECT_EQ(desc_sample(kDescQueries, "synchrotron1", "desc", "unattributed"), "2");
  EXPECT_EQ(desc_sample("synapse_profiler_db_desc_lookups_total", "synchrotron1", "result", "found"), "3");
}

TEST_F(LibpqFamilyTest, LostRecordsCountAsUnknownAndOutliveTheirProcess) {
  attach(101, "synchrotron1");
  kernel_->ring_full = true;
  kernel_->misses = 4;
  for (int i = 0; i < 3; ++i) kernel_->call(101, "SELECT 1 FROM events", 1'000'000);
  family_.poll();
  EXPECT_THAT(sink_.queries, IsEmpty());
  EXPECT_EQ(query_count("synchrotron1", "unknown", "unknown"), "3");

  // One more after the last poll; the process then exits and is restarted as 102 before the next scan.
  kernel_->call(101, "SELECT 1 FROM events", 1'000'000);
  discovery_.stop(101);
  discovery_.start(pq_worker(102, "synchrotron1"));
  discovery_.rescan();
  EXPECT_THAT(kernel_->calls, ElementsAre("attach 101", "detach 101", "erase_lost 101", "attach 102"));
  EXPECT_EQ(query_count("synchrotron1", "unknown", "unknown"), "4");

  for (int i = 0; i < 2; ++i) kernel_->call(102, "SELECT 1 FROM events", 1'000'000);
  family_.poll();
  EXPECT_EQ(query_count("synchrotron1", "unknown", "unknown"), "6");
  EXPECT_EQ(desc_sample(kDescQueries, "synchrotron1", "desc", "unknown"), "6");
  EXPECT_EQ(desc_sample("synapse_profiler_db_desc_query_seconds_total", "synchrotron1", "desc", "unknown"), "0.006");
  const sp::agent::FamilyCounts counts = family_.counts();
  EXPECT_EQ(counts.events_lost, 6u);
  EXPECT_EQ(counts.hook_misses, 4u);

  // 102 exits too, and a new process of the worker gets PID 101 again: the first 101's counts are not replaced.
  discovery_.stop(102);
  sp::WorkerInfo reused = pq_worker(101, "synchrotron1");
  reused.key.start_time += 1;
  discovery_.start(reused);
  discovery_.rescan();
  kernel_->call(101, "SELECT 1 FROM events", 1'000'000);
  family_.poll();
  EXPECT_EQ(query_count("synchrotron1", "unknown", "unknown"), "7");
}

TEST_F(LibpqFamilyTest, RecordsOfARemovedWorkerStillInTheRingFindItsLabels) {
  attach(101, "synchrotron1");
  kernel_->call(101, "DELETE FROM device_inbox WHERE user_id = '@alice:example.org'", 1'000'000);
  discovery_.stop(101);
  discovery_.rescan();

  ASSERT_EQ(sink_.queries.size(), 1u);
  EXPECT_EQ(sink_.queries[0].worker, worker_labels("synchrotron1"));
  EXPECT_EQ(sink_.queries[0].table, "device_inbox");
  EXPECT_EQ(query_count("synchrotron1", "DELETE", "device_inbox"), "1");

  // From now on 101 is no worker of ours, like a process we never attached to.
  kernel_->call(101, "SELECT 1 FROM events", 1'000'000);
  kernel_->call(999, "SELECT 1 FROM events", 1'000'000);
  family_.poll();
  EXPECT_EQ(sink_.queries.size(), 1u);
  EXPECT_EQ(query_count("synchrotron1", "SELECT", "events"), "absent");
}

TEST_F(LibpqFamilyTest, ForgettingAWorkerDropsEverySeriesOfIt) {
  attach(101, "synchrotron1");
  attach(201, "federation_sender1");
  kernel_->call(101, "SELECT 1 FROM events", 1'000'000, SP_PQ_EXEC, SP_PY_DESC_FOUND, "get_events");
  kernel_->call(201, "SELECT 1 FROM events", 1'000'000, SP_PQ_EXEC, SP_PY_DESC_FOUND, "get_events");
  kernel_->ring_full = true;
  kernel_->call(101, "SELECT 1 FROM events", 1'000'000);
  discovery_.stop(101);
  discovery_.rescan();
  ASSERT_EQ(query_count("synchrotron1", "unknown", "unknown"), "1");

  family_.forget_worker(worker_labels("synchrotron1"));

  EXPECT_THAT(sp::test::exposition(family_), Not(HasSubstr("synchrotron1")));
  EXPECT_EQ(query_count("federation_sender1", "SELECT", "events"), "1");
  EXPECT_EQ(desc_sample(kDescQueries, "federation_sender1", "desc", "get_events"), "1");
}

}  // namespace
