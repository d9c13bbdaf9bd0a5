#!/usr/bin/env python3
"""Dump gated-delta-rule *gradient* goldens computed by PyTorch autograd through
transformers' own reference functions.

    transformers.models.qwen3_5.modeling_qwen3_5.torch_chunk_gated_delta_rule
    transformers.models.qwen3_5.modeling_qwen3_5.torch_recurrent_gated_delta_rule

(falling back to transformers.models.qwen3_next.modeling_qwen3_next).  The script does
NOT implement the delta rule nor its backward: it makes seeded float32 inputs and upstream
gradients, runs transformers' function, and lets autograd differentiate

    L = sum(d_out * out) + sum(d_final_state * final_state)

with respect to q, k (before the in-kernel l2norm), v, g, beta and initial_state.

float64.  Both functions cast their inputs with `.to(torch.float32)`, so float64 inputs
alone would still run in float32.  The script runs the functions' own code objects (the
bytecode transformers ships, unchanged) with the name `torch` in their globals bound to a
view of torch whose `float32` is `torch.float64`; nothing else differs.  Every case is
cross-checked: the float64 run against the stock float32 function (forward), and the
chunk form against the recurrent form in float64 (forward and every gradient).

Output format: ../shared/golden-samples/deltarule_grad (README.md, "Golden files"):
  tensors (F32): q, k [B,T,Hk,Dk]; v [B,T,Hv,Dv]; g, beta [B,T,Hv]; optional initial_state
    [B,Hv,Dk,Dv]; d_out [B,T,Hv,Dv]; optional d_final_state [B,Hv,Dk,Dv] (absent: zero);
    expected out, final_state, dq, dk [B,T,Hk,Dk], dv, dg, dbeta, d_initial_state (when
    initial_state).
  metadata: as dump_deltarule_goldens.py plus compute_dtype float64.

Usage:
    python3 ref/hf/dump_deltarule_grad_goldens.py --out tests/data --case all
    python3 ref/hf/dump_deltarule_grad_goldens.py --check-sample FILE   # autograd vs a golden
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import types

import torch
import torch.nn.functional as F
from safetensors import safe_open
from safetensors.torch import save_file

import transformers

_CANDIDATE_MODULES = (
    "transformers.models.qwen3_5.modeling_qwen3_5",
    "transformers.models.qwen3_next.modeling_qwen3_next",
)
_NAMES = ("torch_recurrent_gated_delta_rule", "torch_chunk_gated_delta_rule")


def _find_raw(obj, mod, name, depth=0, seen=None):
    """The plain function `name` defined in mod's file, behind the hub/fla dispatchers.

    transformers 5.23 wraps it with functools.wraps (inspect.unwrap finds it); 5.25 turns
    the module-level name into a kernels `Func` module whose forward closes over the
    dispatcher, which closes over the function.  Follow __wrapped__ and closures."""
    seen = set() if seen is None else seen
    if id(obj) in seen or depth > 8:
        return None
    seen.add(id(obj))
    fn = getattr(obj, "__func__", obj)
    code = getattr(fn, "__code__", None)
    if code is not None:
        if code.co_filename == mod.__file__ and fn.__name__ == name:
            return fn
        for cell in fn.__closure__ or ():
            try:
                found = _find_raw(cell.cell_contents, mod, name, depth + 1, seen)
            except ValueError:  # empty cell
                continue
            if found is not None:
                return found
    for nxt in (getattr(obj, "__wrapped__", None), getattr(type(obj), "forward", None)):
        if nxt is not None:
            found = _find_raw(nxt, mod, name, depth + 1, seen)
            if found is not None:
                return found
    return None


def _load_reference():
    last = None
    for modname in _CANDIDATE_MODULES:
        try:
            mod = importlib.import_module(modname)
        except ImportError as e:
            last = e
            continue
        fns = {n: _find_raw(getattr(mod, n, None), mod, n) for n in _NAMES}
        if all(fns.values()):
            return modname, fns
        last = f"{modname} has no plain {[n for n, f in fns.items() if f is None]}"
    raise ImportError(f"no transformers module with the gated delta rule references: {last}")


REF_MODULE, REF_FNS = _load_reference()


class _TorchF64(types.ModuleType):
    """torch, except that torch.float32 is torch.float64."""

    def __init__(self):
        super().__init__("torch")
        self.float32 = torch.float64

    def __getattr__(self, name):
        return getattr(torch, name)


def _as_float64(fn):
    """The same code object, run with `torch` bound to _TorchF64 in its globals."""
    glb = dict(fn.__globals__)
    glb["torch"] = _TorchF64()
    f = types.FunctionType(fn.__code__, glb, fn.__name__, fn.__defaults__, fn.__closure__)
    f.__kwdefaults__ = fn.__kwdefaults__
    return f


REF64 = {n: _as_float64(f) for n, f in REF_FNS.items()}

# name -> spec.  No seq_len: transformers' functions have no padding.
CASES = {
    # chunk form over 3 chunks (64 + 64 + 2), initial state, both upstream gradients
    "chunk_t130_b1_h1_d32_l2_state": dict(
        alias="a", fn="torch_chunk_gated_delta_rule", B=1, T=130, Hk=1, Hv=1, Dk=32, Dv=32,
        l2=True, state=True, dfs=True, gate="logsigmoid", seed=35101),
    # chunk form, GQA Hk=1 -> Hv=2, Dk != Dv, B=2, T = 65 (one token past a chunk), no state
    "chunk_gqa_t65_b2_hk1_hv2_dk32_dv24_l2": dict(
        alias="b", fn="torch_chunk_gated_delta_rule", B=2, T=65, Hk=1, Hv=2, Dk=32, Dv=24,
        l2=True, state=False, dfs=True, gate="logsigmoid", seed=35102),
    # recurrent form, GQA Hk=2 -> Hv=4, l2norm off, initial state, no d_final_state (zero)
    "recurrent_gqa_t20_b1_hk2_hv4_d16_nol2_state": dict(
        alias="c", fn="torch_recurrent_gated_delta_rule", B=1, T=20, Hk=2, Hv=4, Dk=16, Dv=16,
        l2=False, state=True, dfs=False, gate="softplus", seed=35103, qk_std=16 ** -0.5),
    # recurrent form, T = 64 exactly (a chunk boundary for the chunked backward), strong decay
    "recurrent_t64_b1_h2_d16_l2_strongdecay": dict(
        alias="d", fn="torch_recurrent_gated_delta_rule", B=1, T=64, Hk=2, Hv=2, Dk=16, Dv=16,
        l2=True, state=True, dfs=True, gate="uniform_m5_0", seed=35104),
}

GATE_DESC = {
    "logsigmoid": "g = logsigmoid(N(0,1))",
    "softplus": "g = -0.5*softplus(N(0,1))",
    "uniform_m5_0": "g = -5*U[0,1) (strong decay)",
}

# Element-wise, on outputs and gradients: the expected values are float64 (exact to ~1e-12
# before the cast to float32); the slack is for a float32 kernel's own rounding, which
# the backward accumulates over the whole sequence.
ATOL, RTOL = "2e-5", "2e-4"


def _inputs(spec):
    gen = torch.Generator().manual_seed(spec["seed"])
    B, T, Hk, Hv, Dk, Dv = (spec[x] for x in ("B", "T", "Hk", "Hv", "Dk", "Dv"))
    randn = lambda *s: torch.randn(*s, generator=gen, dtype=torch.float32)  # noqa: E731
    std = spec.get("qk_std", 1.0)
    q, k, v = randn(B, T, Hk, Dk) * std, randn(B, T, Hk, Dk) * std, randn(B, T, Hv, Dv)
    if spec["gate"] == "logsigmoid":
        g = F.logsigmoid(randn(B, T, Hv))
    elif spec["gate"] == "softplus":
        g = -0.5 * F.softplus(randn(B, T, Hv))
    else:
        g = -5.0 * torch.rand(B, T, Hv, generator=gen, dtype=torch.float32)
    beta = torch.sigmoid(randn(B, T, Hv))
    init = randn(B, Hv, Dk, Dv) * 0.5 if spec["state"] else None
    d_out = randn(B, T, Hv, Dv)
    dfs = randn(B, Hv, Dk, Dv) if spec["dfs"] else None
    assert (g <= 0).all()
    return dict(q=q, k=k, v=v, g=g, beta=beta, initial_state=init, d_out=d_out, d_final_state=dfs)


def autograd(fn, x, l2):
    """out, final_state and the gradients of L, all float64."""
    names = ["q", "k", "v", "g", "beta"] + (["initial_state"] if x["initial_state"] is not None else [])
    leaf = {n: x[n].to(torch.float64).requires_grad_(True) for n in names}
    o, st = fn(leaf["q"], leaf["k"], leaf["v"], leaf["g"], leaf["beta"],
               initial_state=leaf.get("initial_state"), output_final_state=True,
               use_qk_l2norm_in_kernel=l2)
    assert o.dtype == torch.float64 and st.dtype == torch.float64, (o.dtype, st.dtype)
    loss = (x["d_out"].to(torch.float64) * o).sum()
    if x["d_final_state"] is not None:
        loss = loss + (x["d_final_state"].to(torch.float64) * st).sum()
    grads = torch.autograd.grad(loss, [leaf[n] for n in names])
    gname = {"q": "dq", "k": "dk", "v": "dv", "g": "dg", "beta": "dbeta", "initial_state": "d_initial_state"}
    res = {"out": o.detach(), "final_state": st.detach()}
    res.update({gname[n]: d for n, d in zip(names, grads)})
    return res


def _rel(a, b):
    return ((a - b).norm() / b.norm().clamp_min(1e-300)).item()


def run_case(name, spec, out_dir):
    x = _inputs(spec)
    fn_name = spec["fn"]
    other = [n for n in _NAMES if n != fn_name][0]
    res = autograd(REF64[fn_name], x, spec["l2"])
    # cross-checks: the other form in float64, and the stock float32 function's forward
    alt = autograd(REF64[other], x, spec["l2"])
    worst = max(_rel(alt[n], res[n]) for n in res)
    assert worst < 1e-10, f"{name}: chunk and recurrent float64 disagree ({worst:.3g})"
    with torch.no_grad():
        o32, s32 = REF_FNS[fn_name](x["q"], x["k"], x["v"], x["g"], x["beta"],
                                     initial_state=x["initial_state"], output_final_state=True,
                                     use_qk_l2norm_in_kernel=spec["l2"])
    f32 = max(_rel(o32.double(), res["out"]), _rel(s32.double(), res["final_state"]))
    assert f32 < 1e-4, f"{name}: float32 function and float64 run disagree ({f32:.3g})"
    for n, t in res.items():
        assert torch.isfinite(t).all(), n

    tensors = {n: x[n] for n in ("q", "k", "v", "g", "beta", "initial_state", "d_out", "d_final_state")
               if x[n] is not None}
    tensors.update({n: t.to(torch.float32) for n, t in res.items()})
    tensors = {n: t.contiguous() for n, t in tensors.items()}
    Dk, rep = spec["Dk"], spec["Hv"] // spec["Hk"]
    meta = {
        "kernel": "gated_delta_rule",
        "case": f"hf_deltarule_grad_{name}",
        "use_qk_l2norm": "1" if spec["l2"] else "0",
        "l2norm_eps": "1e-6",
        "scale": repr(Dk ** -0.5),
        "qk_heads_repeat": "interleave",
        "atol": ATOL,
        "rtol": RTOL,
        "source": f"transformers {transformers.__version__} {fn_name}, torch {torch.__version__} autograd",
        "function": f"{REF_MODULE}.{fn_name}",
        "torch_version": torch.__version__,
        "compute_dtype": "float64",
        "seed": str(spec["seed"]),
        "note": (
            f"out, final_state and the gradients of sum(d_out*out) + sum(d_final_state*final_state) "
            f"(d_final_state {'given' if x['d_final_state'] is not None else 'absent: zero'}) with respect to "
            f"q, k (before the in-kernel l2norm), v, g, beta"
            + (", initial_state" if x["initial_state"] is not None else "")
            + f": torch.autograd through transformers' own {fn_name} ({REF_MODULE}), its code object run "
            f"in float64 (torch.float32 rebound to float64 in its globals; it casts to float32 otherwise). "
            f"Cross-checked: the {other} form in float64 agrees to {worst:.1e} (normwise, worst tensor); "
            f"the stock float32 function's out/final_state to {f32:.1e}. "
            f"{GATE_DESC[spec['gate']]}; beta = sigmoid(N(0,1)); q, k = {spec.get('qk_std', 1.0):.6g}*N(0,1); "
            f"v, d_out, d_final_state = N(0,1); initial_state 0.5*N(0,1). "
            + (f"Heads Hk={spec['Hk']} -> Hv={spec['Hv']} interleaved (value head h reads key head h//{rep}); "
               f"dq, dk summed over the value heads of a key head. " if rep > 1 else "")
            + f"Generated by ref/hf/dump_deltarule_grad_goldens.py (seed {spec['seed']})."
        ),
    }
    if fn_name == "torch_chunk_gated_delta_rule":
        meta["chunk_size"] = "64"
    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(out_dir, f"hf_deltarule_grad_{name}.safetensors")
    save_file(tensors, path, metadata=meta)
    print(f"wrote {path} ({os.path.getsize(path)} bytes) via {fn_name} in float64; "
          f"{other} agrees to {worst:.1e}, float32 forward to {f32:.1e}")
    return path


def check_sample(path):
    """Autograd through both functions on a gradient golden's inputs, against its tensors."""
    with safe_open(path, "pt") as f:
        t = {n: f.get_tensor(n) for n in f.keys()}
        meta = f.metadata()
    x = {n: t.get(n) for n in ("q", "k", "v", "g", "beta", "initial_state", "d_out", "d_final_state")}
    l2 = meta.get("use_qk_l2norm") == "1"
    for fn_name in _NAMES:
        res = autograd(REF64[fn_name], x, l2)
        print(f"{path} vs {fn_name} (float64 autograd):")
        for n, r in res.items():
            if n in t:
                e = t[n].double()
                print(f"  {n:16s} normwise {_rel(r, e):.2e}  max|diff| {(r - e).abs().max().item():.2e}")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    names = list(CASES) + [s["alias"] for s in CASES.values()]
    ap.add_argument("--out", default="tests/data")
    ap.add_argument("--case", default="all", choices=names + ["all"])
    ap.add_argument("--check-sample", metavar="FILE", help="compare autograd with a gradient golden instead")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    print(f"transformers {transformers.__version__}, torch {torch.__version__}, reference module {REF_MODULE}")
    if args.check_sample:
        check_sample(args.check_sample)
        return 0
    for name, spec in CASES.items():
        if args.case in ("all", name, spec["alias"]):
            run_case(name, spec, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
