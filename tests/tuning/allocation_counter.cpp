// Counts heap allocations of the tuning test binary (global operator new), so a test can show that
// selection allocates nothing per decode call. Its own translation unit: nothing inlines these.
#include <atomic>
#include <cstdlib>
#include <new>

namespace mlajit::tuning::test_support {
std::atomic<long long> g_allocations{0};
long long allocations() { return g_allocations.load(std::memory_order_relaxed); }
}  // namespace mlajit::tuning::test_support

void* operator new(std::size_t bytes) {
  mlajit::tuning::test_support::g_allocations.fetch_add(1, std::memory_order_relaxed);
  if (void* p = std::malloc(bytes == 0 ? 1 : bytes)) return p;
  throw std::bad_alloc();
}
void operator delete(void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
