/* libFuzzer target: a sharded checkpoint's model.safetensors.index.json
 * (model/weights.h) on any bytes, in a folder holding two small valid
 * shards.  Its promise: an index it accepts names only shards that are
 * plain files of the folder, and every indexed tensor is found by its name
 * and lies in an opened shard; otherwise a one-line message. */
#include "common/safetensors.h"
#include "model/weights.h"
#include "tests/fuzz/fuzz_input.h"

#include <string.h>
#include <sys/stat.h>

static char dir[64];

/* Two shards with a few tensors under the release names. */
int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc; (void)argv;
    snprintf(dir, sizeof dir, "/dev/shm/q35-fuzz-index-%ld", (long)getpid());
    if (mkdir(dir, 0700)) { perror(dir); abort(); }
    static const float v[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    const int64_t s2[2] = {2, 4}, s1[1] = {8};
    const char *names[2][2] = {{"model.embed_tokens.weight", "model.norm.weight"},
                               {"model.layers.0.mlp.up_proj.weight", "lm_head.weight"}};
    char err[256], path[128];
    for (int k = 0; k < 2; k++) {
        st_writer *w = st_writer_new();
        st_writer_add(w, names[k][0], ST_F32, 2, s2, v);
        st_writer_add(w, names[k][1], ST_F32, 1, s1, v);
        snprintf(path, sizeof path, "%s/model-0000%d-of-00002.safetensors", dir, k + 1);
        if (st_writer_write(w, path, err, sizeof err)) { fprintf(stderr, "%s\n", err); abort(); }
        st_writer_free(w);
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char path[128], err[512];
    snprintf(path, sizeof path, "%s/model.safetensors.index.json", dir);
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(data, 1, size, f) != size || fclose(f)) abort();
    q35_weights w;
    if (q35_weights_open(dir, &w, err, sizeof err)) {
        fuzz_check_message(err, sizeof err);
        return 0;
    }
    for (int i = 0; i < w.n_shards; i++)
        FUZZ_PROMISE(w.shard_names[i][0] && !strchr(w.shard_names[i], '/') && strcmp(w.shard_names[i], ".."));
    for (int i = 0; i < w.n_entries; i++) {
        const q35_weight_entry *e = &w.entries[i];
        FUZZ_PROMISE(e->shard >= 0 && e->shard < w.n_shards && e->t);
        FUZZ_PROMISE(q35_weights_find_raw(&w, e->t->name) != NULL);
    }
    q35_weights_close(&w);
    return 0;
}
