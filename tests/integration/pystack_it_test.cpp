// The BPF Python stack walk (bpf/pystack.h) and its symbolization (core/python/py_symbolizer.h) against real
// interpreters: a test-only uprobe on libc's getppid (tests/bpf/pystack_test.bpf.c, attached to the workload's PID
// only) captures the calling thread's Python stack; the workload (tests/workload/pystack_chain.py) records, on the
// same source line, the chain the interpreter itself sees. Every captured frame must name the same function, file
// and line as the workload's own record, in the same order: a worker thread's outer -> Service.middle -> inner (plus
// threading's frames above), and a 200-deep recursion cut at the walk's 128 frames and reported truncated.
// Versions: Debian's python3.11 (executable) and the pyenv builds 3.10-3.13 (shared libpython), each through both
// thread-state routes.
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <memory>
#include <sstream>
#include <string>
#include <tuple>
#include <vector>

#include "../common/require.h"
#include "core/proc/discovery.h"
#include "core/python/desc_planner.h"
#include "core/python/py_stack_plan.h"
#include "core/python/py_symbolizer.h"
#include "harness.h"
#include "pystack_test.skel.h"

namespace {

using Frame = std::tuple<std::string, std::string, int>;  // function, file, line

std::string pyenv_python_for(const std::string& minor) {
  const char* home = std::getenv("HOME");
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator(std::string(home ? home : "") + "/.pyenv/versions", ec)) {
    auto name = e.path().filename().string();
    auto exe = e.path() / "bin" / ("python" + minor);
    if (name.starts_with(minor + ".") && std::filesystem::exists(exe)) return exe;
  }
  return "";
}

// The first mapped file whose name starts with `prefix` (e.g. "libc.so", "libpython3"), empty if none.
std::string mapped(int pid, const std::string& prefix) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/maps");
  std::string line;
  while (std::getline(in, line)) {
    auto slash = line.find('/');
    if (slash == std::string::npos) continue;
    std::string path = line.substr(slash);
    if (std::filesystem::path(path).filename().string().starts_with(prefix)) return path;
  }
  return "";
}

std::vector<std::vector<Frame>> read_truth(const std::string& path) {
  std::vector<std::vector<Frame>> out;
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream f(line);
    std::string idx, fn, file, ln;
    std::getline(f, idx, '\t');
    std::getline(f, fn, '\t');
    std::getline(f, file, '\t');
    std::getline(f, ln, '\t');
    const std::size_t i = std::stoul(idx);
    if (out.size() <= i) out.resize(i + 1);
    out[i].emplace_back(fn, file, std::stoi(ln));
  }
  return out;
}

struct SkelDeleter {
  void operator()(pystack_test_bpf* s) const { pystack_test_bpf::destroy(s); }
};

// (interpreter, thread-state route): "tss" as planned (glibc's inline block and CPython's TSS key), "list" with the
// TSS route turned off, so the walk finds the thread state through the interpreter's thread list.
class PyStackIT : public ::testing::TestWithParam<std::tuple<std::string, std::string>> {};

TEST_P(PyStackIT, CapturedStacksNameTheWorkloadsOwnFramesInOrder) {
  if (auto why = sp::test::bpf_unavailable_reason(); !why.empty()) SP_SKIP_UNLESS_BPF_REQUIRED(why);
  const auto& [which, route] = GetParam();
  const std::string python = which == "debian311" ? "/usr/bin/python3.11" : pyenv_python_for(which);
  if (python.empty() || !std::filesystem::exists(python))
    SP_SKIP_UNLESS_BPF_REQUIRED("no CPython " + which + " installed (scripts/setup.sh installs it)");

  const std::string dir = sp::test::make_temp_dir("pystack");
  const std::string gate = dir + "/gate", done = dir + "/done", truth = dir + "/truth", log = dir + "/log";
  sp::test::Process proc({python, std::string(SP_WORKLOAD_DIR) + "/pystack_chain.py", gate, done, truth}, log);
  ASSERT_TRUE(sp::test::wait_for([&] { return sp::test::read_text(log).find("ready") != std::string::npos; },
                                 std::chrono::seconds(30), std::chrono::milliseconds(10)))
      << sp::test::read_text(log);
  const int pid = proc.pid();

  sp::WorkerInfo w;
  w.host_pid = pid;
  w.python_path = mapped(pid, "libpython3");
  if (w.python_path.empty()) w.python_path = std::filesystem::read_symlink("/proc/" + std::to_string(pid) + "/exe");
  sp::DescPlanner planner("/proc");
  std::string why;
  auto plan = planner.plan(w, why);
  ASSERT_TRUE(plan) << why;
  const std::string libc = mapped(pid, "libc.so");
  ASSERT_FALSE(libc.empty());

  std::unique_ptr<pystack_test_bpf, SkelDeleter> skel(pystack_test_bpf::open());
  ASSERT_TRUE(skel);
  skel->rodata->target_tgid = static_cast<__u32>(pid);
  ASSERT_EQ(pystack_test_bpf::load(skel.get()), 0) << "the stack walk must verify";
  const __u32 zero = 0;
  sp_py_stack_proc settings = sp::stack_proc_for(*plan);
  if (route == "list") {
    settings.tls_offset = 0;
  } else {
    ASSERT_NE(settings.tls_offset, 0u) << "the TSS route is planned for glibc 2.36: " << plan->detail;
  }
  ASSERT_EQ(bpf_map__update_elem(skel->maps.ps_proc, &zero, sizeof zero, &settings, sizeof settings, BPF_ANY), 0);
  bpf_uprobe_opts opts{};
  opts.sz = sizeof opts;
  opts.func_name = "getppid";
  bpf_link* link = bpf_program__attach_uprobe_opts(skel->progs.pystack_capture, pid, libc.c_str(), 0, &opts);
  ASSERT_TRUE(link) << "attach uprobe " << libc << ":getppid: " << strerror(errno);
  std::unique_ptr<bpf_link, decltype(&bpf_link__destroy)> link_guard(link, bpf_link__destroy);

  std::ofstream(gate).put('\n');
  ASSERT_TRUE(sp::test::wait_for([&] { return std::filesystem::exists(truth); }, std::chrono::seconds(30),
                                 std::chrono::milliseconds(10)))
      << sp::test::read_text(log);
  const auto want = read_truth(truth);
  ASSERT_EQ(want.size(), 2u);

  __u64 hits = 0;
  ASSERT_EQ(bpf_map__lookup_elem(skel->maps.ps_hits, &zero, sizeof zero, &hits, sizeof hits, 0), 0);
  EXPECT_EQ(hits, 2u) << "one capture per getppid() of the workload";

  sp::LiveProcessMemory memory;
  sp::PySymbolizer symbolizer(memory);
  symbolizer.set_process(pid, sp::code_layout_for(*plan));
  for (__u32 slot = 0; slot < 2; ++slot) {
    sp_py_stack stack{};
    ASSERT_EQ(bpf_map__lookup_elem(skel->maps.ps_stacks, &slot, sizeof slot, &stack, sizeof stack, 0), 0);
    std::vector<Frame> got;
    for (__u32 i = 0; i < stack.depth && i < SP_PY_STACK_MAX; ++i) {
      std::string error;
      auto s = symbolizer.symbolize(pid, stack.code[i], stack.instr[i], error);
      ASSERT_TRUE(s) << "capture " << slot << " frame " << i << ": " << error;
      got.emplace_back(s->function, s->file, s->line);
    }
    const auto& expect = want[slot];
    if (slot == 0) {
      EXPECT_EQ(stack.status, static_cast<__u32>(SP_PY_STACK_OK));
      EXPECT_EQ(got, expect);
      ASSERT_GE(got.size(), 3u);
      EXPECT_EQ(std::get<0>(got[0]), "inner");
      EXPECT_EQ(std::get<0>(got[1]), which == "3.10" ? "middle" : "Service.middle");
      EXPECT_EQ(std::get<0>(got[2]), "outer");
    } else {
      ASSERT_GT(expect.size(), static_cast<std::size_t>(SP_PY_STACK_MAX));
      EXPECT_EQ(stack.status, static_cast<__u32>(SP_PY_STACK_TRUNCATED));
      EXPECT_EQ(got, std::vector<Frame>(expect.begin(), expect.begin() + SP_PY_STACK_MAX));
    }
  }
  // Cached: a second pass over the same code objects reads only their headers.
  const auto misses = symbolizer.stats().misses;
  EXPECT_LE(misses, 10u) << "one read per distinct code object";
  std::cout << "  " << python << " (" << route << "): " << plan->detail << "; " << misses << " code objects named, "
            << symbolizer.stats().hits << " cache hits\n";

  std::ofstream(done).put('\n');
  auto status = proc.wait(std::chrono::seconds(30));
  ASSERT_TRUE(status);
  EXPECT_EQ(*status, 0) << sp::test::read_text(log);
  std::filesystem::remove_all(dir);
}

INSTANTIATE_TEST_SUITE_P(Versions, PyStackIT,
                         ::testing::Combine(::testing::Values("debian311", "3.10", "3.11", "3.12", "3.13"),
                                            ::testing::Values("tss", "list")),
                         [](const auto& info) {
                           const std::string& v = std::get<0>(info.param);
                           const std::string name = v == "debian311" ? std::string("Debian311")
                                                                     : "Py" + v.substr(0, 1) + v.substr(2);
                           return name + (std::get<1>(info.param) == "tss" ? "Tss" : "ThreadList");
                         });

}  // namespace
