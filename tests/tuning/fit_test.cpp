// Fitting the split model's parameters to a database's sweeps.
#include <gtest/gtest.h>

#include "tests/tuning/tuning_test_support.hpp"
#include "tuning/fit.hpp"

namespace mlajit::tuning {
namespace {

using test_support::entry;
using test_support::measured_database;
using test_support::mma;

// sm_90 (an H100 without its arch-specific features): the mma family is the model's choice there
// (sm_90a adds wgmma, choose_test.cpp).
const Target k_h100 = parse_target("sm_90");

TEST(ModelSlowdown, HandWorked) {
  // S5 (4 x 32768 tokens, 16 heads): the sweep timed 1, 32 and 64 splits of the 32-token tile.
  // The default model picks 64 (ChooseSplits.SmallBatchLongContextSplitsToFillTheMachine): 100 us,
  // the best -> slowdown 1. Capped at 40 splits it picks 32 (132 CTAs: one wave of one CTA per SM
  // beats the 1.x waves of 33..40) -> 120 us -> 1.2. Capped at 10 it picks 10, timed as its
  // nearest measured count, 1 (|10 - 1| = 9 < 22) -> 1000 us -> 10.
  Entry e = entry(16, 1, 4, 32768, mma(32, 2, 64), 100);
  e.measurements = {{mma(32, 2, 1), 1000}, {mma(32, 2, 32), 120}, {mma(32, 2, 64), 100}};
  const Database db = measured_database({e});
  int samples = 0;
  EXPECT_DOUBLE_EQ(model_slowdown(db, k_h100, ModelParams{}, &samples), 1.0);
  EXPECT_EQ(samples, 1);
  ModelParams capped;
  capped.max_splits = 40;
  EXPECT_DOUBLE_EQ(model_slowdown(db, k_h100, capped), 1.2);
  capped.max_splits = 10;
  EXPECT_DOUBLE_EQ(model_slowdown(db, k_h100, capped), 10.0);
}

TEST(ModelSlowdown, KernelShapesWithOneSplitCountAreNoSample) {
  Entry e = entry(16, 1, 4, 32768, mma(32, 2, 64), 100);
  e.measurements = {{mma(32, 2, 64), 100}, {mma(64, 2, 33), 99}};
  int samples = -1;
  EXPECT_DOUBLE_EQ(model_slowdown(measured_database({e}), k_h100, ModelParams{}, &samples), 1.0);
  EXPECT_EQ(samples, 0);
}

TEST(FitModel, RecoversParametersThatExplainTheSweeps) {
  // Sweeps "measured" on a device whose truth is the model with overhead 16, tail floor 0 and
  // combine launch 64 (a grid point): every split count 1..64 of the 32-token tile, 30 shapes.
  ModelParams truth;
  truth.split_overhead_tokens = 16;
  truth.tail_wave_floor = 0.0;
  truth.combine_launch_tokens = 64;
  std::vector<Entry> entries;
  for (int batch : {1, 2, 4, 8, 16, 32, 64, 128, 256, 512}) {  // one bucket each
    for (double context : {1024.0, 4096.0, 32768.0}) {
      Entry e = entry(16, 1, batch, context, mma(32, 2, 1), 1);
      e.measurements.clear();
      DecodeShape shape = e.shape;
      shape.ctas_per_sm = 2;
      for (int splits = 1; splits <= 64; ++splits) {
        e.measurements.push_back({mma(32, 2, splits), split_score(e.spec, mma(32, 2, splits), shape, truth, splits).cost});
      }
      entries.push_back(e);
    }
  }
  const Database db = measured_database(entries);
  const FitResult fit = fit_model(db, k_h100, ModelParams{});
  EXPECT_EQ(fit.samples, 30);
  EXPECT_GT(fit.start_slowdown, 1.02);  // the defaults pick other counts for 15 of the 30 shapes
  EXPECT_NEAR(fit.fitted_slowdown, 1.0, 1e-12);
  EXPECT_NEAR(model_slowdown(db, k_h100, fit.params), 1.0, 1e-12);
  EXPECT_EQ(fit.params.combine_traffic_factor, 1.0);  // not searched
}

TEST(FitModel, KeepsTheStartWhenNothingIsBetter) {
  Entry e = entry(16, 1, 4, 32768, mma(32, 2, 64), 100);
  e.measurements = {{mma(32, 2, 1), 1000}, {mma(32, 2, 64), 100}};
  const FitResult fit = fit_model(measured_database({e}), k_h100, ModelParams{});
  EXPECT_EQ(fit.params, ModelParams{});
  EXPECT_DOUBLE_EQ(fit.fitted_slowdown, 1.0);
}

}  // namespace
}  // namespace mlajit::tuning
