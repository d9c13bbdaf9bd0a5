/* embed.c - one embedding row (forward_internal.h): shared by the decoder's
 * forward call and the MTP head (model/mtp.c), which embeds x_{t+1} with the
 * model's own table. */
#include "model/forward_internal.h"

#include <string.h>

void q35_embed_row(const q35_model *m, int32_t id, float *out)
{
    const int H = m->cfg.hidden_size, r = id - m->sh.vocab0;
    if (r < 0 || r >= m->sh.vocab_n)
        memset(out, 0, (size_t)H * sizeof *out);
    else if (m->wt == WT_BF16)
        q35_bf16_to_f32_array((const uint16_t *)m->embed + (size_t)r * H, out, (size_t)H);
    else
        memcpy(out, (const float *)m->embed + (size_t)r * H, (size_t)H * sizeof(float));
}
