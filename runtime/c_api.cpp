// The C ABI (include/mlajit/mlajit.h) over mlajit::Engine: exceptions become status codes.
#include "mlajit/mlajit.h"

#include <cstring>
#include <new>
#include <string>

#include "codegen/error.hpp"
#include "runtime/engine.hpp"
#include "runtime/persistent_plan.hpp"

struct mlajit_context {
  mlajit::Engine engine;
  mlajit_context(mlajit::Backend backend, int device) : engine(device, backend) {}
};

namespace {

thread_local std::string g_last_error;

template <class Fn>
mlajit_status guarded(Fn&& fn) {
  try {
    fn();
    g_last_error.clear();
    return MLAJIT_OK;
  } catch (const mlajit::Error& e) {
    g_last_error = e.what();
    return static_cast<mlajit_status>(static_cast<int>(e.code()));
  } catch (const std::bad_alloc&) {
    g_last_error = "out of host memory";
    return MLAJIT_ERROR_INTERNAL;
  } catch (const std::exception& e) {
    g_last_error = e.what();
    return MLAJIT_ERROR_INTERNAL;
  }
}

mlajit::DType to_dtype(mlajit_dtype t, const char* argument) {
  switch (t) {
    case MLAJIT_BF16: return mlajit::DType::bf16;
    case MLAJIT_FP16: return mlajit::DType::fp16;
    case MLAJIT_FP8_E4M3: return mlajit::DType::fp8_e4m3;
    case MLAJIT_FP32: return mlajit::DType::fp32;
  }
  mlajit::throw_invalid(argument, "must be an mlajit_dtype value", std::to_string(int(t)));
}

mlajit::RopeStyle to_rope(mlajit_rope r) {
  switch (r) {
    case MLAJIT_ROPE_NONE: return mlajit::RopeStyle::none;
    case MLAJIT_ROPE_NEOX: return mlajit::RopeStyle::neox;
    case MLAJIT_ROPE_GPTJ: return mlajit::RopeStyle::gptj;
  }
  mlajit::throw_invalid("rope", "must be MLAJIT_ROPE_NONE, MLAJIT_ROPE_NEOX or MLAJIT_ROPE_GPTJ",
                        std::to_string(int(r)));
}

mlajit::DecodeArgs to_args(const mlajit_decode_args* c) {
  if (c == nullptr) mlajit::throw_invalid("args", "must not be NULL", "NULL");
  if (c->struct_size != sizeof(mlajit_decode_args)) {
    mlajit::throw_invalid("args.struct_size", "must be sizeof(mlajit_decode_args); call mlajit_decode_args_init",
                          std::to_string(c->struct_size));
  }
  mlajit::DecodeArgs a;
  a.q = c->q;
  a.q_dtype = to_dtype(c->q_dtype, "q_dtype");
  a.kv_buffer = c->kv_buffer;
  a.kv_dtype = to_dtype(c->kv_dtype, "kv_dtype");
  a.kv_page_stride = c->kv_page_stride;
  a.out = c->out;
  a.out_dtype = to_dtype(c->out_dtype, "out_dtype");
  a.lse = c->lse;
  a.qo_indptr = c->qo_indptr;
  a.kv_indptr = c->kv_indptr;
  a.kv_indices = c->kv_indices;
  a.kv_last_page_lens = c->kv_last_page_lens;
  a.batch = c->batch;
  a.total_q = c->total_q;
  a.num_heads = c->num_heads;
  a.max_seqlen_q = c->max_seqlen_q;
  a.page_size = c->page_size;
  a.kv_lora_rank = c->kv_lora_rank;
  a.rope_dim = c->rope_dim;
  a.num_kv_indices = c->num_kv_indices;
  a.sm_scale = c->sm_scale;
  a.logit_cap = c->logit_cap;
  a.q_scale = c->q_scale;
  a.kv_scale = c->kv_scale;
  a.causal = c->causal != 0;
  a.num_kv_splits = c->num_kv_splits;
  a.workspace = c->workspace;
  a.workspace_bytes = c->workspace_bytes;
  a.stream = c->stream;
  a.rope = to_rope(c->rope);
  a.cos_sin_cache = c->cos_sin_cache;
  a.cos_sin_dtype = to_dtype(c->cos_sin_dtype, "cos_sin_dtype");
  a.max_positions = c->max_positions;
  a.positions = c->positions;
  a.k_pe_out = c->k_pe_out;
  return a;
}

mlajit::PersistentMetadata to_metadata(const mlajit_persistent_metadata* m) {
  if (m == nullptr) mlajit::throw_invalid("metadata", "must not be NULL", "NULL");
  return mlajit::PersistentMetadata{m->work_meta_data, m->work_indptr,      m->work_info_set,
                                    m->reduce_indptr,  m->reduce_final_map, m->reduce_partial_map};
}

void require_context(const mlajit_context* context) {
  if (context == nullptr) mlajit::throw_invalid("context", "must come from mlajit_context_create", "NULL");
}

}  // namespace

extern "C" {

const char* mlajit_version(void) { return "0.1.0"; }

const char* mlajit_status_string(mlajit_status status) {
  switch (status) {
    case MLAJIT_OK: return "ok";
    case MLAJIT_ERROR_INVALID_ARGUMENT: return "invalid argument";
    case MLAJIT_ERROR_UNSUPPORTED: return "unsupported";
    case MLAJIT_ERROR_COMPILE_FAILED: return "compile failed";
    case MLAJIT_ERROR_BACKEND_UNAVAILABLE: return "backend unavailable";
    case MLAJIT_ERROR_DEVICE: return "device error";
    case MLAJIT_ERROR_CACHE: return "cache error";
    case MLAJIT_ERROR_INTERNAL: return "internal error";
  }
  return "unknown status";
}

const char* mlajit_last_error(void) { return g_last_error.c_str(); }

void mlajit_decode_args_init(mlajit_decode_args* args) {
  if (args == nullptr) return;
  std::memset(args, 0, sizeof(*args));
  args->struct_size = sizeof(*args);
  args->q_dtype = MLAJIT_BF16;
  args->kv_dtype = MLAJIT_BF16;
  args->out_dtype = MLAJIT_BF16;
  args->max_seqlen_q = 1;
  args->page_size = 1;
  args->kv_lora_rank = 512;
  args->rope_dim = 64;
  args->q_scale = 1.0f;
  args->kv_scale = 1.0f;
  args->causal = 1;
  args->rope = MLAJIT_ROPE_NONE;
  args->cos_sin_dtype = MLAJIT_BF16;
}

mlajit_status mlajit_context_create(mlajit_backend backend, int device, mlajit_context** context) {
  return guarded([&] {
    if (context == nullptr) mlajit::throw_invalid("context", "must point to an mlajit_context*", "NULL");
    *context = nullptr;
    if (backend != MLAJIT_BACKEND_CUDA && backend != MLAJIT_BACKEND_HIP) {
      mlajit::throw_invalid("backend", "must be MLAJIT_BACKEND_CUDA or MLAJIT_BACKEND_HIP", std::to_string(int(backend)));
    }
    *context = new mlajit_context(backend == MLAJIT_BACKEND_CUDA ? mlajit::Backend::cuda : mlajit::Backend::hip, device);
  });
}

mlajit_status mlajit_context_destroy(mlajit_context* context) {
  return guarded([&] { delete context; });
}

mlajit_status mlajit_decode_workspace_size(mlajit_context* context, const mlajit_decode_args* args, size_t* bytes) {
  return guarded([&] {
    require_context(context);
    if (bytes == nullptr) mlajit::throw_invalid("bytes", "must not be NULL", "NULL");
    *bytes = context->engine.decode_workspace_size(to_args(args));
  });
}

mlajit_status mlajit_decode(mlajit_context* context, const mlajit_decode_args* args) {
  return guarded([&] {
    require_context(context);
    context->engine.decode(to_args(args));
  });
}

// The persistent entry points check the arguments that need no device (shape, metadata and, for
// the decode, every decode argument) before the context, so that they are named even when the
// context is missing.
mlajit_status mlajit_persistent_sizes_query(mlajit_context* context, const mlajit_decode_args* args,
                                            mlajit_persistent_sizes* sizes) {
  return guarded([&] {
    if (sizes == nullptr) mlajit::throw_invalid("sizes", "must not be NULL", "NULL");
    const mlajit::DecodeArgs a = to_args(args);
    mlajit::shape_spec(a);
    require_context(context);
    const mlajit::PersistentPlan plan = context->engine.plan_persistent(a);
    const auto elements = plan.layout.elements();
    for (int i = 0; i < 6; ++i) sizes->elements[i] = int64_t(elements[i]);
    sizes->workers = plan.shape.workers;
    sizes->rows_per_item = plan.shape.rows_per_item;
    sizes->workspace_bytes = plan.workspace_bytes;
  });
}

mlajit_status mlajit_persistent_metadata_fill(mlajit_context* context, const mlajit_decode_args* args,
                                              const mlajit_persistent_metadata* metadata) {
  return guarded([&] {
    const mlajit::DecodeArgs a = to_args(args);
    const mlajit::PersistentMetadata m = to_metadata(metadata);
    mlajit::shape_spec(a);
    require_context(context);
    context->engine.persistent_metadata_fill(a, m);
  });
}

mlajit_status mlajit_persistent_decode(mlajit_context* context, const mlajit_decode_args* args,
                                       const mlajit_persistent_metadata* metadata) {
  return guarded([&] {
    const mlajit::DecodeArgs a = to_args(args);
    const mlajit::PersistentMetadata m = to_metadata(metadata);
    mlajit::decode_spec(a);
    require_context(context);
    context->engine.persistent_decode(a, m);
  });
}

}  // extern "C"
