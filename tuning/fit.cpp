// Split-model fit by grid search.
#include "tuning/fit.hpp"

#include <algorithm>
#include <cmath>
#include <cstdlib>

namespace mlajit::tuning {

namespace {

// One kernel shape of one entry with its measured split counts, sorted by splits.
struct Sample {
  const Entry* entry;
  TileConfig tile;  // num_splits 0
  DecodeShape shape;
  std::vector<std::pair<int, double>> times;
  double best = 0;
};

std::vector<Sample> samples_of(const Database& db, const Target& target) {
  std::vector<Sample> samples;
  for (const Entry& e : db.entries) {
    std::vector<Sample> mine;
    for (const Measurement& m : e.measurements) {
      TileConfig kernel = m.tile;
      kernel.num_splits = 0;
      auto it = std::find_if(mine.begin(), mine.end(), [&](const Sample& s) { return s.tile == kernel; });
      if (it == mine.end()) {
        DecodeShape shape = e.shape;
        shape.ctas_per_sm = decode_ctas_per_sm(e.spec, kernel, target);
        mine.push_back(Sample{&e, kernel, shape, {}, 0});
        it = mine.end() - 1;
      }
      it->times.emplace_back(m.tile.num_splits, m.time_us);
    }
    for (Sample& s : mine) {
      if (s.times.size() < 2) continue;
      std::sort(s.times.begin(), s.times.end());
      s.best = std::min_element(s.times.begin(), s.times.end(), [](auto& a, auto& b) { return a.second < b.second; })->second;
      samples.push_back(std::move(s));
    }
  }
  return samples;
}

double time_at(const Sample& s, int splits) {
  const auto* nearest = &s.times.front();
  for (const auto& t : s.times) {
    if (std::abs(t.first - splits) < std::abs(nearest->first - splits)) nearest = &t;
  }
  return nearest->second;
}

double slowdown(const std::vector<Sample>& samples, const ModelParams& params) {
  if (samples.empty()) return 1.0;
  double log_sum = 0;
  for (const Sample& s : samples) {
    const int splits = choose_splits(s.entry->spec, s.tile, s.shape, params);
    log_sum += std::log(time_at(s, splits) / s.best);
  }
  return std::exp(log_sum / double(samples.size()));
}

}  // namespace

double model_slowdown(const Database& db, const Target& target, const ModelParams& params, int* samples) {
  const std::vector<Sample> all = samples_of(db, target);
  if (samples != nullptr) *samples = int(all.size());
  return slowdown(all, params);
}

FitResult fit_model(const Database& db, const Target& target, const ModelParams& start) {
  const std::vector<Sample> samples = samples_of(db, target);
  FitResult r;
  r.params = start;
  r.samples = int(samples.size());
  r.start_slowdown = r.fitted_slowdown = slowdown(samples, start);
  for (double overhead : {0.0, 8.0, 16.0, 24.0, 32.0, 48.0, 64.0, 84.1, 112.0, 160.0, 256.0}) {
    for (double floor : {0.0, 0.25, 0.5, 0.75, 1.0}) {
      for (double launch : {0.0, 16.0, 32.0, 64.0, 128.0}) {
        ModelParams p = start;
        p.split_overhead_tokens = overhead;
        p.tail_wave_floor = floor;
        p.combine_launch_tokens = launch;
        const double s = slowdown(samples, p);
        if (s < r.fitted_slowdown - 1e-12) {
          r.fitted_slowdown = s;
          r.params = p;
        }
      }
    }
  }
  return r;
}

}  // namespace mlajit::tuning
