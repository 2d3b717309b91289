#include "reference/persistent_schedule.hpp"

#include <algorithm>

namespace mlajit::reference {

int request_kv_len(const std::vector<int>& kv_indptr, const std::vector<int>& kv_last_page_lens, int page_size, int b) {
  const int pages = kv_indptr[b + 1] - kv_indptr[b];
  return pages > 0 ? (pages - 1) * page_size + kv_last_page_lens[b] : 0;
}

PersistentSchedule persistent_schedule(const ScheduleShape& shape, const std::vector<int>& qo_indptr,
                                       const std::vector<int>& kv_indptr, const std::vector<int>& kv_last_page_lens) {
  const PersistentLayout layout = persistent_layout(shape);
  const int groups = layout.groups;
  struct Tile {
    int request, group, kv_len, blocks;
    bool valid;
  };
  std::vector<Tile> tiles;
  PersistentSchedule out;
  for (int b = 0; b < shape.batch; ++b) {
    const int q_count = std::clamp(qo_indptr[b + 1] - qo_indptr[b], 0, shape.s_q);
    const int kv_len = request_kv_len(kv_indptr, kv_last_page_lens, shape.page_size, b);
    for (int g = 0; g < groups; ++g) {
      const bool valid = g * shape.rows_per_item < q_count * shape.heads;
      const int blocks = (kv_len + shape.kv_block - 1) / shape.kv_block;
      tiles.push_back({b, g, kv_len, blocks, valid});
      if (valid) out.total_cost += blocks + shape.overhead;
    }
  }
  // Worker w's share of the cost line is [start(w), start(w + 1)): floor(w * total / workers), or
  // one block each when there are fewer blocks than workers.
  const long total = out.total_cost;
  // Tiles of one cost, at most one a worker: as many workers as keep every cut on a tile's
  // boundary or an equal split of every tile, when that idles at most 1/16 of them.
  int valid = 0, largest = 0;
  for (const Tile& tile : tiles) {
    if (!tile.valid) continue;
    ++valid;
    largest = std::max(largest, tile.blocks + shape.overhead);
  }
  int workers = shape.workers;
  if (valid >= 1 && valid <= workers && long(valid) * largest == total && (workers % valid) * 16 <= workers) {
    workers -= workers % valid;
  }
  auto start = [&](long worker) { return total >= workers ? worker * total / workers : std::min(worker, total); };

  // Worker `w` has filled the cost line up to `pos`.
  int w = 0;
  long pos = 0;
  auto advance_to = [&](int worker) { w = std::max(w, worker); };
  auto owner = [&](long x) {  // the worker whose share holds x
    if (x >= total) return total >= workers ? workers - 1 : int(std::min<long>(x, workers - 1));  // past the line
    int k = 0;
    while (start(k + 1) <= x) ++k;
    return k;
  };
  for (int t = 0; t < int(tiles.size()); ++t) {
    const Tile& tile = tiles[t];
    out.reduce_indptr.push_back(int(out.reduce_partial_map.size()));
    if (!tile.valid) continue;
    std::vector<std::array<int, 3>> pieces;  // worker, first block, end block
    if (tile.blocks == 0) {
      advance_to(owner(pos));
      pieces.push_back({w, 0, 0});
    } else {
      int done = 0;
      while (done < tile.blocks) {
        advance_to(owner(pos + done));
        const long room = w + 1 < workers ? start(w + 1) - (pos + done) : long(tile.blocks - done);
        const int take = int(std::min<long>(room, tile.blocks - done));
        pieces.push_back({w, done, done + take});
        done += take;
      }
    }
    const bool split = pieces.size() > 1;
    if (split) out.reduce_tiles.push_back(t);
    for (int j = 0; j < int(pieces.size()); ++j) {
      const int slot = split ? int(out.reduce_partial_map.size()) : -1;
      if (split) out.reduce_partial_map.push_back(slot);
      out.items.push_back({tile.request, tile.group, std::min(pieces[j][1] * shape.kv_block, tile.kv_len),
                           std::min(pieces[j][2] * shape.kv_block, tile.kv_len), slot, pieces[j][0], t, j});
    }
    pos += tile.blocks + shape.overhead;
  }
  out.work_indptr.assign(shape.workers + 1, 0);  // counts per worker, then their prefix sums
  for (const auto& item : out.items) ++out.work_indptr[item[5] + 1];
  for (int k = 0; k < shape.workers; ++k) out.work_indptr[k + 1] += out.work_indptr[k];
  out.worker_heads.assign(shape.workers, {});
  for (int k = 0; k < shape.workers; ++k) {
    auto& head = out.worker_heads[k];
    head[0] = out.work_indptr[k];
    head[1] = out.work_indptr[k + 1];
    if (head[0] == head[1]) continue;
    const auto& first = out.items[head[0]];
    const int b = first[0];
    head[2] = qo_indptr[b];
    head[3] = qo_indptr[b + 1] - qo_indptr[b];
    head[4] = kv_indptr[b];
    head[5] = request_kv_len(kv_indptr, kv_last_page_lens, shape.page_size, b);
    std::copy(first.begin(), first.end(), head.begin() + 8);
  }
  out.reduce_indptr.push_back(int(out.reduce_partial_map.size()));
  return out;
}

}  // namespace mlajit::reference
