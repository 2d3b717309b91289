// MLAJIT_COMPILE_OPTIONS: extra compiler options reach both backends' option lists (and so the
// kernel key, which records compile_options()); unset, the lists are the defaults.
#include <gtest/gtest.h>

#include <cstdlib>
#include <string>
#include <tuple>
#include <vector>

#include "codegen/target.hpp"
#include "runtime/backend.hpp"
#include "tests/runtime/scoped_env.hpp"

namespace mlajit {
namespace {

TEST(CompileOptions, ExtraOptionsFollowTheDefaultsOnBothBackends) {
  ::unsetenv("MLAJIT_COMPILE_OPTIONS");
  const Target cuda = parse_target("sm_90a");
  const Target hip = parse_target("gfx90a");
  const std::vector<std::string> cuda_default = runtime::backend(Backend::cuda).compile_options(cuda);
  const std::vector<std::string> hip_default = runtime::backend(Backend::hip).compile_options(hip);
  EXPECT_TRUE(runtime::extra_compile_options().empty());
  {
    ScopedEnv env("MLAJIT_COMPILE_OPTIONS", "  -DMLJ_TRACE=1   -lineinfo ");
    EXPECT_EQ(runtime::extra_compile_options(), (std::vector<std::string>{"-DMLJ_TRACE=1", "-lineinfo"}));
    for (const auto& [kind, target, defaults] :
         {std::tuple{Backend::cuda, cuda, cuda_default}, std::tuple{Backend::hip, hip, hip_default}}) {
      std::vector<std::string> want = defaults;
      want.push_back("-DMLJ_TRACE=1");
      want.push_back("-lineinfo");
      EXPECT_EQ(runtime::backend(kind).compile_options(target), want) << target.arch;
    }
  }
  EXPECT_EQ(runtime::backend(Backend::cuda).compile_options(cuda), cuda_default);
}

}  // namespace
}  // namespace mlajit
