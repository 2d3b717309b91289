// Sweep plan: shapes, candidates, shards.
#include "tools/tune/plan.hpp"

#include <algorithm>
#include <cstdlib>
#include <set>

#include <fmt/format.h>

#include "codegen/error.hpp"
#include "tools/catalog.hpp"
#include "tuning/database.hpp"
#include "tuning/select.hpp"

namespace mlajit::tune {

TuneShape make_tune_shape(const tools::Shape& shape, int multiprocessors) {
  TuneShape t{shape, shape.spec(), {}};
  const std::vector<int> lens = tools::context_lengths(shape);
  double total = 0;
  int longest = 0;
  for (int l : lens) {
    total += l;
    longest = std::max(longest, l);
  }
  t.decode.batch = shape.batch;
  t.decode.mean_kv_tokens = lens.empty() ? 0 : total / double(lens.size());
  t.decode.max_kv_tokens = longest;
  t.decode.multiprocessors = multiprocessors;
  return t;
}

std::vector<tools::Shape> default_shapes(bool quick) {
  std::vector<tools::Shape> shapes = tools::suite();
  if (quick) return shapes;
  for (const Spec& s : tools::default_catalog()) {
    tools::Shape c;
    c.id = fmt::format("C-h{}-sq{}-ps{}", s.heads, s.s_q, s.page_size);
    if (s.q_dtype != DType::bf16) c.id += fmt::format("-q{}", dtype_name(s.q_dtype));
    if (s.kv_dtype != DType::bf16) c.id += fmt::format("-kv{}", dtype_name(s.kv_dtype));
    c.batch = 64;
    c.s_q = s.s_q;
    c.heads = s.heads;
    c.context = 4096;
    c.q_dtype = s.q_dtype;
    c.kv_dtype = s.kv_dtype;
    c.page_size = s.page_size;
    c.stresses = "default catalogue";
    shapes.push_back(c);
  }
  return shapes;
}

std::vector<TuneShape> distinct_buckets(const std::vector<TuneShape>& shapes, std::vector<std::string>* dropped) {
  std::vector<TuneShape> kept;
  std::set<tuning::Bucket> seen;
  for (const TuneShape& s : shapes) {
    if (seen.insert(tuning::bucket_of(s.spec, s.decode)).second) {
      kept.push_back(s);
    } else if (dropped != nullptr) {
      dropped->push_back(s.shape.id);
    }
  }
  return kept;
}

namespace {

bool valid(const TileConfig& tile, const Spec& spec, const Target& target) {
  try {
    validate(tile, spec, target);
    return true;
  } catch (const Error&) {
    return false;
  }
}

}  // namespace

std::vector<TileConfig> tile_candidates(const Spec& spec, const Target& target, bool quick) {
  std::vector<TileConfig> tiles;
  auto add = [&](const TileConfig& t) {
    if (valid(t, spec, target) && std::find(tiles.begin(), tiles.end(), t) == tiles.end()) tiles.push_back(t);
  };
  const bool wgmma = wgmma_family_supports(spec, target);
  if (wgmma) {
    // The model's tile first, then every rows-per-CTA (the wgmma N: 8, 16, 24, 32) up to the first
    // that covers heads * s_q.
    const TileConfig base = tuning::choose_tile(spec, target, KernelFamily::wgmma);
    add(base);
    const int rows = spec.heads * spec.s_q;
    for (int heads_per_cta : {8, 16, 24, 32}) {
      if (heads_per_cta - 8 >= rows) break;  // only padding rows beyond this
      TileConfig t = base;
      t.heads_per_cta = heads_per_cta;
      add(t);
    }
    if (rows >= 48) {  // the wide tile: 64 rows, 2 consumer warpgroups + a producer warpgroup
      TileConfig t = base;
      t.heads_per_cta = 64;
      for (int tokens : {64, 32}) {  // 2 slots of 64 tokens, 4 of 32 (the next pair loads during the math)
        t.tokens_per_tile = tokens;
        t.stages = wgmma_stages(t);
        add(t);
      }
    }
  }
  const bool mma = mma_family_supports(spec, target);
  if (mma && wgmma && quick) add(tuning::choose_tile(spec, target, KernelFamily::mma));
  if (mma && !(wgmma && quick)) {
    // The model's tile first, then every rows-per-CTA (16 / 32 / 64 = 1, 2, 4 mma M tiles) up to
    // the first that covers heads * s_q, x tokens per tile x stages; validation drops what does
    // not fit shared memory.
    const TileConfig base = tuning::choose_tile(spec, target, KernelFamily::mma);
    add(base);
    const int rows = spec.heads * spec.s_q;
    for (int heads_per_cta : {16, 32, 64}) {
      if (heads_per_cta > 16 && heads_per_cta / 2 >= rows) break;  // only padding rows beyond this
      for (int tokens : {32, 64}) {
        for (int stages : {2, 3, 4}) {
          TileConfig t = base;
          t.heads_per_cta = heads_per_cta;
          t.tokens_per_tile = tokens;
          t.stages = stages;
          add(t);
        }
      }
    }
  }
  if (!mma || !quick) {
    const TileConfig base = tuning::choose_tile(spec, target, KernelFamily::portable);
    add(base);
    for (int tokens : {32, 64}) {
      TileConfig t = base;
      t.tokens_per_tile = tokens;
      add(t);
    }
  }
  return tiles;
}

std::vector<int> split_candidates(const Spec& spec, const Target& target, const TileConfig& tile,
                                  const tuning::DecodeShape& shape, bool quick) {
  tuning::DecodeShape resident = shape;
  resident.ctas_per_sm = decode_ctas_per_sm(spec, tile, target);
  const tuning::ModelParams defaults = tuning::default_params(target);
  std::vector<tuning::SplitScore> scores;
  const int best = tuning::choose_splits(spec, tile, resident, defaults, &scores);
  std::set<int> splits{1, best, std::max(1, best - 1), std::min(int(scores.size()), best + 1)};
  std::vector<tuning::SplitScore> ranked = scores;
  std::stable_sort(ranked.begin(), ranked.end(), [](const auto& a, const auto& b) { return a.score > b.score; });
  for (std::size_t i = 0; i < ranked.size() && i < (quick ? 2u : 3u); ++i) splits.insert(ranked[i].splits);
  splits.insert(tuning::choose_splits(spec, tile, resident, tuning::aiter_params()));
  for (double overhead : quick ? std::vector<double>{32, 84.1} : std::vector<double>{16, 84.1, 192}) {
    for (double floor : {0.0, 1.0}) {
      tuning::ModelParams p = defaults;
      p.split_overhead_tokens = overhead;
      p.tail_wave_floor = floor;
      splits.insert(tuning::choose_splits(spec, tile, resident, p));
    }
  }
  return {splits.begin(), splits.end()};
}

std::vector<Candidate> candidates_for(const TuneShape& shape, const Target& target, bool quick) {
  const TileConfig model = tuning::select(shape.spec, target, shape.decode, nullptr).tile;
  std::vector<Candidate> out{{model, true}};
  for (const TileConfig& kernel : tile_candidates(shape.spec, target, quick)) {
    for (int splits : split_candidates(shape.spec, target, kernel, shape.decode, quick)) {
      TileConfig t = kernel;
      t.num_splits = splits;
      if (!(t == model)) out.push_back({t, false});
    }
  }
  return out;
}

std::vector<std::size_t> shard_indices(std::size_t count, int shard, int shards) {
  std::vector<std::size_t> out;
  for (std::size_t i = std::size_t(std::max(0, shard)); i < count; i += std::size_t(std::max(1, shards))) out.push_back(i);
  return out;
}

std::pair<int, int> parse_shard(const std::string& text) {
  const auto slash = text.find('/');
  char* end = nullptr;
  if (slash != std::string::npos) {
    const long i = std::strtol(text.c_str(), &end, 10);
    if (end == text.c_str() + slash) {
      const long n = std::strtol(text.c_str() + slash + 1, &end, 10);
      if (*end == '\0' && slash > 0 && n >= 1 && n <= 64 && i >= 0 && i < n) return {int(i), int(n)};
    }
  }
  throw_invalid("--shard", "must be i/n with 0 <= i < n <= 64", text);
}

std::vector<int> parse_devices(const std::string& text) {
  std::vector<int> devices;
  std::size_t start = 0;
  while (start <= text.size()) {
    const std::size_t comma = std::min(text.find(',', start), text.size());
    const std::string item = text.substr(start, comma - start);
    char* end = nullptr;
    const long d = std::strtol(item.c_str(), &end, 10);
    if (item.empty() || *end != '\0' || d < 0 || d > 1023 ||
        std::find(devices.begin(), devices.end(), int(d)) != devices.end()) {
      throw_invalid("--devices", "must be distinct device ordinals separated by commas, e.g. 0,1", text);
    }
    devices.push_back(int(d));
    start = comma + 1;
  }
  return devices;
}

std::string progress_line(std::size_t done, std::size_t total, double elapsed_s, const std::string& what) {
  const double eta = done > 0 ? elapsed_s / double(done) * double(total - std::min(done, total)) : 0.0;
  return fmt::format("[{}/{}] {:.0f} s, ETA {}  {}", done, total, elapsed_s,
                     done > 0 ? fmt::format("{:.0f} s", eta) : std::string("?"), what);
}

double simulated_time_us(const Spec& spec, const Target& target, const TileConfig& tile,
                         const tuning::DecodeShape& shape) {
  tuning::ModelParams truth;
  truth.split_overhead_tokens = 40;
  truth.tail_wave_floor = 0.25;
  truth.combine_launch_tokens = 16;
  tuning::DecodeShape resident = shape;
  resident.ctas_per_sm = decode_ctas_per_sm(spec, tile, target);
  const tuning::SplitScore s = tuning::split_score(spec, tile, resident, truth, tile.num_splits);
  const double slots = double(std::max(1, shape.multiprocessors)) * resident.ctas_per_sm;
  const double bytes_per_slot_token = slots * spec.qk_dim() * double(dtype_size(spec.kv_dtype));
  double factor = tile.family == KernelFamily::portable ? 6.0 : 1.0;
  factor *= tile.tokens_per_tile == 64 ? 0.97 : 1.0;
  factor *= 1.0 + 0.02 * std::abs(tile.stages - 3);
  return s.cost * bytes_per_slot_token / 3.0e6 * factor;  // 3 TB/s = 3e6 bytes per microsecond
}

}  // namespace mlajit::tune
