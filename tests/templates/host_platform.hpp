// A platform prelude that runs kernel templates on the CPU, for tests: every GPU thread of a CTA is
// a fiber (ucontext) scheduled round-robin on the calling thread, switching only at barriers and
// warp shuffles. Microseconds per switch, so tests keep problems small; results are exact.
#pragma once

#include <ucontext.h>

#include <bit>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <memory>
#include <vector>

#define MLJ_DEVICE inline
#define MLJ_WARP_SIZE 32
// A kernel's fixed-size shared array: one per template instance and host thread, seen by every
// fiber of the CTA being run (CTAs run one after another). Not poisoned between CTAs.
#define MLJ_SHARED static thread_local

namespace mlj_host {

struct Dim3 {
  unsigned x = 0, y = 0, z = 0;
};

// Releases when every live thread of its group has arrived; threads that exit stop counting
// (as on Volta and later, where __syncthreads waits for the threads that have not exited).
struct Barrier {
  int expected = 0;
  int arrived = 0;
  unsigned long generation = 0;
};

struct Fiber {
  ucontext_t context;
  char* stack = nullptr;  // a slice of the launch's stacks
  Dim3 thread;
  bool done = false;
};

inline constexpr std::size_t kFiberStack = 64 * 1024;

// The CTA being run (one at a time, on the calling thread).
struct Cta {
  Dim3 grid;
  Dim3 block;
  int threads = 0;
  std::vector<Fiber> fibers;
  int current = 0;
  ucontext_t scheduler;
  Barrier barrier;
  std::vector<Barrier> warp_barriers;
  std::vector<float> lane_slots;  // [2][threads]: shuffles alternate halves, one barrier each
  std::vector<std::uint64_t> shared;  // 8-byte words; operator new aligns them to 16 bytes
  unsigned long events = 0;           // barrier releases and thread exits, for deadlock detection
  const std::function<void()>* body = nullptr;
};

inline Cta* g_cta = nullptr;

inline void yield() { swapcontext(&g_cta->fibers[g_cta->current].context, &g_cta->scheduler); }

inline void release_if_complete(Barrier& b) {
  if (b.arrived > 0 && b.arrived == b.expected) {
    b.arrived = 0;
    ++b.generation;
    ++g_cta->events;
  }
}

inline void arrive_and_wait(Barrier& b) {
  const unsigned long generation = b.generation;
  ++b.arrived;
  release_if_complete(b);
  while (b.generation == generation) yield();
}

inline void fiber_main() {
  (*g_cta->body)();
  Cta& cta = *g_cta;
  cta.fibers[cta.current].done = true;
  ++cta.events;
  for (Barrier* b : {&cta.barrier, &cta.warp_barriers[cta.fibers[cta.current].thread.x / MLJ_WARP_SIZE]}) {
    --b->expected;
    release_if_complete(*b);
  }
}  // returns to the scheduler through uc_link

inline void run_cta(Cta& cta, char* stacks) {
  g_cta = &cta;
  cta.fibers = std::vector<Fiber>(cta.threads);
  for (int t = 0; t < cta.threads; ++t) {
    Fiber& f = cta.fibers[t];
    f.thread.x = unsigned(t);
    f.stack = stacks + t * kFiberStack;
    getcontext(&f.context);
    f.context.uc_stack.ss_sp = f.stack;
    f.context.uc_stack.ss_size = kFiberStack;
    f.context.uc_link = &cta.scheduler;
    makecontext(&f.context, fiber_main, 0);
  }
  int live = cta.threads;
  while (live > 0) {
    const unsigned long events = cta.events;
    for (int t = 0; t < cta.threads; ++t) {
      if (cta.fibers[t].done) continue;
      cta.current = t;
      swapcontext(&cta.scheduler, &cta.fibers[t].context);
      if (cta.fibers[t].done) --live;
    }
    if (live > 0 && cta.events == events) {
      std::fprintf(stderr, "host_platform: deadlock in CTA (%u, %u, %u): threads wait at different barriers\n",
                   cta.block.x, cta.block.y, cta.block.z);
      std::abort();
    }
  }
  g_cta = nullptr;
}

// Runs `kernel` on every CTA of `grid`, one CTA after another.
inline void launch(Dim3 grid, int threads, std::size_t shared_bytes, const std::function<void()>& kernel) {
  const std::unique_ptr<char[]> stacks(new char[threads * kFiberStack]);  // uninitialised: no zeroing cost
  for (unsigned z = 0; z < grid.z; ++z) {
    for (unsigned y = 0; y < grid.y; ++y) {
      for (unsigned x = 0; x < grid.x; ++x) {
        Cta cta;
        cta.grid = grid;
        cta.block = Dim3{x, y, z};
        cta.threads = threads;
        cta.barrier.expected = threads;
        for (int w = 0; w < (threads + MLJ_WARP_SIZE - 1) / MLJ_WARP_SIZE; ++w) {
          cta.warp_barriers.push_back(Barrier{std::min(MLJ_WARP_SIZE, threads - w * MLJ_WARP_SIZE), 0, 0});
        }
        cta.lane_slots.assign(2 * std::size_t(threads), 0.0f);
        cta.shared.assign((shared_bytes + 7) / 8 + 2, 0xffffffffffffffffull);  // NaN: unset reads show
        cta.body = &kernel;
        run_cta(cta, stacks.get());
      }
    }
  }
}

}  // namespace mlj_host

#define threadIdx (mlj_host::g_cta->fibers[mlj_host::g_cta->current].thread)
#define blockIdx (mlj_host::g_cta->block)
#define gridDim (mlj_host::g_cta->grid)

MLJ_DEVICE unsigned char* mlj_dynamic_shared() {
  return reinterpret_cast<unsigned char*>(mlj_host::g_cta->shared.data());
}
MLJ_DEVICE void mlj_barrier() { mlj_host::arrive_and_wait(mlj_host::g_cta->barrier); }
// Grids and CTAs run one after another here: fences are moot, a read-modify-write is atomic, and a
// spin on a counter can only be a counter that nothing will bump any more (a bug): stop loudly.
MLJ_DEVICE void mlj_fence_device() {}
MLJ_DEVICE int mlj_atomic_add(int* counter, int v) {
  const int before = *counter;
  *counter += v;
  return before;
}
MLJ_DEVICE int mlj_load_acquire(const int* p) { return *p; }
[[noreturn]] inline void mlj_spin_pause() {
  std::fprintf(stderr, "host prelude: a spin on a counter that no earlier grid completed\n");
  std::abort();
}
// The host runs grids one after another: the previous grid is always complete.
MLJ_DEVICE void mlj_wait_for_previous_grid() {}
// Every lane of the warp publishes v, then reads lane `source(lane)`'s.
template <class Source>
float mlj_host_shuffle(float v, Source source) {
  mlj_host::Cta& cta = *mlj_host::g_cta;
  const int tid = int(threadIdx.x), warp = tid / MLJ_WARP_SIZE, lane = tid % MLJ_WARP_SIZE;
  mlj_host::Barrier& b = cta.warp_barriers[warp];
  float* slots = &cta.lane_slots[(b.generation & 1) * cta.threads + warp * MLJ_WARP_SIZE];
  slots[lane] = v;
  mlj_host::arrive_and_wait(b);
  return slots[source(lane) % MLJ_WARP_SIZE];
}
MLJ_DEVICE float mlj_shfl_xor(float v, int lane_mask) {
  return mlj_host_shuffle(v, [=](int lane) { return lane ^ lane_mask; });
}
MLJ_DEVICE float mlj_shfl(float v, int src_lane) {
  return mlj_host_shuffle(v, [=](int) { return src_lane; });
}
MLJ_DEVICE float mlj_neg_inf() { return -INFINITY; }
MLJ_DEVICE float mlj_bits_to_float(unsigned int bits) { return std::bit_cast<float>(bits); }
MLJ_DEVICE unsigned int mlj_float_to_bits(float v) { return std::bit_cast<unsigned int>(v); }
MLJ_DEVICE float mlj_exp2(float x) { return std::exp2(x); }
MLJ_DEVICE float mlj_log2(float x) { return std::log2(x); }
MLJ_DEVICE float mlj_tanh(float x) { return std::tanh(x); }
MLJ_DEVICE float mlj_fma(float a, float b, float c) { return std::fma(a, b, c); }
MLJ_DEVICE float mlj_rint(float x) { return std::rint(x); }
MLJ_DEVICE float mlj_half_to_float(unsigned short h) { return float(std::bit_cast<_Float16>(h)); }
MLJ_DEVICE unsigned short mlj_float_to_half(float f) { return std::bit_cast<unsigned short>(_Float16(f)); }
