#include "core/python/desc_planner.h"

#include <fcntl.h>
#include <fmt/core.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>

#include "core/python/elf_file.h"
#include "core/proc/proc_parse.h"
#include "core/util/safe_file.h"

namespace sp {
namespace {

// Opens a file inside the process's root and stats it; an invalid Fd with `error` set when either fails.
Fd open_and_stat(int root_fd, const std::string& path, struct stat& st, std::string& error) {
  int err = 0;
  Fd fd = open_in_root(root_fd, path, err);
  if (!fd.valid()) {
    error = fmt::format("open {} inside the process's root: {}", path, errno_text(err));
    return fd;
  }
  if (fstat(fd.get(), &st) != 0) {
    error = fmt::format("stat {}: {}", path, errno_text(errno));
    return Fd();
  }
  return fd;
}

// Reads a word of the live process (it is running: its runtime is initialised). nullopt when unreadable.
std::optional<std::uint64_t> peek(int mem_fd, std::uint64_t addr) {
  std::uint64_t v = 0;
  if (pread(mem_fd, &v, sizeof v, static_cast<off_t>(addr)) != static_cast<ssize_t>(sizeof v)) return std::nullopt;
  return v;
}

// The offsets must describe this process: _PyRuntime.interpreters.head is an interpreter whose first thread state
// points back at it (PyThreadState.interp is at 16 in 3.10-3.13) and carries a thread id. A wrong table (an
// unexpected micro release, a patched build) fails here instead of making the probe read nonsense.
bool check_live(const std::string& mem_path, const DescProcessPlan& p, std::string& why_not) {
  int err = 0;
  Fd mem = open_file(mem_path, O_RDONLY, err);
  if (!mem.valid()) {
    why_not = fmt::format("open {}: {}", mem_path, errno_text(err));
    return false;
  }
  auto interp = peek(mem.get(), p.runtime + p.offsets.interp_head);
  if (!interp || !*interp) {
    why_not = fmt::format("_PyRuntime at {:#x} has no interpreter at +{} ({})", p.runtime, p.offsets.interp_head,
                          p.offsets.source);
    return false;
  }
  auto ts = peek(mem.get(), *interp + p.offsets.threads_head);
  if (!ts || !*ts) {
    why_not = fmt::format("the interpreter has no thread state at +{} ({})", p.offsets.threads_head, p.offsets.source);
    return false;
  }
  constexpr std::uint32_t kTstateInterp = 16;
  auto back = peek(mem.get(), *ts + kTstateInterp);
  auto tid = peek(mem.get(), *ts + p.offsets.ts_thread_id);
  if (!back || *back != *interp || !tid || !*tid) {
    why_not = fmt::format("the first thread state does not point back at its interpreter: offsets ({}) do not fit "
                          "this build",
                          p.offsets.source);
    return false;
  }
  return true;
}

}  // namespace

std::optional<DescProcessPlan> DescPlanner::plan(const WorkerInfo& w, std::string& why_not) {
  if (w.python_path.empty()) {
    why_not = "no Python executable or libpython found in its memory maps";
    return std::nullopt;
  }
  const std::string proc = fmt::format("{}/{}", proc_root_, w.host_pid);
  int err = 0;
  Fd root = open_file(proc + "/root", O_PATH | O_DIRECTORY, err);
  if (!root.valid()) {
    why_not = fmt::format("open {}/root: {}", proc, errno_text(err));
    return std::nullopt;
  }
  struct stat st {};
  std::string error;
  Fd python = open_and_stat(root.get(), w.python_path, st, error);
  if (!python.valid()) {
    why_not = error;
    return std::nullopt;
  }
  FileId id{st.st_dev, st.st_ino, st.st_size, static_cast<long>(st.st_mtim.tv_sec)};
  auto it = cache_.find(id);
  if (it == cache_.end()) {
    auto elf = ElfFile::from_fd(python.get(), error);
    if (!elf) {  // not cached: a read error may pass
      why_not = fmt::format("{}: {}", w.python_path, error);
      return std::nullopt;
    }
    Entry e;
    e.plan = plan_desc_attribution(*elf, w.python_path, e.error);
    e.elf_type = elf->type();
    e.segments = elf->segments();
    it = cache_.emplace(id, std::move(e)).first;
  }
  if (!it->second.plan) {
    why_not = it->second.error;
    return std::nullopt;
  }
  const DescAttributionPlan& file_plan = *it->second.plan;

  ReadResult maps_text = read_file(proc + "/maps", 16u << 20);
  if (maps_text.error) {
    why_not = fmt::format("read {}/maps: {}", proc, errno_text(maps_text.error));
    return std::nullopt;
  }
  auto maps = parse_mapped_ranges(maps_text.data);
  auto base = load_base(it->second.elf_type, it->second.segments, maps, w.python_path);
  if (!base) {
    why_not = fmt::format("{} is not mapped where its segments say", w.python_path);
    return std::nullopt;
  }
  DescProcessPlan p;
  p.version = file_plan.version;
  p.offsets = file_plan.offsets;
  p.runtime = *base + file_plan.runtime_vaddr;
  p.str_type = *base + file_plan.str_type_vaddr;
  p.code_type = *base + file_plan.code_type_vaddr;

  std::string libc_detail = "no libc mapped: thread states are found by walking the thread list";
  for (const auto& m : maps) {
    auto name = proc::basename(m.path);
    if (!m.path.starts_with('/') || !name.starts_with("libc.so")) continue;
    struct stat lst {};
    Fd libc_fd = open_and_stat(root.get(), m.path, lst, error);
    if (!libc_fd.valid()) break;  // as before: an unreadable libc leaves the thread-list walk
    FileId libc_id{lst.st_dev, lst.st_ino, lst.st_size, static_cast<long>(lst.st_mtim.tv_sec)};
    auto lit = libc_cache_.find(libc_id);
    if (lit == libc_cache_.end()) {
      LibcEntry e;
      e.detail = libc_detail;
      if (auto libc = ElfFile::from_fd(libc_fd.get(), error)) e.tls_offset = glibc_specific_offset(*libc, e.detail);
      lit = libc_cache_.emplace(libc_id, std::move(e)).first;
    }
    p.tls_offset = lit->second.tls_offset;
    libc_detail = lit->second.detail;
    break;
  }
  p.detail = fmt::format("{}; {}", file_plan.detail, libc_detail);
  if (!check_live(proc + "/mem", p, why_not)) return std::nullopt;
  return p;
}

}  // namespace sp
