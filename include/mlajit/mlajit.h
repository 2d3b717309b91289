/* mlajit C ABI: JIT-compiled MLA (multi-head latent attention) decode kernels.
 * Every function returns an mlajit_status; on failure mlajit_last_error() gives a readable
 * message (thread-local) naming the argument and the constraint, and nothing was launched. */
#ifndef MLAJIT_MLAJIT_H
#define MLAJIT_MLAJIT_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum mlajit_status {
  MLAJIT_OK = 0,
  MLAJIT_ERROR_INVALID_ARGUMENT = 1,
  MLAJIT_ERROR_UNSUPPORTED = 2,
  MLAJIT_ERROR_COMPILE_FAILED = 3,
  MLAJIT_ERROR_BACKEND_UNAVAILABLE = 4,
  MLAJIT_ERROR_DEVICE = 5,
  MLAJIT_ERROR_CACHE = 6,
  MLAJIT_ERROR_INTERNAL = 7
} mlajit_status;

typedef enum mlajit_dtype {
  MLAJIT_BF16 = 0,
  MLAJIT_FP16 = 1,
  MLAJIT_FP8_E4M3 = 2,
  MLAJIT_FP32 = 3
} mlajit_dtype;

/* Fused RoPE style (mla-semantics §2): NeoX rotate-half or GPT-J interleaved. */
typedef enum mlajit_rope { MLAJIT_ROPE_NONE = 0, MLAJIT_ROPE_NEOX = 1, MLAJIT_ROPE_GPTJ = 2 } mlajit_rope;

typedef enum mlajit_backend { MLAJIT_BACKEND_CUDA = 0, MLAJIT_BACKEND_HIP = 1 } mlajit_backend;

typedef struct mlajit_context mlajit_context;

/* Decode arguments: device pointers with AITER's layout and meaning (mla_decode_fwd).
 * Initialise with mlajit_decode_args_init, then set what the call needs.
 *
 * FP8: with fp8 q and/or kv the logits are sm_scale * q_scale * kv_scale * <q, k> (each scale
 * only for its fp8 tensor) and the output is multiplied by kv_scale.
 *
 * Fused RoPE (rope = NEOX or GPTJ; AITER's decode_attention_fwd_grouped_rope, generalised to
 * max_seqlen_q > 1): q's rope part is not yet rotated, nor is the k_pe of each query token's own
 * key (token t of a request with q_len tokens and L keys owns key L - q_len + t). Both are rotated
 * at positions[token] (clamped to [0, max_positions)) with row `position` of cos_sin_cache =
 * [cos | sin] halves of rope_dim / 2 each, then rounded to q's and the cache's dtype (a separate
 * RoPE pass would store exactly these). The key's rotated k_pe is used in QK and written to
 * k_pe_out [total_q, rope_dim] (kv_dtype) for the caller to store in the cache; kv_buffer is
 * never written. Tokens without a key of their own get zeros. Fields added at the end, so
 * struct_size tells old callers apart. */
typedef struct mlajit_decode_args {
  size_t struct_size;               /* sizeof(mlajit_decode_args), set by init */
  const void* q;                    /* [total_q, num_heads, kv_lora_rank + rope_dim], contiguous */
  mlajit_dtype q_dtype;
  const void* kv_buffer;            /* [pages, page_size, 1, kv_lora_rank + rope_dim], 16-byte aligned */
  mlajit_dtype kv_dtype;
  int64_t kv_page_stride;           /* elements between pages; 0 = dense */
  void* out;                        /* [total_q, num_heads, kv_lora_rank] */
  mlajit_dtype out_dtype;
  float* lse;                       /* [total_q, num_heads] fp32 natural-log LSE, or NULL */
  const int32_t* qo_indptr;         /* [batch + 1] */
  const int32_t* kv_indptr;         /* [batch + 1], entries of kv_indices */
  const int32_t* kv_indices;        /* [num_kv_indices] page ids */
  const int32_t* kv_last_page_lens; /* [batch], each in [1, page_size] */
  int32_t batch;
  int32_t total_q;
  int32_t num_heads;
  int32_t max_seqlen_q;
  int32_t page_size;
  int32_t kv_lora_rank;             /* default 512 */
  int32_t rope_dim;                 /* default 64 */
  int64_t num_kv_indices;           /* length of kv_indices */
  float sm_scale;                   /* <= 0: 1/sqrt(kv_lora_rank + rope_dim) */
  float logit_cap;                  /* 0 = off */
  float q_scale;                    /* fp8 q dequant scale, default 1 */
  float kv_scale;                   /* fp8 kv dequant scale, default 1 */
  int32_t causal;                   /* default 1 */
  int32_t num_kv_splits;            /* 0 = auto */
  void* workspace;                  /* mlajit_decode_workspace_size bytes, or NULL when 0 */
  size_t workspace_bytes;
  void* stream;                     /* CUstream / hipStream_t; NULL = default stream */
  mlajit_rope rope;                 /* fused RoPE style, default MLAJIT_ROPE_NONE */
  const void* cos_sin_cache;        /* [max_positions, rope_dim] cos | sin; read when rope != NONE */
  mlajit_dtype cos_sin_dtype;       /* BF16 (default), FP16 or FP32 */
  int32_t max_positions;            /* rows of cos_sin_cache */
  const int64_t* positions;         /* [total_q] position of each query token */
  void* k_pe_out;                   /* [total_q, rope_dim] in kv_dtype: the rotated k_pe of each token's own key */
} mlajit_decode_args;

const char* mlajit_version(void);
const char* mlajit_status_string(mlajit_status status);
/* The message of the calling thread's last failure ("" when none). */
const char* mlajit_last_error(void);

void mlajit_decode_args_init(mlajit_decode_args* args);

mlajit_status mlajit_context_create(mlajit_backend backend, int device, mlajit_context** context);
mlajit_status mlajit_context_destroy(mlajit_context* context);

/* Bytes of workspace mlajit_decode needs for these arguments (0 when no split-K). */
mlajit_status mlajit_decode_workspace_size(mlajit_context* context, const mlajit_decode_args* args,
                                           size_t* bytes);
/* Enqueues the decode on args->stream (compiling the kernel on first use). */
mlajit_status mlajit_decode(mlajit_context* context, const mlajit_decode_args* args);

/* ---- Persistent decode (mla-semantics §1.4-1.5; our own metadata format, AITER's buffer names).
 * A metadata kernel turns the indptrs into a balanced list of work items for one wave of
 * persistent CTAs, on the device and without host synchronisation; the persistent stage-1 kernel
 * walks it and a fixed-grid reduce merges the split tiles. Buffer sizes depend only on batch,
 * num_heads, max_seqlen_q, the dtypes and page size (which pick the kernel's tile) and the device,
 * never on lengths, so metadata fill + persistent decode can be captured in a CUDA graph once and
 * replayed with new lengths in the same buffers. */

/* The six int32 metadata buffers, each allocated by the caller with the element counts of
 * mlajit_persistent_sizes (AITER's names and order; the contents are mlajit's own). */
typedef struct mlajit_persistent_metadata {
  int32_t* work_meta_data;     /* [4 + 2 tiles, padded to 4, + 16 workers]: items, split tiles,
                                  partial slots, total cost, then per tile the reduce's wait counters
                                  (back at 0 after each decode: one fill serves any number of
                                  decodes, e.g. one per layer), then each worker's head (its list's
                                  bounds and first item, so a CTA starts from one read) */
  int32_t* work_indptr;        /* [workers + 1]: CTA w walks items work_indptr[w] .. [w + 1] */
  int32_t* work_info_set;      /* [max_items, 8]: request, row group, kv begin/end, slot, ... */
  int32_t* reduce_indptr;      /* [tiles + 1]: partial slots of each (request, row group) tile */
  int32_t* reduce_final_map;   /* [max_split_tiles]: the tiles that were split */
  int32_t* reduce_partial_map; /* [max_partials]: partial slot of each split piece, KV order */
} mlajit_persistent_metadata;

typedef struct mlajit_persistent_sizes {
  int64_t elements[6];         /* int32 elements of each buffer, in mlajit_persistent_metadata order */
  int32_t workers;             /* persistent CTAs launched */
  int32_t rows_per_item;       /* query rows (token * heads + head) per tile */
  size_t workspace_bytes;      /* fp32 partials mlajit_persistent_decode needs in args->workspace */
} mlajit_persistent_sizes;

/* Sizes for these arguments. Reads only batch, num_heads, max_seqlen_q, dtypes, page_size,
 * kv_lora_rank, rope_dim, causal, logit_cap, rope and the lse flag; no device data. */
mlajit_status mlajit_persistent_sizes_query(mlajit_context* context, const mlajit_decode_args* args,
                                            mlajit_persistent_sizes* sizes);
/* Enqueues the metadata kernel on args->stream: reads qo_indptr, kv_indptr, kv_last_page_lens. */
mlajit_status mlajit_persistent_metadata_fill(mlajit_context* context, const mlajit_decode_args* args,
                                              const mlajit_persistent_metadata* metadata);
/* Enqueues the persistent stage-1 kernel and its reduce on args->stream (metadata filled for the
 * same arguments; args->workspace of sizes.workspace_bytes; num_kv_splits is ignored). */
mlajit_status mlajit_persistent_decode(mlajit_context* context, const mlajit_decode_args* args,
                                       const mlajit_persistent_metadata* metadata);

#ifdef __cplusplus
}
#endif

#endif /* MLAJIT_MLAJIT_H */
