// A gzip file decompressed, for the tests of the recording's trace.json.gz.
#pragma once

#include <gtest/gtest.h>
#include <zlib.h>

#include <string>

namespace sp::test {

// The file's decompressed bytes; fails the calling test unless the gzip stream is complete (closed properly) and
// intact.
inline std::string gunzip(const std::string& path) {
  gzFile f = gzopen(path.c_str(), "rb");
  EXPECT_NE(f, nullptr) << path;
  if (f == nullptr) return "";
  std::string out;
  char buf[65536];
  int n;
  while ((n = gzread(f, buf, sizeof buf)) > 0) out.append(buf, static_cast<std::size_t>(n));
  int err = Z_OK;
  const char* msg = gzerror(f, &err);
  EXPECT_TRUE(n == 0 && err == Z_OK) << path << ": truncated or corrupt gzip stream: " << (msg ? msg : "");
  gzclose(f);
  return out;
}

}  // namespace sp::test
