// The strict template renderer.
#include <gtest/gtest.h>

#include "codegen/error.hpp"
#include "codegen/render.hpp"

namespace mlajit {
namespace {

TEST(Render, SubstitutesEveryKey) {
  EXPECT_EQ(render("a {{x}} b {{y}} {{x}}", {{"x", "1"}, {"y", "2"}}, "t"), "a 1 b 2 1");
}

TEST(Render, FailsOnUnknownKey) {
  try {
    render("{{x}} {{z}}", {{"x", "1"}}, "stub.in");
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("unknown key 'z'"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("stub.in"), std::string::npos) << e.what();
  }
}

TEST(Render, FailsOnUnusedKey) {
  try {
    render("{{x}}", {{"x", "1"}, {"unused", "2"}}, "t");
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("never uses key 'unused'"), std::string::npos) << e.what();
  }
}

TEST(Render, FailsOnUnterminatedPlaceholder) { EXPECT_THROW(render("{{x", {{"x", "1"}}, "t"), Error); }

}  // namespace
}  // namespace mlajit
