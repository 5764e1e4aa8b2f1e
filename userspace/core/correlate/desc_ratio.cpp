#include "core/correlate/desc_ratio.h"

namespace sp {

std::map<std::string, double> transaction_seconds_by_desc(const std::vector<prom::Family>& families) {
  std::map<std::string, double> out;
  for (const auto& f : families) {
    for (const auto& s : f.samples) {
      if (s.name != "synapse_storage_transaction_time_sum_total") continue;
      for (const auto& [k, v] : s.labels) {
        if (k == "desc") out[v] += s.value;
      }
    }
  }
  return out;
}

void DescLibpqRatio::add_query(const WorkerLabels& labels, const std::string& desc, std::uint64_t end_ns,
                               std::uint64_t duration_ns) {
  Worker& w = workers_[labels];
  auto running = w.running.find(desc);
  if (running == w.running.end()) running = w.running.emplace(desc, 0).first;
  running->second += duration_ns;
  w.recent.push_back({end_ns, &running->first, duration_ns});
  // Bounded memory under a flood: the oldest entries only matter for scrapes older than the newest events.
  if (w.recent.size() > max_recent_) w.recent.pop_front();
}

void DescLibpqRatio::tick(std::uint64_t now_ns) {
  now_ns_ = std::max(now_ns_, now_ns);
  const std::uint64_t horizon = now_ns_ > history_ns_ ? now_ns_ - history_ns_ : 0;
  for (auto& [labels, w] : workers_) {
    while (!w.recent.empty() && w.recent.front().end_ns < horizon) w.recent.pop_front();
    while (!w.pending.empty() && w.pending.front().at_ns <= now_ns_) {
      Point p = std::move(w.pending.front());
      w.pending.pop_front();
      settle(w, std::move(p));
    }
  }
}

void DescLibpqRatio::add_scrape(const WorkerLabels& labels, std::uint64_t at_ns,
                                std::map<std::string, double> synapse_seconds) {
  Worker& w = workers_[labels];
  if (!w.points.empty() && at_ns <= w.points.back().at_ns) return;
  Point p;
  p.at_ns = at_ns;
  p.synapse = std::move(synapse_seconds);
  if (at_ns > now_ns_) {
    w.pending.push_back(std::move(p));
    return;
  }
  settle(w, std::move(p));
}

void DescLibpqRatio::settle(Worker& w, Point p) {
  p.probes.clear();
  for (const auto& [desc, ns] : w.running) p.probes.emplace_hint(p.probes.end(), desc, ns);
  for (const Recent& r : w.recent) {
    if (r.end_ns > p.at_ns) p.probes[*r.desc] -= r.ns;
  }
  w.points.push_back(std::move(p));
  const std::uint64_t newest = w.points.back().at_ns;
  while (w.points.size() > 2 && w.points[1].at_ns + window_ns_ <= newest) w.points.pop_front();
}

std::map<std::pair<WorkerLabels, std::string>, double> DescLibpqRatio::snapshot() const {
  std::map<std::pair<WorkerLabels, std::string>, double> out;
  for (const auto& [labels, w] : workers_) {
    if (w.points.size() < 2) continue;
    const Point& last = w.points.back();
    for (const auto& [desc, synapse_now] : last.synapse) {
      // The oldest point that already knew this desc, with no counter reset since (a restarted worker starts over).
      const Point* first = nullptr;
      for (std::size_t i = w.points.size() - 1; i-- > 0;) {
        auto it = w.points[i].synapse.find(desc);
        if (it == w.points[i].synapse.end()) break;
        auto next = w.points[i + 1].synapse.find(desc);
        if (next == w.points[i + 1].synapse.end() || next->second < it->second) break;
        first = &w.points[i];
      }
      if (!first) continue;
      const double synapse = synapse_now - first->synapse.at(desc);
      if (synapse <= 0) continue;
      // The name passed explicitly: clang 14 (the fuzz build) cannot capture a structured binding.
      auto probe_at = [&](const Point& p, const std::string& name) {
        auto it = p.probes.find(name);
        return it == p.probes.end() ? 0.0 : static_cast<double>(it->second) / 1e9;
      };
      out[{labels, desc}] = (probe_at(last, desc) - probe_at(*first, desc)) / synapse;
    }
  }
  return out;
}

}  // namespace sp
