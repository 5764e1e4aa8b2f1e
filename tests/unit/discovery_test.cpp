#include "core/discovery.h"
#include <gtest/gtest.h>
TEST(Discovery, Placeholder) {}
