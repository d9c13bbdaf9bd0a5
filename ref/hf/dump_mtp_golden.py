#!/usr/bin/env python3
"""Dump a tiny Qwen3.5 checkpoint WITH an MTP head (mtp.*) and an MTP golden computed by
*transformers' own* classes (docs/mtp.md).

transformers has no MTP module (it drops mtp.* on load), so the head is composed here from
transformers' own building blocks, following the conventions docs/mtp.md documents with their
sources (vLLM qwen3_5_mtp.py + v1/spec_decode/eagle.py, sglang qwen3_5_mtp.py):

    h_t       transformers' Qwen3_5ForCausalLM forward: model.model(...).last_hidden_state,
              i.e. AFTER the model's final norm (checked: lm_head(h) == the model's logits)   (a)
    u         fc(cat[pre_fc_norm_embedding(embed(x_{t+1})), pre_fc_norm_hidden(h_t)])          (b)
              fc = torch.nn.Linear(2H, H, bias=False); the norms are transformers' Qwen3_5RMSNorm
    u         transformers' Qwen3_5DecoderLayer (block type full_attention) loaded with the
              mtp.layers.0.* weights, rotary from transformers' Qwen3_5TextRotaryEmbedding at
              position_ids t (the position of h_t), eager attention with a causal mask       (c)
    o         mtp.norm (Qwen3_5RMSNorm); logits = the model's lm_head(o)
    chained   one more pair (o_{n-1}, argmax logits_{n-1}) at position n, computed in the same
              causal pass (causal attention: rows 0..n-1 are unchanged by it)                (d)

The checkpoint is written by save_pretrained (bf16), then the mtp.* tensors (bf16) are added to
model.safetensors and mtp_num_hidden_layers to config.json; everything is recomputed in float32
from the weights as stored (bf16-rounded), like dump_model_goldens.py.

Writes (--out, default tests/data/model):
    hf-tiny-mtp-dense-bf16/{config.json, generation_config.json, model.safetensors}
    hf-tiny-mtp-dense-bf16.mtp-golden.safetensors:
        prompt        I32 [n]      x_0 .. x_{n-1}
        next_tokens   I32 [n]      x_1 .. x_{n-1}, then the target's greedy next token
        hidden        F32 [n, H]   the target's h_0 .. h_{n-1} (after the final norm)
        target_logits F32 [n, V]
        mtp_logits    F32 [n, V]   the head's logits for each pair (h_t, next_tokens[t]) at position t
        mtp_hidden    F32 [n, H]   its output after mtp.norm
        chain_token   I32 [1]      argmax mtp_logits[n-1]
        chain_logits  F32 [V], chain_hidden F32 [H]: the chained step at position n
      metadata: format, transformers_version, torch_version, seed, conventions, note

Usage: python ref/hf/dump_mtp_golden.py [--out tests/data/model]
"""

from __future__ import annotations

import os

os.environ.setdefault("USE_HUB_KERNELS", "NO")

import argparse  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import shutil  # noqa: E402
import sys  # noqa: E402

import torch  # noqa: E402
from safetensors import safe_open  # noqa: E402
from safetensors.torch import load_file, save_file  # noqa: E402

import transformers  # noqa: E402
from transformers.models.qwen3_5 import modeling_qwen3_5 as M  # noqa: E402

NAME = "hf-tiny-mtp-dense-bf16"
SEED = 35301
PROMPT_SEED = 35300
PROMPT_LEN = 12

# The tiny shape of dump_model_goldens.py (same rope layout as the released configs), with a
# dense MLP and an untied head; imported rather than restated so the two stay one shape.
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from dump_model_goldens import ROPE, TEXT_COMMON  # noqa: E402

TEXT = dict(TEXT_COMMON, intermediate_size=128, tie_word_embeddings=False)


def normal(gen, shape, std):
    return torch.randn(*shape, generator=gen, dtype=torch.float32) * std


@torch.no_grad()
def reinit_(named, gen, lm_head_scale=4.0):
    """O(1)-scale weights, the rules of dump_model_goldens.py (untied lm_head x4)."""
    for name, p in sorted(named):
        shape = tuple(p.shape)
        if name.endswith("embed_tokens.weight"):
            v = normal(gen, shape, 1.0)
        elif name == "lm_head.weight":
            v = normal(gen, shape, lm_head_scale / math.sqrt(shape[1]))
        elif name.endswith("linear_attn.norm.weight"):
            v = 1.0 + normal(gen, shape, 0.1)
        elif name.endswith("norm.weight") or name.endswith("norm_embedding.weight") or name.endswith("norm_hidden.weight"):
            v = normal(gen, shape, 0.1)
        elif name.endswith("linear_attn.A_log"):
            v = torch.log(1.0 + 15.0 * torch.rand(*shape, generator=gen))
        elif name.endswith("linear_attn.dt_bias"):
            v = normal(gen, shape, 0.3)
        elif name.endswith("conv1d.weight"):
            v = normal(gen, shape, 1.0 / math.sqrt(shape[-1]))
        elif name.endswith(".weight") and len(shape) == 2:
            v = normal(gen, shape, 1.0 / math.sqrt(shape[1]))
        else:
            raise RuntimeError(f"no init rule for {name} {shape}")
        p.copy_(v.to(p.dtype))


class MTPHead(torch.nn.Module):
    """The head's parameters under their released names (mtp.<name>) - transformers' classes."""

    def __init__(self, cfg, full_layer_idx):
        super().__init__()
        H = cfg.hidden_size
        self.fc = torch.nn.Linear(2 * H, H, bias=False)
        self.pre_fc_norm_embedding = M.Qwen3_5RMSNorm(H, eps=cfg.rms_norm_eps)
        self.pre_fc_norm_hidden = M.Qwen3_5RMSNorm(H, eps=cfg.rms_norm_eps)
        self.norm = M.Qwen3_5RMSNorm(H, eps=cfg.rms_norm_eps)
        assert cfg.layer_types[full_layer_idx] == "full_attention"
        self.layers = torch.nn.ModuleList([M.Qwen3_5DecoderLayer(cfg, full_layer_idx)])
        assert self.layers[0].block_type == "full_attention"


@torch.no_grad()
def mtp_forward(model, head, rotary, tokens, hidden, positions):
    """One causal pass of the head over pairs (hidden[t], tokens[t]) at positions[t]."""
    e = model.model.embed_tokens(tokens)                                   # [1, T, H]
    u = head.fc(torch.cat([head.pre_fc_norm_embedding(e), head.pre_fc_norm_hidden(hidden)], dim=-1))
    pos = positions[None, :]
    cos_sin = rotary(u, pos)
    T = tokens.shape[1]
    mask = torch.full((T, T), float("-inf")).triu(1)[None, None]          # additive causal mask
    u = head.layers[0](u, position_embeddings=cos_sin, attention_mask=mask, position_ids=pos)
    if isinstance(u, tuple):
        u = u[0]
    o = head.norm(u)
    return model.lm_head(o), o


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="tests/data/model")
    args = ap.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(SEED)

    cfg = transformers.Qwen3_5TextConfig(**TEXT)
    model = transformers.Qwen3_5ForCausalLM._from_config(cfg, dtype=torch.float32, attn_implementation="eager")
    gen = torch.Generator().manual_seed(SEED)
    reinit_(model.named_parameters(), gen)
    head = MTPHead(model.config, full_layer_idx=3)
    reinit_(head.named_parameters(), gen)

    folder = os.path.join(args.out, NAME)
    if os.path.isdir(folder):
        shutil.rmtree(folder)
    model.to(torch.bfloat16).save_pretrained(folder, safe_serialization=True)
    st_path = os.path.join(folder, "model.safetensors")
    tensors = load_file(st_path)
    assert not any(k.startswith("mtp.") for k in tensors)
    for name, p in head.state_dict().items():
        tensors["mtp." + name] = p.detach().to(torch.bfloat16).contiguous()
    save_file(tensors, st_path, metadata={"format": "pt"})
    cpath = os.path.join(folder, "config.json")
    with open(cpath) as f:
        conf = json.load(f)
    conf["mtp_num_hidden_layers"] = 1
    with open(cpath, "w") as f:
        json.dump(conf, f, indent=2, sort_keys=True)
        f.write("\n")

    # Everything from the weights as stored: the target through from_pretrained (which drops
    # mtp.*), the head from the file's mtp.* tensors.
    model = transformers.Qwen3_5ForCausalLM.from_pretrained(folder, dtype=torch.float32,
                                                            attn_implementation="eager").eval()
    head = MTPHead(model.config, full_layer_idx=3).eval()
    with safe_open(st_path, "pt") as f:
        sd = {k[4:]: f.get_tensor(k).to(torch.float32) for k in f.keys() if k.startswith("mtp.")}
    head.load_state_dict(sd, strict=True)  # every mtp.* tensor, nothing else
    rotary = M.Qwen3_5TextRotaryEmbedding(config=model.config)

    gen = torch.Generator().manual_seed(PROMPT_SEED)
    prompt = torch.randint(0, 255, (1, PROMPT_LEN), generator=gen)
    with torch.no_grad():
        out = model.model(input_ids=prompt)
        h = out.last_hidden_state                                           # after model.norm (a)
        logits = model(input_ids=prompt).logits
        assert torch.allclose(model.lm_head(h), logits, atol=1e-5), "h is not what lm_head reads"
        nxt = int(logits[0, -1].argmax())
        tokens = torch.cat([prompt[:, 1:], torch.tensor([[nxt]])], dim=1)
        n = PROMPT_LEN
        lg, o = mtp_forward(model, head, rotary, tokens, h, torch.arange(n))
        d1 = int(lg[0, -1].argmax())
        # chained step (d): pair (o_{n-1}, d1) at position n, in one causal pass with the others
        tokens2 = torch.cat([tokens, torch.tensor([[d1]])], dim=1)
        hidden2 = torch.cat([h, o[:, -1:]], dim=1)
        lg2, o2 = mtp_forward(model, head, rotary, tokens2, hidden2, torch.arange(n + 1))
        assert torch.allclose(lg2[:, :n], lg, atol=1e-5), "causal pass changed earlier rows"

    golden = {
        "prompt": prompt[0].to(torch.int32),
        "next_tokens": tokens[0].to(torch.int32),
        "hidden": h[0].contiguous(),
        "target_logits": logits[0].contiguous(),
        "mtp_logits": lg[0].contiguous(),
        "mtp_hidden": o[0].contiguous(),
        "chain_token": torch.tensor([d1], dtype=torch.int32),
        "chain_logits": lg2[0, n].contiguous(),
        "chain_hidden": o2[0, n].contiguous(),
    }
    top2 = lg[0].topk(2, dim=-1).values
    margins = (top2[:, 0] - top2[:, 1]).tolist()
    meta = {
        "format": "mtp-golden",
        "checkpoint": NAME,
        "transformers_version": transformers.__version__,
        "torch_version": torch.__version__,
        "seed": str(SEED),
        "prompt_seed": str(PROMPT_SEED),
        "dtype_on_disk": "BF16",
        "dtype_of_reference": "float32",
        "conventions": "h after model.norm; cat[embedding, hidden]; pair (h_t, x_{t+1}) at position t; "
                       "chained step takes the output after mtp.norm (docs/mtp.md)",
        "min_margin": f"{min(margins):.4g}",
        "note": "transformers Qwen3_5DecoderLayer(full_attention) + Qwen3_5RMSNorm + nn.Linear fc, "
                "eager attention, float32 on the bf16 weights",
    }
    gpath = os.path.join(args.out, NAME + ".mtp-golden.safetensors")
    save_file(golden, gpath, metadata=meta)
    print(f"transformers {transformers.__version__}, torch {torch.__version__}")
    print(f"wrote {folder} ({os.path.getsize(st_path)} B model.safetensors) and {gpath} "
          f"({os.path.getsize(gpath)} B)")
    print(f"prompt {prompt[0].tolist()}, next {nxt}, drafts {lg[0].argmax(-1).tolist()}, chained {d1}")
    print(f"min top1-top2 margin of the head's logits {min(margins):.4g}; logits max |.| "
          f"{float(lg.abs().max()):.3g}")


if __name__ == "__main__":
    main()
