// Splits PostgreSQL's server-side time (statement execution and lock waits of the backends serving a worker) by the
// Synapse transaction (desc) of the client call it served. The probes give no direct link between a backend's
// statement and the libpq call that sent it (the backend's PID lives in libpq's private PGconn), so the link is made
// from what both sides measure on one clock:
//   - a server interval of backend B lies inside the client call that sent it (the call starts before the statement
//     reaches the server and returns after its result left), so the candidates are the worker's client calls that
//     contain it;
//   - a backend serves one connection, and Synapse's pool keeps a connection on one thread: once B's interval has had
//     a single candidate, B is paired with that call's thread, and later ambiguous cases (several threads' calls in
//     flight around the interval) are decided by the pairing.
// An interval with no candidate, or several and no pairing that picks exactly one, is "unmatched": never guessed.
//
// Server intervals are decided `grace_ns` after they ended, so that the client call containing them (which ends
// later, and is drained from another ring buffer) is known by then. Fed and read by one thread.
//
// The same match counts what the server side missed: the postgres family attaches its probes to a backend only once
// it has mapped it to a worker, so a new connection's first statements run unseen. The libpq calls of one connection
// (PGconn) are numbered as they arrive; when a backend's first statement is matched to call k of connection C, the
// calls of C after the last one matched to a statement of any backend (none: C's first call) and before k ran
// before that backend's probes were in place: they are counted as missed statements of the worker.
#pragma once

#include <cstdint>
#include <deque>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "core/model/process_book.h"  // WorkerLabels

namespace sp {

struct DescServerTotals {
  std::uint64_t statements = 0;
  std::uint64_t statement_ns = 0;
  std::uint64_t lock_waits = 0;
  std::uint64_t lock_wait_ns = 0;
  void add(const DescServerTotals& o) {
    statements += o.statements;
    statement_ns += o.statement_ns;
    lock_waits += o.lock_waits;
    lock_wait_ns += o.lock_wait_ns;
  }
};

class DescMatcher {
 public:
  explicit DescMatcher(std::uint64_t grace_ns = 1'000'000'000ULL, std::uint64_t keep_ns = 30'000'000'000ULL)
      : grace_ns_(grace_ns), keep_ns_(keep_ns) {}

  // A libpq call of the worker's thread `tid` on connection `conn` (its PGconn address; 0: unknown); desc "" for
  // calls outside any transaction.
  void add_client(const WorkerLabels& w, std::uint32_t tid, std::uint64_t start_ns, std::uint64_t end_ns,
                  const std::string& desc, std::uint64_t conn = 0);
  // A statement (lock=false) or lock wait (lock=true) of backend `backend`, which serves worker `w`.
  void add_server(const WorkerLabels& w, std::uint32_t backend, std::uint64_t start_ns, std::uint64_t end_ns,
                  bool lock);

  // Decides the server intervals that ended at least grace_ns before `now_ns` and adds them to the totals; forgets
  // client calls older than keep_ns.
  void settle(std::uint64_t now_ns);

  // Per (worker, desc): desc "" = the client call was outside any transaction, "unmatched" = no single client call.
  const std::map<std::pair<WorkerLabels, std::string>, DescServerTotals>& totals() const { return totals_; }
  // Per worker: libpq calls on a connection before its backend's first matched statement, that PostgreSQL ran before
  // the server-side probes were attached to that backend (see the top of this file). Every worker seen has an entry.
  const std::map<WorkerLabels, std::uint64_t>& missed() const { return missed_; }

  // The worker has gone: its pending intervals are decided now, then its calls are dropped (totals stay).
  void forget(const WorkerLabels& w);
  // The worker has been gone for longer than --forget-after: its totals go too.
  void forget_totals(const WorkerLabels& w);

 private:
  struct Call {
    std::uint32_t tid;
    std::uint64_t start_ns, end_ns;
    const std::string* desc;  // interned in Worker::descs
    std::uint64_t conn;       // 0: unknown (not counted for missed statements)
    std::uint64_t seq;        // the call's number among its connection's calls, from 0
    // Indexes over the arrival order that let match() go straight to the few calls that may contain an interval
    // (calls arrive in about end order, so these move little): the latest end of this call and every earlier one,
    // and the earliest start and end of this call and every later one.
    std::uint64_t max_end_so_far, min_start_after, min_end_after;
  };
  struct Interval {
    std::uint32_t backend;
    std::uint64_t start_ns, end_ns;
    bool lock;
  };
  // A connection's calls as numbered so far, and the last one matched to a server statement.
  struct Conn {
    std::uint64_t next_seq = 0;
    std::int64_t last_matched = -1;
    std::uint64_t last_end_ns = 0;
  };
  // A backend whose statements were seen: counted once its first statement is matched.
  struct Backend {
    bool counted = false;
    std::uint64_t unmatched = 0;  // statements seen before the first matched one (no single call contained them)
    std::uint64_t last_end_ns = 0;
  };
  struct Worker {
    std::deque<Call> calls;          // arrival order
    std::deque<Interval> pending;    // arrival order
    std::map<std::uint32_t, std::uint32_t> thread_of_backend;
    std::map<std::uint64_t, Conn> conns;       // by PGconn address
    std::map<std::uint32_t, Backend> backends;  // by backend PID
    std::set<std::string, std::less<>> descs;  // every desc its calls named (a few dozen in Synapse)
    std::map<std::string, DescServerTotals*, std::less<>> totals_of;  // desc -> its entry in totals_
  };
  const Call* match(Worker& w, const Interval& iv);
  // Counts what the server side missed before `iv` (a statement matched to `c`, or to no single call).
  void count_missed(const WorkerLabels& labels, Worker& w, const Interval& iv, const Call* c);
  void decide(const WorkerLabels& labels, Worker& w, const Interval& iv);

  std::uint64_t grace_ns_, keep_ns_;
  std::map<WorkerLabels, Worker> workers_;
  std::map<std::pair<WorkerLabels, std::string>, DescServerTotals> totals_;
  std::map<WorkerLabels, std::uint64_t> missed_;
};

}  // namespace sp
