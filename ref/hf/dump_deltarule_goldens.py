#!/usr/bin/env python3
"""Dump gated-delta-rule golden fixtures computed by *transformers' own* reference code.

The expected `out` / `final_state` in every file come from transformers' pure-PyTorch
reference functions for Qwen3.5's Gated DeltaNet:

    transformers.models.qwen3_5.modeling_qwen3_5.torch_recurrent_gated_delta_rule
    transformers.models.qwen3_5.modeling_qwen3_5.torch_chunk_gated_delta_rule

(falling back to transformers.models.qwen3_next.modeling_qwen3_next on versions without
qwen3_5).  This script does NOT implement the delta rule itself: it only makes seeded
inputs, calls those functions, and writes the results to safetensors.

Output format (same tensor names / metadata keys as shared/golden-samples/deltarule):
  tensors (all F32):
    q, k           [B, T, Hk, Dk]   un-repeated key heads
    v              [B, T, Hv, Dv]
    g, beta        [B, T, Hv]       g is a log-decay (<= 0): state *= exp(g_t)
    initial_state  [B, Hv, Dk, Dv]  optional
    out            [B, T, Hv, Dv]   expected output
    final_state    [B, Hv, Dk, Dv]  expected final recurrent state
  metadata (strings): kernel, case, use_qk_l2norm, l2norm_eps, scale, qk_heads_repeat,
    atol, rtol, source, function, compute_dtype, seed, chunk_size (chunk cases), note.

Usage:
    python ref/hf/dump_deltarule_goldens.py --out tests/data --case all
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import os
import sys

import torch
import torch.nn.functional as F
from safetensors.torch import save_file

import transformers

# --------------------------------------------------------------------------------------
# Locate transformers' reference functions.
# --------------------------------------------------------------------------------------

_CANDIDATE_MODULES = (
    "transformers.models.qwen3_5.modeling_qwen3_5",
    "transformers.models.qwen3_next.modeling_qwen3_next",  # older transformers
)


def _load_reference():
    last_err = None
    for modname in _CANDIDATE_MODULES:
        try:
            mod = importlib.import_module(modname)
        except ImportError as e:  # pragma: no cover - depends on installed version
            last_err = e
            continue
        fns = {}
        for name in ("torch_recurrent_gated_delta_rule", "torch_chunk_gated_delta_rule"):
            fn = getattr(mod, name, None)
            if fn is None:
                break
            # The module-level names are wrapped by use_kernel_func_from_hub_with_fallback,
            # which dispatches to the `fla` package / hub kernels when installed.  Unwrap
            # to the pure-PyTorch function defined in the modeling file so the goldens
            # always come from transformers' own reference code.
            raw = inspect.unwrap(fn)
            src = inspect.getsourcefile(raw) or ""
            if os.path.basename(src) != os.path.basename(mod.__file__):
                raise RuntimeError(
                    f"{modname}.{name} unwraps to {src!r}, not the modeling file; refusing to "
                    "use a non-reference implementation"
                )
            fns[name] = raw
        else:
            return modname, fns
    raise ImportError(f"no transformers module with the gated delta rule references: {last_err}")


REF_MODULE, REF_FNS = _load_reference()


def _accepts(fn, param: str) -> bool:
    """True if `fn` has an explicit parameter called `param` (not merely **kwargs)."""
    p = inspect.signature(fn).parameters.get(param)
    return p is not None and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)


def _compute_dtype(fn) -> torch.dtype:
    """Probe: feed float64 inputs and see which dtype the returned final state has.

    transformers' reference functions cast q/k/v/g/beta to float32 internally, in which
    case the state comes back float32 whatever the input dtype was.
    """
    gen = torch.Generator().manual_seed(0)
    x = lambda *s: torch.randn(*s, generator=gen, dtype=torch.float64)  # noqa: E731
    q, k, v = x(1, 3, 1, 4), x(1, 3, 1, 4), x(1, 3, 1, 4)
    g = F.logsigmoid(x(1, 3, 1))
    beta = torch.sigmoid(x(1, 3, 1))
    _, st = fn(q, k, v, g, beta, output_final_state=True, use_qk_l2norm_in_kernel=True)
    return st.dtype


# --------------------------------------------------------------------------------------
# Cases.
# --------------------------------------------------------------------------------------

# name -> spec.  `gate`: how g is drawn (always <= 0); `qk_std`: std of q/k draws.
CASES = {
    # (a) recurrent, MHA, no initial state, l2norm on
    "recurrent_t37_b1_h2_d16_l2": dict(
        alias="a", fn="torch_recurrent_gated_delta_rule", B=1, T=37, Hk=2, Hv=2, Dk=16, Dv=16,
        l2=True, state=False, gate="logsigmoid", seed=35001,
    ),
    # (b) chunk (chunk_size 64), GQA Hk=1 -> Hv=2, Dk != Dv, random initial state, l2norm on
    "chunk_gqa_t100_b2_hk1_hv2_dk32_dv24_l2_state": dict(
        alias="b", fn="torch_chunk_gated_delta_rule", B=2, T=100, Hk=1, Hv=2, Dk=32, Dv=24,
        l2=True, state=True, gate="logsigmoid", seed=35002,
    ),
    # (c) recurrent, GQA Hk=2 -> Hv=4, l2norm off; scale 0.3 requested if the function takes one
    "recurrent_gqa_t5_b1_hk2_hv4_d8_nol2": dict(
        alias="c", fn="torch_recurrent_gated_delta_rule", B=1, T=5, Hk=2, Hv=4, Dk=8, Dv=8,
        l2=False, state=False, gate="softplus", seed=35003, want_scale=0.3,
        qk_std=8 ** -0.5,  # keep |k|^2 ~ 1 so the un-normalised delta rule stays tame
    ),
    # (d) chunk at T=130 (not a multiple of 64: 3 chunks, last one padded), strong decay
    "chunk_t130_b1_h1_d64_l2_strongdecay": dict(
        alias="d", fn="torch_chunk_gated_delta_rule", B=1, T=130, Hk=1, Hv=1, Dk=64, Dv=64,
        l2=True, state=False, gate="uniform_m5_0", seed=35004,
    ),
}

GATE_DESC = {
    "logsigmoid": "g = logsigmoid(N(0,1))",
    "softplus": "g = -0.5*softplus(N(0,1))",
    "uniform_m5_0": "g = -5*U[0,1) (strong decay, g in (-5, 0])",
}

# Tolerances for comparing a C kernel against these files.  The reference runs in float32
# (chunk form: triangular solve over 64-token chunks), so allow for its own rounding plus
# the kernel's.  Looser rtol than atol-only because state entries can reach O(1).
TOL = {
    torch.float32: ("2e-5", "2e-4"),
    torch.float64: ("1e-6", "1e-5"),
}


def _gen_inputs(spec):
    gen = torch.Generator().manual_seed(spec["seed"])
    f32 = torch.float32
    B, T, Hk, Hv, Dk, Dv = (spec[x] for x in ("B", "T", "Hk", "Hv", "Dk", "Dv"))
    randn = lambda *s: torch.randn(*s, generator=gen, dtype=f32)  # noqa: E731
    qk_std = spec.get("qk_std", 1.0)
    q = randn(B, T, Hk, Dk) * qk_std
    k = randn(B, T, Hk, Dk) * qk_std
    v = randn(B, T, Hv, Dv)
    if spec["gate"] == "logsigmoid":
        g = F.logsigmoid(randn(B, T, Hv))
    elif spec["gate"] == "softplus":
        g = -0.5 * F.softplus(randn(B, T, Hv))
    elif spec["gate"] == "uniform_m5_0":
        g = -5.0 * torch.rand(B, T, Hv, generator=gen, dtype=f32)
    else:
        raise ValueError(spec["gate"])
    beta = torch.sigmoid(randn(B, T, Hv))
    init = randn(B, Hv, Dk, Dv) * 0.5 if spec["state"] else None
    assert (g <= 0).all()
    return q, k, v, g, beta, init


def _call(fn, q, k, v, g, beta, init, l2, extra):
    return fn(q, k, v, g, beta, initial_state=init, output_final_state=True,
              use_qk_l2norm_in_kernel=l2, **extra)


def run_case(name, spec, out_dir):
    fn_name = spec["fn"]
    fn = REF_FNS[fn_name]
    cdtype = _compute_dtype(fn)
    q, k, v, g, beta, init = _gen_inputs(spec)
    Hk, Hv, Dk = spec["Hk"], spec["Hv"], spec["Dk"]
    rep = Hv // Hk

    extra = {}
    scale_note = ""
    if "want_scale" in spec:
        if _accepts(fn, "scale"):
            extra["scale"] = spec["want_scale"]
        else:
            scale_note = (f" Requested scale {spec['want_scale']} NOT applied: {fn_name} has no "
                          "scale parameter (**kwargs would silently drop it), so its fixed "
                          "default 1/sqrt(Dk) is used and recorded.")
    if "scale" in extra:
        scale = float(extra["scale"])
    else:
        # Both reference functions hard-code query scaling by Dk**-0.5 (chunk: q * Dk**-0.5,
        # recurrent: q / Dk**0.5) after the optional l2norm.
        scale = Dk ** -0.5

    # Inputs to the function, in the dtype it computes in (it casts to fp32 internally
    # anyway, so float64 inputs would only matter if it did not).
    cast = lambda t: None if t is None else t.to(cdtype)  # noqa: E731
    args = [cast(t) for t in (q, k, v, g, beta, init)]

    # Grouped heads: Qwen3.5's GatedDeltaNet.forward passes q/k with Hk heads and the
    # reference function repeat_interleaves them to Hv heads itself.  Older versions
    # (qwen3_next) required the caller to repeat_interleave first: fall back to that.
    pre_repeated = False
    try:
        o, st = _call(fn, *args, l2=spec["l2"], extra=extra)
        if o.shape[2] != Hv:
            raise RuntimeError("function did not expand key heads")
    except (RuntimeError, ValueError):
        if rep == 1:
            raise
        pre_repeated = True
        a = list(args)
        a[0] = a[0].repeat_interleave(rep, dim=2)
        a[1] = a[1].repeat_interleave(rep, dim=2)
        o, st = _call(fn, *a, l2=spec["l2"], extra=extra)

    heads_note = ""
    if rep > 1:
        # Verify the head mapping is interleaved (value head h reads key head h // rep):
        # feeding explicitly repeat_interleave'd q/k must give bit-identical results, and
        # tiling (.repeat) must not.
        a = list(args)
        a[0] = a[0].repeat_interleave(rep, dim=2)
        a[1] = a[1].repeat_interleave(rep, dim=2)
        o2, st2 = _call(fn, *a, l2=spec["l2"], extra=extra)
        assert torch.equal(o, o2) and torch.equal(st, st2), "interleaved head mapping check failed"
        if Hk > 1:  # with a single key head, tiling and interleaving coincide
            a[0] = args[0].repeat(1, 1, rep, 1)
            a[1] = args[1].repeat(1, 1, rep, 1)
            o3, _ = _call(fn, *a, l2=spec["l2"], extra=extra)
            assert not torch.allclose(o, o3), "tiled head mapping unexpectedly matches"
        heads_note = (f" Heads: Hk={Hk} -> Hv={Hv} interleaved (value head h uses key head "
                      f"h//{rep}); q,k stored un-repeated; "
                      + ("q,k were repeat_interleave'd by this script before the call (as the "
                         "layer does in this version)." if pre_repeated else
                         "passed un-repeated exactly as Qwen3_5GatedDeltaNet.forward does, the "
                         "function repeat_interleaves internally (verified bit-identical to "
                         "pre-repeated input)."))

    assert torch.isfinite(o).all() and torch.isfinite(st).all()
    atol, rtol = TOL[cdtype]
    cdname = str(cdtype).replace("torch.", "")
    chunk = fn_name == "torch_chunk_gated_delta_rule"
    tensors = {
        "q": q, "k": k, "v": v, "g": g, "beta": beta,
        "out": o.to(torch.float32), "final_state": st.to(torch.float32),
    }
    if init is not None:
        tensors["initial_state"] = init
    tensors = {n: t.contiguous() for n, t in tensors.items()}
    meta = {
        "kernel": "gated_delta_rule",
        "case": f"hf_deltarule_{name}",
        "use_qk_l2norm": "1" if spec["l2"] else "0",
        "l2norm_eps": "1e-6",
        "scale": repr(scale),
        "qk_heads_repeat": "interleave",
        "atol": atol,
        "rtol": rtol,
        "source": f"transformers {transformers.__version__} {fn_name}",
        "function": f"{REF_MODULE}.{fn_name}",
        "torch_version": torch.__version__,
        "compute_dtype": cdname,
        "seed": str(spec["seed"]),
        "note": (
            f"Expected out/final_state computed by transformers' own {fn_name} "
            f"({REF_MODULE}), unwrapped from its hub/fla dispatcher, on these float32 inputs. "
            + (f"Computed in float32: the function casts q/k/v/g/beta to float32 internally, "
               f"so float64 is not possible. " if cdtype == torch.float32 else
               f"Computed in {cdname} (float64 inputs accepted by the function). ")
            + f"g is a log-decay: state *= exp(g_t) per token "
            f"({GATE_DESC[spec['gate']]}); beta = sigmoid(N(0,1)); "
            f"q, k = {spec.get('qk_std', 1.0):.6g}*N(0,1), v = N(0,1). "
            + ("l2norm: x * rsqrt(sum(x^2) + 1e-6) on q and k, then q *= scale. "
               if spec["l2"] else "No l2norm; q *= scale. ")
            + f"initial_state: {'random 0.5*N(0,1)' if init is not None else 'none (zeros)'}."
            + (f" chunk_size 64; T={spec['T']} padded to a multiple of 64 internally." if chunk else "")
            + heads_note + scale_note
            + f" Generated by ref/hf/dump_deltarule_goldens.py (seed {spec['seed']})."
        ),
    }
    if chunk:
        meta["chunk_size"] = "64"
    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(out_dir, f"hf_deltarule_{name}.safetensors")
    save_file(tensors, path, metadata=meta)
    shapes = ", ".join(f"{n}{list(t.shape)}" for n, t in tensors.items())
    print(f"wrote {path} ({os.path.getsize(path)} bytes) via {fn_name} in {cdname}, "
          f"scale={meta['scale']}: {shapes}")
    return path


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    names = list(CASES) + [s["alias"] for s in CASES.values()]
    ap.add_argument("--out", default="tests/data", help="output directory (default tests/data)")
    ap.add_argument("--case", default="all", choices=names + ["all"],
                    help="case name (or its letter alias a-d), or 'all'")
    args = ap.parse_args(argv)

    torch.set_num_threads(1)  # reproducible reduction order -> byte-identical reruns
    print(f"transformers {transformers.__version__}, torch {torch.__version__}, "
          f"reference module {REF_MODULE}")
    for fn_name, fn in REF_FNS.items():
        print(f"  {fn_name}{inspect.signature(fn)}")
    for name, spec in CASES.items():
        if args.case in ("all", name, spec["alias"]):
            run_case(name, spec, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
