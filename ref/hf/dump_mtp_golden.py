#!/usr/bin/env python3
"""Dump a tiny Qwen3.5 checkpoint WITH an MTP head (mtp.*) and an MTP golden computed by
*transformers' own* classes (docs/mtp.md); dense by default, the MoE model with --moe.

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
              (--moe: Qwen3_5MoeDecoderLayer, whose mlp is transformers' Qwen3_5MoeSparseMoeBlock,
              eager experts, and the Qwen3_5Moe norm / rotary classes: vLLM's Qwen3_5DecoderLayer
              builds the MTP layer's mlp from the model type, Qwen3NextSparseMoeBlock for
              qwen3_5_moe_text; sglang builds it as a one-layer Qwen3_5ForCausalLM of the same
              text config)
    o         mtp.norm (Qwen3_5RMSNorm); logits = the model's lm_head(o)
    chained   one more pair (o_{n-1}, argmax logits_{n-1}) at position n, computed in the same
              causal pass (causal attention: rows 0..n-1 are unchanged by it)                (d)

The checkpoint is written by save_pretrained (bf16), then the mtp.* tensors (bf16) are added to
model.safetensors and mtp_num_hidden_layers to config.json; everything is recomputed in float32
from the weights as stored (bf16-rounded), like dump_model_goldens.py.

The MoE checkpoint (--moe) is laid out as the Qwen3.5-35B-A3B release: Qwen3_5MoeForConditional-
Generation (nested text_config, tiny vision tower, text tensors under model.language_model.*,
untied lm_head), mtp.* at the top level, mtp_num_hidden_layers in text_config. The decoder's
experts are what save_pretrained writes (per expert); the head's are FUSED,
mtp.layers.0.mlp.experts.gate_up_proj [E, 2I, H] (gate rows, then up) and .down_proj [E, H, I]:
transformers' own parameter layout, and the one the release ships for mtp.* (q35lab's loader
picks the head's layout independently of the decoder's). Its seed is the first from
MOE["seed"] up whose router top-k boundary gap (k-th minus (k+1)-th logit) is >= MIN_ROUTER_GAP
at every token of every MoE layer, the head's included, and whose head logits have a top-1/top-2
margin >= MIN_MARGIN: a near-tie would make the golden test the router's rounding, not the head.

Writes (--out, default tests/data/model), NAME = hf-tiny-mtp-dense-bf16 or (--moe) hf-tiny-mtp-moe-bf16:
    NAME/{config.json, generation_config.json, model.safetensors}
    NAME.mtp-golden.safetensors:
        prompt        I32 [n]      x_0 .. x_{n-1}
        next_tokens   I32 [n]      x_1 .. x_{n-1}, then the target's greedy next token
        hidden        F32 [n, H]   the target's h_0 .. h_{n-1} (after the final norm)
        target_logits F32 [n, V]
        mtp_logits    F32 [n, V]   the head's logits for each pair (h_t, next_tokens[t]) at position t
        mtp_hidden    F32 [n, H]   its output after mtp.norm
        chain_token   I32 [1]      argmax mtp_logits[n-1]
        chain_logits  F32 [V], chain_hidden F32 [H]: the chained step at position n
      metadata: format, transformers_version, torch_version, seed, conventions, note
                (--moe also: experts_layout, min_router_gap)

Usage: python ref/hf/dump_mtp_golden.py [--out tests/data/model] [--moe]
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
from transformers.models.qwen3_5_moe import modeling_qwen3_5_moe as MM  # noqa: E402

NAME = "hf-tiny-mtp-dense-bf16"
SEED = 35301
PROMPT_SEED = 35300
PROMPT_LEN = 12

# The tiny shape of dump_model_goldens.py (same rope layout as the released configs), with a
# dense MLP and an untied head; imported rather than restated so the two stay one shape.
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from dump_model_goldens import SPECS, TEXT_COMMON, RouterRecorder  # noqa: E402

TEXT = dict(TEXT_COMMON, intermediate_size=128, tie_word_embeddings=False)

# --moe: the same tiny shape with the 35B-A3B release's MLP kind (a sparse MoE block with a
# sigmoid-gated shared expert in every layer, the head's included), in the release's nested
# layout (Qwen3_5MoeForConditionalGeneration, tiny vision tower of hf-tiny-moe-f32), untied
# lm_head as the release. 16 experts, top-4 (the release: 256, top-8).
MOE = dict(
    name="hf-tiny-mtp-moe-bf16",
    seed=35401,  # the first seed tried; the one kept is the first that passes (module doc)
    text=dict(
        TEXT_COMMON,
        num_experts=16,
        num_experts_per_tok=4,
        moe_intermediate_size=32,
        shared_expert_intermediate_size=32,
        # transformers 5.x always renormalises the top-k probabilities (no attribute); stored so
        # that config.json states it, as the release's does.
        norm_topk_prob=True,
        tie_word_embeddings=False,
    ),
    vision=SPECS["hf-tiny-moe-f32"]["vision"],
    router_scale=3.0,  # router logits of std ~3: well separated top-k choices
)
MIN_ROUTER_GAP = 2e-3  # as dump_model_goldens.py
MIN_MARGIN = 1e-2
MAX_SEED_ATTEMPTS = 200


def normal(gen, shape, std):
    return torch.randn(*shape, generator=gen, dtype=torch.float32) * std


@torch.no_grad()
def reinit_(named, gen, lm_head_scale=4.0, router_scale=1.0):
    """O(1)-scale weights, the rules of dump_model_goldens.py (untied lm_head x4; MoE experts
    N(0, 1/fan_in) per expert, router x router_scale); model.visual.* keeps transformers' init."""
    for name, p in sorted(named):
        if name.startswith("model.visual.") or ".visual." in name:
            continue
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
        elif name.endswith("mlp.experts.gate_up_proj") or name.endswith("mlp.experts.down_proj"):
            v = normal(gen, shape, 1.0 / math.sqrt(shape[2]))  # [E, 2I, H] / [E, H, I]: fan_in last
        elif name.endswith("mlp.gate.weight"):
            v = normal(gen, shape, router_scale / math.sqrt(shape[1]))
        elif name.endswith(".weight") and len(shape) == 2:
            v = normal(gen, shape, 1.0 / math.sqrt(shape[1]))
        else:
            raise RuntimeError(f"no init rule for {name} {shape}")
        p.copy_(v.to(p.dtype))


# transformers' classes of each model kind: (RMSNorm, decoder layer, text rotary embedding)
CLASSES = {
    "dense": (M.Qwen3_5RMSNorm, M.Qwen3_5DecoderLayer, M.Qwen3_5TextRotaryEmbedding),
    "moe": (MM.Qwen3_5MoeRMSNorm, MM.Qwen3_5MoeDecoderLayer, MM.Qwen3_5MoeTextRotaryEmbedding),
}


class MTPHead(torch.nn.Module):
    """The head's parameters under their released names (mtp.<name>) - transformers' classes."""

    def __init__(self, cfg, full_layer_idx, kind="dense"):
        super().__init__()
        Norm, Layer, _ = CLASSES[kind]
        H = cfg.hidden_size
        self.fc = torch.nn.Linear(2 * H, H, bias=False)
        self.pre_fc_norm_embedding = Norm(H, eps=cfg.rms_norm_eps)
        self.pre_fc_norm_hidden = Norm(H, eps=cfg.rms_norm_eps)
        self.norm = Norm(H, eps=cfg.rms_norm_eps)
        assert cfg.layer_types[full_layer_idx] == "full_attention"
        self.layers = torch.nn.ModuleList([Layer(cfg, full_layer_idx)])
        assert self.layers[0].block_type == "full_attention"
        if kind == "moe":
            assert type(self.layers[0].mlp) is MM.Qwen3_5MoeSparseMoeBlock
            assert self.layers[0].mlp.experts.config._experts_implementation == "eager"


@torch.no_grad()
def mtp_forward(model, head, rotary, tokens, hidden, positions):
    """One causal pass of the head over pairs (hidden[t], tokens[t]) at positions[t]."""
    e = model.get_input_embeddings()(tokens)                               # [1, T, H]
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


def build(kind, seed):
    """The model in memory (float32, reinitialised) and its head; the text config."""
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    if kind == "dense":
        cfg = transformers.Qwen3_5TextConfig(**TEXT)
        model = transformers.Qwen3_5ForCausalLM._from_config(cfg, dtype=torch.float32, attn_implementation="eager")
        reinit_(model.named_parameters(), gen)
        tcfg = model.config
    else:
        cfg = transformers.Qwen3_5MoeConfig(text_config=MOE["text"], vision_config=MOE["vision"],
                                            tie_word_embeddings=False)
        model = transformers.Qwen3_5MoeForConditionalGeneration._from_config(
            cfg, dtype=torch.float32, attn_implementation="eager", experts_implementation="eager")
        reinit_(model.named_parameters(), gen, router_scale=MOE["router_scale"])
        tcfg = model.config.text_config
    head = MTPHead(tcfg, full_layer_idx=3, kind=kind)
    reinit_(head.named_parameters(), gen, router_scale=MOE["router_scale"])
    return model, head


def write_checkpoint(kind, model, head, folder):
    if os.path.isdir(folder):
        shutil.rmtree(folder)
    model.to(torch.bfloat16).save_pretrained(folder, safe_serialization=True)
    st_path = os.path.join(folder, "model.safetensors")
    tensors = load_file(st_path)
    assert not any(k.startswith("mtp.") for k in tensors)
    for name, p in head.state_dict().items():  # MoE experts: fused, as transformers holds them
        tensors["mtp." + name] = p.detach().to(torch.bfloat16).contiguous()
    save_file(tensors, st_path, metadata={"format": "pt"})
    cpath = os.path.join(folder, "config.json")
    with open(cpath) as f:
        conf = json.load(f)
    (conf if kind == "dense" else conf["text_config"])["mtp_num_hidden_layers"] = 1
    with open(cpath, "w") as f:
        json.dump(conf, f, indent=2, sort_keys=True)
        f.write("\n")
    return st_path


def compute(kind, folder, st_path):
    """Everything from the weights as stored: the target through from_pretrained (which drops
    mtp.*), the head from the file's mtp.* tensors."""
    if kind == "dense":
        model = transformers.Qwen3_5ForCausalLM.from_pretrained(folder, dtype=torch.float32,
                                                                attn_implementation="eager").eval()
        tcfg = model.config
    else:
        model, info = transformers.Qwen3_5MoeForConditionalGeneration.from_pretrained(
            folder, dtype=torch.float32, attn_implementation="eager", experts_implementation="eager",
            output_loading_info=True)
        model.eval()
        assert not info["missing_keys"] and not info["unexpected_keys"], info
        tcfg = model.config.text_config
    head = MTPHead(tcfg, full_layer_idx=3, kind=kind).eval()
    with safe_open(st_path, "pt") as f:
        sd = {k[4:]: f.get_tensor(k).to(torch.float32) for k in f.keys() if k.startswith("mtp.")}
    head.load_state_dict(sd, strict=True)  # every mtp.* tensor, nothing else
    rotary = CLASSES[kind][2](config=tcfg)

    gen = torch.Generator().manual_seed(PROMPT_SEED)
    prompt = torch.randint(0, 255, (1, PROMPT_LEN), generator=gen)
    rec = [RouterRecorder(model), RouterRecorder(head)] if kind == "moe" else []
    # every MoE layer's router is watched: the target's 4 and the head's one
    assert [len(r.handles) for r in rec] == ([tcfg.num_hidden_layers, 1] if rec else [])
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
    gaps = [r.min_gap for r in rec]
    for r in rec:
        r.remove()
    return dict(prompt=prompt, logits=logits, h=h, nxt=nxt, tokens=tokens, lg=lg, o=o, d1=d1, lg2=lg2, o2=o2,
                n=n, router_gaps=gaps)


def margins_of(x):
    top2 = x.topk(2, dim=-1).values
    return (top2[..., 0] - top2[..., 1]).reshape(-1)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="tests/data/model")
    ap.add_argument("--moe", action="store_true", help="the MoE checkpoint hf-tiny-mtp-moe-bf16")
    args = ap.parse_args()
    torch.set_num_threads(1)
    kind = "moe" if args.moe else "dense"
    name = MOE["name"] if args.moe else NAME
    folder = os.path.join(args.out, name)
    seeds = range(MOE["seed"], MOE["seed"] + MAX_SEED_ATTEMPTS) if args.moe else [SEED]
    for seed in seeds:
        model, head = build(kind, seed)
        st_path = write_checkpoint(kind, model, head, folder)
        r = compute(kind, folder, st_path)
        margins = margins_of(r["lg"][0]).tolist()
        if not args.moe:
            break
        gap = min(r["router_gaps"])
        ok = (gap >= MIN_ROUTER_GAP and min(margins) >= MIN_MARGIN
              and float(margins_of(r["lg2"][0, r["n"]])[0]) >= MIN_MARGIN
              and float(margins_of(r["logits"][0, -1])[0]) >= MIN_MARGIN)
        print(f"seed {seed}: min router gap {gap:.3g} (target {r['router_gaps'][0]:.3g}, head "
              f"{r['router_gaps'][1]:.3g}), min head margin {min(margins):.3g}: {'ok' if ok else 'next'}")
        if ok:
            break
    else:
        raise RuntimeError(f"no seed in {seeds} passes the router-gap / margin criteria")

    n = r["n"]
    golden = {
        "prompt": r["prompt"][0].to(torch.int32),
        "next_tokens": r["tokens"][0].to(torch.int32),
        "hidden": r["h"][0].contiguous(),
        "target_logits": r["logits"][0].contiguous(),
        "mtp_logits": r["lg"][0].contiguous(),
        "mtp_hidden": r["o"][0].contiguous(),
        "chain_token": torch.tensor([r["d1"]], dtype=torch.int32),
        "chain_logits": r["lg2"][0, n].contiguous(),
        "chain_hidden": r["o2"][0, n].contiguous(),
    }
    meta = {
        "format": "mtp-golden",
        "checkpoint": name,
        "transformers_version": transformers.__version__,
        "torch_version": torch.__version__,
        "seed": str(seed),
        "prompt_seed": str(PROMPT_SEED),
        "dtype_on_disk": "BF16",
        "dtype_of_reference": "float32",
        "conventions": "h after model.norm; cat[embedding, hidden]; pair (h_t, x_{t+1}) at position t; "
                       "chained step takes the output after mtp.norm (docs/mtp.md)",
        "min_margin": f"{min(margins):.4g}",
        "note": "transformers Qwen3_5DecoderLayer(full_attention) + Qwen3_5RMSNorm + nn.Linear fc, "
                "eager attention, float32 on the bf16 weights",
    }
    if args.moe:
        meta["note"] = ("transformers Qwen3_5MoeDecoderLayer(full_attention; mlp Qwen3_5MoeSparseMoeBlock, "
                        "eager experts) + Qwen3_5MoeRMSNorm + nn.Linear fc, eager attention, float32 on the "
                        "bf16 weights; target Qwen3_5MoeForConditionalGeneration")
        meta["experts_layout"] = ("decoder per expert (save_pretrained); mtp fused "
                                  "mtp.layers.0.mlp.experts.gate_up_proj [E,2I,H] / down_proj [E,H,I]")
        meta["min_router_gap"] = f"{min(r['router_gaps']):.4g}"
    gpath = os.path.join(args.out, name + ".mtp-golden.safetensors")
    save_file(golden, gpath, metadata=meta)
    print(f"transformers {transformers.__version__}, torch {torch.__version__}")
    print(f"wrote {folder} ({os.path.getsize(st_path)} B model.safetensors) and {gpath} "
          f"({os.path.getsize(gpath)} B)")
    print(f"prompt {r['prompt'][0].tolist()}, next {r['nxt']}, drafts {r['lg'][0].argmax(-1).tolist()}, "
          f"chained {r['d1']}")
    print(f"min top1-top2 margin of the head's logits {min(margins):.4g}; logits max |.| "
          f"{float(r['lg'].abs().max()):.3g}")


if __name__ == "__main__":
    main()
