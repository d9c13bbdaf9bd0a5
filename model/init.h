/* init.h - write a random-weight Qwen3.5 checkpoint (`q35lab model init`).
 *
 * q35_init_write makes DIR/config.json (the nested Hugging Face release
 * form: Qwen3_5[Moe]ForConditionalGeneration with the decoder in
 * "text_config") and DIR/model.safetensors (tensor names under
 * "model.language_model.", plus "lm_head.weight" unless the embeddings are
 * tied) for a preset of model/presets.h, and for the synthetic presets
 * (no hf_repo) DIR/tokenizer.json, a small byte-level BPE of exactly the
 * preset's vocabulary (model/tokenizer_write.h).  Weights are Gaussian (a few are
 * not: A_log, the gated norm) with the scales docs/model-init.md derives.
 *
 * Determinism: every weight matrix is cut into blocks of Q35_INIT_BLOCK
 * values; each block has its own gsl_rng_mt19937 stream seeded from (seed,
 * the matrix's canonical name, block number).  So the file depends on the
 * seed only, not on the thread count; a matrix's draws do not depend on where
 * it sits in the file, so the fused and per-expert layouts hold the same
 * expert weights, a --layers prefix holds the same draws as the full model
 * (the out/o/down projections rescaled, their residual factor depends on the
 * layer count), and the bf16 file is exactly the f32 file rounded to nearest
 * even.
 *
 * Memory is bounded by a batch buffer (Q35_INIT_BATCH values), whatever the
 * model size: the writer streams one tensor at a time (st_writer_write_stream).
 */
#ifndef Q35LAB_MODEL_INIT_H
#define Q35LAB_MODEL_INIT_H

#include "common/safetensors.h"

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define Q35_INIT_BLOCK (1u << 18)  /* values per RNG stream */
#define Q35_INIT_BATCH (1u << 22)  /* values generated (in parallel) per write */
#define Q35_INIT_EMBED_STD 0.02    /* default embedding std (docs/model-init.md) */

typedef enum { Q35_EXPERTS_FUSED = 0, Q35_EXPERTS_PER_EXPERT = 1 } q35_expert_layout;

typedef struct {
    const char *preset;          /* a q35_presets[] name */
    uint64_t seed;
    st_dtype dtype;              /* ST_BF16 or ST_F32 */
    int layers;                  /* 0: the preset's count; else 1 .. that count */
    q35_expert_layout experts;   /* MoE presets only */
    int force;                   /* write into a non-empty DIR */
    FILE *progress;              /* a line per few layers; NULL = quiet */
    int threads;                 /* 0: OpenMP's default */
    double embed_std;            /* 0: Q35_INIT_EMBED_STD */
} q35_init_opts;

typedef struct {
    int n_tensors;
    uint64_t n_values;
    uint64_t file_bytes;         /* model.safetensors */
    double seconds;
} q35_init_stats;

/* 0, or -1 with a one-line message (unknown preset with the valid names, bad
 * dtype or layer count, DIR not empty without force, I/O errors naming the
 * file).  On failure nothing half-written is left: the safetensors file is
 * written to a temporary name and renamed, config.json and tokenizer.json
 * likewise, a new model.safetensors (and config.json) is removed again if a
 * later file fails, and a DIR
 * this call created is removed.  stats may be NULL. */
int q35_init_write(const char *dir, const q35_init_opts *o, q35_init_stats *stats, char *err,
                   size_t errlen);

#endif /* Q35LAB_MODEL_INIT_H */
