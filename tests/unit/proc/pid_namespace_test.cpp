// The PID namespace numbers handed to the BPF programs (core/proc/pid_namespace.h): the initial namespace turns the
// translation off, a container's is passed on with its device in the kernel's encoding, and a /proc of another
// namespace is recognised.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <filesystem>
#include <string>

#include "core/proc/pid_namespace.h"

namespace {

TEST(PidNamespace, InitialNamespaceNeedsNoTranslation) {
  const auto f = sp::pid_ns_filter(makedev(0, 4), sp::kInitPidNsIno);
  EXPECT_TRUE(f.initial());
  EXPECT_EQ(f, sp::PidNsFilter{});
}

TEST(PidNamespace, ContainerNamespaceIsPassedWithTheKernelsDeviceEncoding) {
  // nsfs is an anonymous device (major 0); a small minor reads the same in both encodings.
  EXPECT_EQ(sp::pid_ns_filter(makedev(0, 4), 4026532281ULL), (sp::PidNsFilter{4, 4026532281ULL}));
  // Where they differ: the kernel keeps minor in the low 20 bits and major above, userspace interleaves them.
  const dev_t big_minor = makedev(0, 0x1234);
  EXPECT_NE(static_cast<std::uint64_t>(big_minor), 0x1234u);
  EXPECT_EQ(sp::pid_ns_filter(big_minor, 4026532300ULL).dev, 0x1234u);
  EXPECT_EQ(sp::pid_ns_filter(makedev(8, 1), 4026532300ULL).dev, (8u << 20) | 1u);
  EXPECT_FALSE(sp::pid_ns_filter(makedev(0, 4), 4026532300ULL).initial());
}

TEST(PidNamespace, OwnFilterIsThisProcesssNamespace) {
  std::string error;
  auto f = sp::own_pid_ns_filter(error);
  ASSERT_TRUE(f) << error;
  struct stat st {};
  ASSERT_EQ(stat("/proc/self/ns/pid", &st), 0);
  if (st.st_ino == sp::kInitPidNsIno) {
    EXPECT_TRUE(f->initial());
  } else {
    EXPECT_EQ(f->ino, st.st_ino);
    EXPECT_EQ(f->dev, (static_cast<std::uint64_t>(major(st.st_dev)) << 20) | minor(st.st_dev));
  }
}

TEST(PidNamespace, ProcOfAnotherNamespaceIsRecognised) {
  namespace fs = std::filesystem;
  const fs::path dir = fs::temp_directory_path() / ("sp-pidns-test-" + std::to_string(getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir / "own");
  fs::create_directories(dir / "other");
  fs::create_directories(dir / "fixture");
  fs::create_symlink(std::to_string(getpid()), dir / "own" / "self");
  fs::create_symlink(std::to_string(getpid() + 100000), dir / "other" / "self");
  EXPECT_EQ(sp::proc_root_pid_ns_mismatch((dir / "own").string()), "");
  EXPECT_EQ(sp::proc_root_pid_ns_mismatch((dir / "fixture").string()), "") << "a tree without self is taken as it is";
  const std::string msg = sp::proc_root_pid_ns_mismatch((dir / "other").string());
  EXPECT_THAT(msg, ::testing::HasSubstr("another PID namespace"));
  EXPECT_THAT(msg, ::testing::HasSubstr(std::to_string(getpid() + 100000)));
  fs::remove(dir / "other" / "self");
  fs::create_symlink("garbage\n", dir / "other" / "self");
  EXPECT_THAT(sp::proc_root_pid_ns_mismatch((dir / "other").string()), ::testing::HasSubstr("another PID namespace"));
  EXPECT_EQ(sp::proc_root_pid_ns_mismatch("/proc"), "");
  fs::remove_all(dir);
}

}  // namespace
