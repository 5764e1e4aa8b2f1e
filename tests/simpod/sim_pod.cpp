// sp_simpod: a Kubernetes pod simulated with namespaces, for the deployment tests (no container runtime needed).
//
//   sp_simpod pod  --rootfs DIR --state DIR [--bind SRC:DST]... [--bind-ro SRC:DST]...
//        The pod's "pause container": a new PID, mount and network namespace. Its PID 1 mounts an overlayfs over the
//        read-only root filesystem DIR (upper and work directories under the state DIR), the binds, a small /dev and
//        a fresh /proc, pivots into it, brings up loopback (the only interface) and then only reaps children until
//        SIGTERM. Writes the host PID of its PID 1 to STATE/pause.pid once all of that is done.
//   sp_simpod join --target PID [--pid] [--net] [--mnt] [--new-mnt-proc] [--cgroup DIR] [--chdir DIR]
//                  [--env K=V]... -- CMD ARGS...
//        A "container" of that pod: joins the namespaces of PID (the pause process) that are asked for, and runs CMD
//        in them. --mnt enters the pod's root filesystem; --new-mnt-proc instead gives CMD a mount namespace of its
//        own (a copy of the caller's) with a /proc of the pod's PID namespace, as a container runtime does for a
//        sidecar with its own image. --cgroup moves CMD into that cgroup (v2) before it starts. --env replaces the
//        environment (PATH is always set).
//
// Cleanup is by construction: every mount is made inside the pod's (or the sidecar's) private mount namespace and
// disappears with it; each process here dies with its parent (PR_SET_PDEATHSIG), and when the pod's PID 1 dies the
// kernel kills everything in its PID namespace. Only the state directory and any cgroup remain for the caller.
#include <fcntl.h>
#include <net/if.h>
#include <sched.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>
#include <utility>
#include <vector>

namespace {

[[noreturn]] void die(const std::string& what) {
  std::fprintf(stderr, "sp_simpod: %s: %s\n", what.c_str(), std::strerror(errno));
  std::_Exit(125);
}

[[noreturn]] void usage(const std::string& why) {
  std::fprintf(stderr, "sp_simpod: %s (see the comment at the top of tests/simpod/sim_pod.cpp)\n", why.c_str());
  std::_Exit(2);
}

void mkdirs(const std::string& path) {
  std::string cur;
  std::size_t pos = 0;
  while (pos != std::string::npos) {
    pos = path.find('/', pos + 1);
    cur = path.substr(0, pos);
    if (!cur.empty() && mkdir(cur.c_str(), 0755) != 0 && errno != EEXIST) die("mkdir " + cur);
  }
}

void do_mount(const std::string& src, const std::string& dst, const char* type, unsigned long flags,
              const std::string& data = {}) {
  if (mount(src.c_str(), dst.c_str(), type, flags, data.empty() ? nullptr : data.c_str()) != 0) {
    die("mount " + src + " on " + dst);
  }
}

volatile sig_atomic_t g_child = 0;
volatile sig_atomic_t g_stop = 0;

void forward(int sig) {
  g_stop = 1;
  if (g_child > 0) kill(g_child, sig);
}

void on_stop_signals(void (*handler)(int)) {
  struct sigaction sa {};
  sa.sa_handler = handler;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGTERM, &sa, nullptr);
  sigaction(SIGINT, &sa, nullptr);
}

// Waits for `child`, reaping any other child on the way; its exit status in the shell's convention.
int wait_for_child(pid_t child) {
  for (;;) {
    int st = 0;
    pid_t p = waitpid(-1, &st, 0);
    if (p < 0) {
      if (errno == EINTR) continue;
      return 125;
    }
    if (p == child) return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
  }
}

void loopback_up() {
  int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (s < 0) die("socket");
  struct ifreq ifr {};
  std::strncpy(ifr.ifr_name, "lo", IFNAMSIZ - 1);
  if (ioctl(s, SIOCGIFFLAGS, &ifr) != 0) die("SIOCGIFFLAGS lo");
  ifr.ifr_flags = static_cast<short>(ifr.ifr_flags | IFF_UP);
  if (ioctl(s, SIOCSIFFLAGS, &ifr) != 0) die("SIOCSIFFLAGS lo");
  close(s);
}

struct Bind {
  std::string src, dst;
  bool ro = false;
};

// The pod's PID 1 after the fork: builds the root, pivots, then reaps until told to stop.
[[noreturn]] void pause_container(const std::string& rootfs, const std::string& state, const std::vector<Bind>& binds) {
  // A mount namespace of PID 1's own (pivot_root moves every process of the namespace, the launcher included).
  if (unshare(CLONE_NEWNS) != 0) die("unshare mount namespace");
  do_mount("none", "/", nullptr, MS_REC | MS_PRIVATE);  // nothing done here may propagate to the host
  const std::string merged = state + "/merged";
  for (const char* d : {"/upper", "/work", "/merged"}) mkdirs(state + d);
  do_mount("overlay", merged, "overlay", 0,
           "lowerdir=" + rootfs + ",upperdir=" + state + "/upper,workdir=" + state + "/work");
  for (const auto& b : binds) {
    mkdirs(merged + b.dst);
    do_mount(b.src, merged + b.dst, nullptr, MS_BIND | MS_REC);
    if (b.ro) do_mount("none", merged + b.dst, nullptr, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_REC);
  }
  // A /dev of its own with the few device nodes a program expects (bound from the host's, as runtimes do).
  mkdirs(merged + "/dev");
  do_mount("tmpfs", merged + "/dev", "tmpfs", MS_NOSUID, "mode=755,size=1m");
  for (const char* node : {"null", "zero", "random", "urandom"}) {
    const std::string target = merged + "/dev/" + node;
    int fd = open(target.c_str(), O_CREAT | O_WRONLY | O_CLOEXEC, 0666);
    if (fd < 0) die("create " + target);
    close(fd);
    do_mount(std::string("/dev/") + node, target, nullptr, MS_BIND);
  }
  mkdirs(merged + "/dev/shm");
  do_mount("tmpfs", merged + "/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777,size=16m");
  for (const char* d : {"/proc", "/tmp", "/.oldroot"}) mkdirs(merged + d);
  chmod((merged + "/tmp").c_str(), 01777);
  if (chdir(merged.c_str()) != 0) die("chdir " + merged);
  if (syscall(SYS_pivot_root, ".", ".oldroot") != 0) die("pivot_root " + merged);
  if (chdir("/") != 0) die("chdir /");
  if (umount2("/.oldroot", MNT_DETACH) != 0) die("umount /.oldroot");
  rmdir("/.oldroot");
  do_mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC);
  loopback_up();
  on_stop_signals([](int) { g_stop = 1; });
  // The state directory is no longer reachable from here: the outer process writes the PID file.
  if (write(3, "1", 1) != 1) die("report ready");
  close(3);
  while (!g_stop) {
    int st = 0;
    if (waitpid(-1, &st, 0) < 0 && errno == ECHILD) pause();
  }
  std::_Exit(0);
}

int cmd_pod(int argc, char** argv) {
  std::string rootfs, state;
  std::vector<Bind> binds;
  for (int i = 2; i < argc; ++i) {
    std::string a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) usage(a + " needs a value");
      return argv[++i];
    };
    if (a == "--rootfs") {
      rootfs = value();
    } else if (a == "--state") {
      state = value();
    } else if (a == "--bind" || a == "--bind-ro") {
      std::string v = value();
      auto colon = v.find(':');
      if (colon == std::string::npos || v[colon + 1] != '/') usage(a + " wants SRC:/DST");
      binds.push_back({v.substr(0, colon), v.substr(colon + 1), a == "--bind-ro"});
    } else {
      usage("unknown pod option " + a);
    }
  }
  if (rootfs.empty() || state.empty()) usage("pod needs --rootfs and --state");
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  int ready[2];
  if (pipe2(ready, O_CLOEXEC) != 0) die("pipe");
  if (unshare(CLONE_NEWPID | CLONE_NEWNET | CLONE_NEWUTS | CLONE_NEWIPC) != 0) die("unshare");
  pid_t pause_pid = fork();
  if (pause_pid < 0) die("fork");
  if (pause_pid == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    close(ready[0]);
    if (dup2(ready[1], 3) < 0) die("dup2");
    pause_container(rootfs, state, binds);
  }
  close(ready[1]);
  g_child = pause_pid;
  on_stop_signals(forward);
  char c = 0;
  if (read(ready[0], &c, 1) == 1) {
    std::ofstream(state + "/pause.pid.tmp") << pause_pid << "\n";
    std::rename((state + "/pause.pid.tmp").c_str(), (state + "/pause.pid").c_str());
  }
  close(ready[0]);
  return wait_for_child(pause_pid);
}

int cmd_join(int argc, char** argv) {
  std::string target, cgroup, chdir_to;
  bool pid_ns = false, net_ns = false, mnt_ns = false, new_mnt = false;
  std::vector<std::string> env;
  bool env_given = false;
  int i = 2;
  for (; i < argc; ++i) {
    std::string a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) usage(a + " needs a value");
      return argv[++i];
    };
    if (a == "--") {
      ++i;
      break;
    }
    if (a == "--target") {
      target = value();
    } else if (a == "--pid") {
      pid_ns = true;
    } else if (a == "--net") {
      net_ns = true;
    } else if (a == "--mnt") {
      mnt_ns = true;
    } else if (a == "--new-mnt-proc") {
      new_mnt = true;
    } else if (a == "--cgroup") {
      cgroup = value();
    } else if (a == "--chdir") {
      chdir_to = value();
    } else if (a == "--env") {
      env.push_back(value());
      env_given = true;
    } else {
      usage("unknown join option " + a);
    }
  }
  if (target.empty() || i >= argc) usage("join needs --target PID and -- CMD");
  if (mnt_ns && new_mnt) usage("--mnt and --new-mnt-proc exclude each other");
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  // Open every namespace first: once in the pod's mount namespace, the host's /proc/PID paths are gone.
  std::vector<std::pair<int, int>> fds;
  auto open_ns = [&](const char* name, int type) {
    const std::string p = "/proc/" + target + "/ns/" + name;
    int fd = open(p.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) die("open " + p);
    fds.emplace_back(fd, type);
  };
  if (pid_ns) open_ns("pid", CLONE_NEWPID);
  if (net_ns) open_ns("net", CLONE_NEWNET);
  if (mnt_ns) open_ns("mnt", CLONE_NEWNS);
  // Likewise the cgroup: the pod's root has no /sys.
  int cgroup_fd = -1;
  if (!cgroup.empty()) {
    const std::string procs = cgroup + "/cgroup.procs";
    cgroup_fd = open(procs.c_str(), O_WRONLY | O_CLOEXEC);
    if (cgroup_fd < 0) die("open " + procs);
  }
  for (auto [fd, type] : fds) {
    if (setns(fd, type) != 0) die("setns into " + target);
    close(fd);
  }
  if (new_mnt) {
    if (unshare(CLONE_NEWNS) != 0) die("unshare mount namespace");
    do_mount("none", "/", nullptr, MS_REC | MS_PRIVATE);
  }
  pid_t child = fork();  // the PID namespace applies to children only
  if (child < 0) die("fork");
  if (child == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (new_mnt) do_mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC);
    if (cgroup_fd >= 0 && write(cgroup_fd, "0\n", 2) != 2) die("move into cgroup " + cgroup);
    if (!chdir_to.empty() && chdir(chdir_to.c_str()) != 0) die("chdir " + chdir_to);
    std::vector<char*> args;
    for (int k = i; k < argc; ++k) args.push_back(argv[k]);
    args.push_back(nullptr);
    if (env_given) {
      env.push_back("PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin");
      std::vector<char*> envp;
      for (auto& e : env) envp.push_back(e.data());
      envp.push_back(nullptr);
      execve(args[0], args.data(), envp.data());
    } else {
      execvp(args[0], args.data());
    }
    die(std::string("exec ") + args[0]);
  }
  if (cgroup_fd >= 0) close(cgroup_fd);
  g_child = child;
  on_stop_signals(forward);
  return wait_for_child(child);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) usage("no command");
  std::string cmd = argv[1];
  if (cmd == "pod") return cmd_pod(argc, argv);
  if (cmd == "join") return cmd_join(argc, argv);
  usage("unknown command " + cmd);
}
