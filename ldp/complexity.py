"""Parameter and fvcore FLOP counts for every registered model and for the CLIP image tower.

fvcore counts one multiply-add as ONE flop, so every number here is MACs (multiply-accumulates).

Large inputs are not traced directly (a direct fvcore trace keeps every intermediate alive: Restormer at
1120x1680 needs more than 21 GB). Instead each model is traced at a few small sizes and the per-operator counts
are extrapolated (method ``"extrapolated"``):

* two sizes -> ``count = a*H*W + b`` (affine in the pixel count, as in the parity fixtures' README);
* a 2x2 grid of sizes -> ``count = a*H*W + b*H + c*W + d`` (bilinear; exact for DeepRFT, whose rfft output
  width ``W/2+1`` adds an H-proportional term);
* FFT counts (N log N, not polynomial) are re-evaluated call by call at the target size from the traced shapes.

Entries: the DVC stage ``complexity`` (``python -m pipelines.complexity``: every model, writes
``results/complexity.json`` and ``.md``) and ``ldp complexity --model NAME`` (one model). The report depends only on
the code and params section ``complexity``; the comparison with the official code's counts is in
tests/test_complexity.py.
"""

from __future__ import annotations

import math
import platform
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from importlib import import_module
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ldp.fsutil import atomic_write_json, atomic_write_text
from ldp.paper_results import PAPER_COMPLEXITY, PAPER_COMPLEXITY_SOURCE

MAC_NOTE = (
    "fvcore counts one multiply-add as ONE flop: every count here is MACs (multiply-accumulates); "
    "G = 1e9 MACs. Ops listed as unsupported were skipped by fvcore (counted as 0)."
)
FFT_NOTE = (
    "FFT handle (ours): a transform over N = product of the transformed (real-signal) sizes costs "
    "1.25*N*log2(N) MACs per plane when one side is real (rfft*/irfft*) and 2.5*N*log2(N) when complex "
    "(fft*/ifft*), i.e. half of the usual 2.5/5*N*log2(N) flop convention for split-radix FFTs."
)
ATTENTION_NOTE = (
    "Attention handles (ours): aten::scaled_dot_product_attention = L*S*E (Q K^T) + L*S*Ev (A V) MACs per "
    "batch*head; aten::_native_multi_head_attention (PyTorch's fast path, used by nn.MultiheadAttention in "
    "eval/no_grad) = the q/k/v and output projections plus the two attention products."
)

# Paper values (LDP supplementary, Sec. 1): "flops" at the DPD-blur DP-pair resolution 1120x1680; the paper does
# not say whether a multiply-add counts as one flop or two.
PAPER_VALUES, PAPER_SOURCE = PAPER_COMPLEXITY, PAPER_COMPLEXITY_SOURCE

class ComplexityError(RuntimeError):
    """A model or size cannot be counted; the message names the model, size or params key."""


@dataclass(frozen=True)
class ComplexityConfig:
    """params.yaml section ``complexity``."""

    models: str | tuple[str, ...] = "all"  # "all" = every registered model, or a list of registry names
    # modules imported first so that models registered outside the repo (an experiment's `module:`) are counted
    modules: tuple[str, ...] = ()
    sizes: tuple[tuple[int, int], ...] = ((256, 256), (1120, 1680))  # (H, W) of the DP input
    # sizes with H*W at most this are traced directly; larger ones are extrapolated from fit_sizes
    direct_max_pixels: int = 256 * 512
    # 2 sizes: affine in H*W; 4 sizes on a 2x2 grid: bilinear in (H, W)
    fit_sizes: tuple[tuple[int, int], ...] = ((128, 128), (128, 256), (256, 128), (256, 256))
    # models also traced directly at verify_size, to check the extrapolation (costs RAM and time)
    verify_models: tuple[str, ...] = ()
    verify_size: tuple[int, int] = (1120, 1680)
    # build overrides per model: DeepRFT is counted in its eval (inference) weight form, the one that is run
    model_overrides: dict[str, dict[str, Any]] = field(
        default_factory=lambda: {"deeprft": {"inference": True}, "deeprft-dp": {"inference": True}}
    )
    clip_models: tuple[str, ...] = ("ViT-B-32", "ViT-B-16", "RN50")
    clip_patches: int = 1176  # 28 x 42 patches of 40 px for a 1120x1680 image, each resized to 224x224
    # ViT towers also counted once on the whole image at the largest size (how the paper's 220 G comes out)
    clip_whole_image: tuple[str, ...] = ("ViT-B-32",)
    num_threads: int = 0  # torch CPU threads for the traces; 0 = torch's default
    out_json: str = "results/complexity.json"
    out_md: str = "results/complexity.md"


# ---------------------------------------------------------------------------------------------- fvcore handles


def _shape(val: Any) -> list[int] | None:
    try:
        if val.isCompleteTensor():
            return list(val.type().sizes())
    except RuntimeError:
        return None
    return None


def _const(val: Any) -> Any:
    try:
        return val.toIValue()
    except RuntimeError:
        return None


@dataclass
class FftCall:
    """One traced FFT: the real-signal tensor shape and the transformed axes, to re-evaluate at another size."""

    op: str
    shape: tuple[int, ...]  # real-signal tensor shape (N x C x H x W for image features)
    axes: tuple[int, ...]  # transformed axes (non-negative)
    complex_only: bool
    trace_hw: tuple[int, int]

    @property
    def planes(self) -> int:
        return math.prod(self.shape) // max(math.prod(self.dims), 1)

    @property
    def dims(self) -> tuple[int, ...]:
        return tuple(self.shape[a] for a in self.axes)

    def macs(self, target_hw: tuple[int, int] | None = None) -> int:
        shape = list(self.shape)
        if target_hw is not None and len(shape) >= 2:
            # the tensor's last two axes are image axes: they scale with the input's H and W
            for axis, trace_len, target_len in ((-2, self.trace_hw[0], target_hw[0]),
                                                (-1, self.trace_hw[1], target_hw[1])):
                scaled = Fraction(shape[axis]) * target_len / trace_len
                if scaled.denominator != 1:
                    raise ComplexityError(
                        f"{self.op}: an axis of {shape[axis]} at {self.trace_hw} does not scale to an integer "
                        f"at {target_hw}"
                    )
                shape[axis] = int(scaled)
        dims = [shape[a] for a in self.axes]
        return fft_macs(math.prod(shape) // max(math.prod(dims), 1), dims, self.complex_only)


def fft_macs(planes: int, dims: Sequence[int], complex_only: bool) -> int:
    """MACs of ``planes`` FFTs over axes ``dims`` (see FFT_NOTE)."""
    n = math.prod(dims)
    if n <= 1:
        return 0
    per_plane = (2.5 if complex_only else 1.25) * n * math.log2(n)
    return int(round(planes * per_plane))


# op -> (index of the dim argument, which tensor holds the real signal, complex on both sides)
_FFT_OPS: dict[str, tuple[int | None, str, bool]] = {
    "aten::fft_rfft": (2, "in", False),
    "aten::fft_irfft": (2, "out", False),
    "aten::fft_fft": (2, "in", True),
    "aten::fft_ifft": (2, "in", True),
    "aten::fft_rfft2": (2, "in", False),
    "aten::fft_irfft2": (2, "out", False),
    "aten::fft_fft2": (2, "in", True),
    "aten::fft_ifft2": (2, "in", True),
    "aten::fft_rfftn": (2, "in", False),
    "aten::fft_irfftn": (2, "out", False),
    "aten::fft_fftn": (2, "in", True),
    "aten::fft_ifftn": (2, "in", True),
    "aten::_fft_r2c": (1, "in", False),
    "aten::_fft_c2r": (1, "out", False),
    "aten::_fft_c2c": (1, "in", True),
}
def _fft_axes(op: str, ndim: int, dim_arg: Any) -> list[int]:
    """Transformed axes: the op's constant ``dim`` argument, else its default (last, last two, or all)."""
    if isinstance(dim_arg, int):
        dim_arg = [dim_arg]
    if isinstance(dim_arg, (list, tuple)) and dim_arg:
        return [d % ndim for d in dim_arg]
    base = op.split("::")[1]
    if base.endswith("2"):
        return [ndim - 2, ndim - 1]
    if base.endswith("n"):
        return list(range(ndim))
    return [ndim - 1]


class FftRecorder:
    """fvcore handle for FFT ops that also records each call for re-evaluation at another size."""

    def __init__(self) -> None:
        self.calls: list[FftCall] = []
        self.trace_hw: tuple[int, int] = (0, 0)

    def reset(self, trace_hw: tuple[int, int]) -> None:
        self.calls = []
        self.trace_hw = trace_hw

    def handle_for(self, op: str) -> Callable[[list[Any], list[Any]], Counter]:
        dim_index, signal_side, complex_only = _FFT_OPS[op]

        def handle(inputs: list[Any], outputs: list[Any]) -> Counter:
            shape = _shape(inputs[0] if signal_side == "in" else outputs[0])
            if shape is None:
                raise ComplexityError(f"{op}: tensor shape unknown in the trace")
            dim_arg = _const(inputs[dim_index]) if dim_index is not None and len(inputs) > dim_index else None
            axes = tuple(_fft_axes(op, len(shape), dim_arg))
            call = FftCall(op, tuple(shape), axes, complex_only, self.trace_hw)
            self.calls.append(call)
            return Counter({"fft": call.macs()})

        return handle


def sdpa_macs(inputs: list[Any], outputs: list[Any]) -> int:
    """aten::scaled_dot_product_attention: Q K^T plus A V."""
    q, k, v = (_shape(x) for x in inputs[:3])
    if q is None or k is None or v is None:
        raise ComplexityError("aten::scaled_dot_product_attention: shapes unknown in the trace")
    rows = math.prod(q[:-1])  # batch * heads * L
    return rows * k[-2] * q[-1] + rows * k[-2] * v[-1]


def native_mha_macs(inputs: list[Any], outputs: list[Any]) -> int:
    """aten::_native_multi_head_attention(query, key, value, embed_dim, num_head, qkv_weight, ...)."""
    q, k = _shape(inputs[0]), _shape(inputs[1])
    embed = _const(inputs[3])
    if q is None or k is None or not isinstance(embed, int):
        raise ComplexityError("aten::_native_multi_head_attention: shapes unknown in the trace")
    q_tokens = math.prod(q) // embed
    k_tokens = math.prod(k) // embed
    batch = q[0] if len(q) == 3 else 1
    seq_q, seq_k = q_tokens // batch, k_tokens // batch
    projections = q_tokens * embed * embed + 2 * k_tokens * embed * embed + q_tokens * embed * embed
    attention = 2 * batch * seq_q * seq_k * embed  # summed over heads: heads * (E/heads) = E
    return projections + attention


EXTRA_HANDLES = {
    "aten::scaled_dot_product_attention": sdpa_macs,
    "aten::_native_multi_head_attention": native_mha_macs,
}


# ---------------------------------------------------------------------------------------------- tracing


@dataclass
class Trace:
    """fvcore result at one input size."""

    hw: tuple[int, int]
    input_shape: tuple[int, ...]
    by_operator: dict[str, int]
    unsupported_ops: dict[str, int]
    fft_calls: list[FftCall] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def total(self) -> int:
        return int(sum(self.by_operator.values()))


def fvcore_count(model: nn.Module, inputs: tuple[torch.Tensor, ...], hw: tuple[int, int] | None = None) -> Trace:
    """Trace ``model(*inputs)`` once with fvcore plus our FFT and attention handles (no grad)."""
    from fvcore.nn import FlopCountAnalysis

    recorder = FftRecorder()
    recorder.reset(hw or tuple(inputs[0].shape[-2:]))
    start = time.perf_counter()
    model.eval()
    with torch.no_grad():
        analysis = FlopCountAnalysis(model, inputs)
        analysis.set_op_handle(**{op: recorder.handle_for(op) for op in _FFT_OPS}, **EXTRA_HANDLES)
        analysis.unsupported_ops_warnings(False)
        analysis.uncalled_modules_warnings(False)
        analysis.tracer_warnings("none")
        by_op = {k: int(round(v)) for k, v in analysis.by_operator().items()}
        unsupported = dict(sorted(analysis.unsupported_ops().items()))
    return Trace(
        hw=tuple(recorder.trace_hw),
        input_shape=tuple(inputs[0].shape),
        by_operator=dict(sorted(by_op.items())),
        unsupported_ops=unsupported,
        fft_calls=recorder.calls,
        seconds=time.perf_counter() - start,
    )


def param_counts(model: nn.Module) -> dict[str, int]:
    params = list(model.parameters())
    return {
        "params": sum(p.numel() for p in params),
        "trainable_params": sum(p.numel() for p in params if p.requires_grad),
        "buffers": sum(b.numel() for b in model.buffers()),
    }


def model_input(name: str, hw: tuple[int, int], seed: int = 0) -> tuple[torch.Tensor, str]:
    """A 1-sample input of the model's own kind (values in [0, 1], fixed seed)."""
    import ldp
    from ldp.models.inputs import make_input

    kind = ldp.get_spec(name).input_kind
    gen = torch.Generator().manual_seed(seed)
    h, w = hw
    left, right = (torch.rand(1, 3, h, w, generator=gen) for _ in range(2))
    blurmap = torch.rand(1, 1, h, w, generator=gen) if "blurmap" in kind else None
    return make_input(kind, left, right, blurmap), kind


def trace_registered(name: str, hw: tuple[int, int], model: nn.Module | None = None) -> Trace:
    import ldp

    model = model if model is not None else ldp.build_model(name)
    x, _ = model_input(name, hw)
    try:
        return fvcore_count(model, (x,), hw)
    except ComplexityError:
        raise
    except Exception as exc:  # fvcore/jit errors: say which model and size
        raise ComplexityError(f"model {name!r} at {hw[0]}x{hw[1]}: fvcore trace failed: {exc}") from exc


# ---------------------------------------------------------------------------------------------- extrapolation


def _fit_weights(fit_sizes: Sequence[tuple[int, int]], target: tuple[int, int]) -> list[Fraction]:
    """Exact interpolation weights so that count(target) = sum w_i * count(fit_sizes[i])."""
    th, tw = target
    if len(fit_sizes) == 2:
        (h1, w1), (h2, w2) = fit_sizes
        p1, p2, pt = h1 * w1, h2 * w2, th * tw
        if p1 == p2:
            raise ComplexityError(f"fit_sizes {list(fit_sizes)}: the two sizes need different pixel counts")
        t = Fraction(pt - p1, p2 - p1)
        return [1 - t, t]
    if len(fit_sizes) == 4:
        hs = sorted({h for h, _ in fit_sizes})
        ws = sorted({w for _, w in fit_sizes})
        if len(hs) != 2 or len(ws) != 2 or {(h, w) for h in hs for w in ws} != set(fit_sizes):
            raise ComplexityError(f"fit_sizes {list(fit_sizes)}: four sizes must form a 2x2 grid of H and W")
        lh = {hs[0]: Fraction(hs[1] - th, hs[1] - hs[0]), hs[1]: Fraction(th - hs[0], hs[1] - hs[0])}
        lw = {ws[0]: Fraction(ws[1] - tw, ws[1] - ws[0]), ws[1]: Fraction(tw - ws[0], ws[1] - ws[0])}
        return [lh[h] * lw[w] for h, w in fit_sizes]
    raise ComplexityError(f"fit_sizes {list(fit_sizes)}: give 2 sizes (affine in H*W) or 4 (2x2 grid)")


def extrapolate(traces: Sequence[Trace], target: tuple[int, int]) -> dict[str, Any]:
    """Per-operator extrapolation of fvcore counts to ``target`` from traces at the fit sizes."""
    sizes = [t.hw for t in traces]
    weights = _fit_weights(sizes, target)
    ops = sorted({op for t in traces for op in t.by_operator if op != "fft"})
    by_op: dict[str, int] = {}
    inexact: list[str] = []
    for op in ops:
        value = sum(w * t.by_operator.get(op, 0) for w, t in zip(weights, traces, strict=True))
        if value.denominator != 1:
            inexact.append(op)
        by_op[op] = int(round(value))
    # FFTs: same calls at every size, each re-evaluated at the target shape
    n_calls = {len(t.fft_calls) for t in traces}
    if len(n_calls) != 1:
        raise ComplexityError(f"FFT call count differs between fit sizes {sizes}: {sorted(n_calls)}")
    if traces[0].fft_calls:
        by_op["fft"] = sum(call.macs(target) for call in traces[0].fft_calls)
    unsupported = [t.unsupported_ops for t in traces]
    if any(u != unsupported[0] for u in unsupported):
        raise ComplexityError(f"skipped-op counts differ between fit sizes {sizes}: the graph depends on size")
    form = "a*H*W + b" if len(sizes) == 2 else "a*H*W + b*H + c*W + d"
    return {
        "by_operator": dict(sorted(by_op.items())),
        "unsupported_ops": dict(unsupported[0]),
        "fit": {"form": form, "fit_sizes": [list(s) for s in sizes], "non_integer_ops": inexact},
    }


# ---------------------------------------------------------------------------------------------- public API


def _hw_key(hw: Sequence[int]) -> str:
    return f"{hw[0]}x{hw[1]}"


def _row(method: str, input_shape: Sequence[int], by_op: dict[str, int], unsupported: dict[str, int],
         **extra: Any) -> dict[str, Any]:
    total = int(sum(by_op.values()))
    return {
        "method": method,
        "input_shape": list(input_shape),
        "macs": total,
        "gmacs": round(total / 1e9, 4),
        "by_operator": by_op,
        "unsupported_ops": unsupported,
        **extra,
    }


class _ModelCounter:
    """Builds one model and caches its traces, so several sizes share the fit traces."""

    def __init__(self, name: str, cfg: ComplexityConfig, overrides: dict[str, Any] | None = None):
        import ldp

        self.name = name
        self.cfg = cfg
        self.spec = ldp.get_spec(name)
        self.overrides = dict(cfg.model_overrides.get(name, {}) if overrides is None else overrides)
        try:
            self.model = ldp.build_model(name, **self.overrides).eval()
        except Exception as exc:
            raise ComplexityError(f"model {name!r}: cannot build with overrides {self.overrides}: {exc}") from exc
        self.traces: dict[tuple[int, int], Trace] = {}

    def trace(self, hw: tuple[int, int]) -> Trace:
        hw = (int(hw[0]), int(hw[1]))
        if hw not in self.traces:
            self.traces[hw] = trace_registered(self.name, hw, self.model)
        return self.traces[hw]

    def count(self, hw: tuple[int, int], method: str = "auto") -> dict[str, Any]:
        hw = (int(hw[0]), int(hw[1]))
        if method == "auto":
            direct_ok = hw[0] * hw[1] <= self.cfg.direct_max_pixels or hw in self.traces
            method = "direct" if direct_ok else "extrapolated"
        in_ch = make_channels(self.spec.input_kind)
        if method == "direct":
            t = self.trace(hw)
            return _row("direct", t.input_shape, t.by_operator, t.unsupported_ops, trace_seconds=round(t.seconds, 2))
        if method != "extrapolated":
            raise ComplexityError(f"unknown count method {method!r} (use auto, direct or extrapolated)")
        fit_traces = [self.trace(s) for s in self.cfg.fit_sizes]
        ex = extrapolate(fit_traces, hw)
        return _row("extrapolated", (1, in_ch, *hw), ex["by_operator"], ex["unsupported_ops"], fit=ex["fit"])


def make_channels(kind: str) -> int:
    from ldp.models.inputs import INPUT_CHANNELS

    return INPUT_CHANNELS[kind]


def count_model(name: str, hw: tuple[int, int], method: str = "auto", cfg: ComplexityConfig | None = None,
                overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """Params and fvcore MACs of registered model ``name`` at one (H, W) input of its own kind.

    ``method``: ``direct`` (one trace at ``hw``), ``extrapolated`` (from ``cfg.fit_sizes``) or ``auto`` (direct up
    to ``cfg.direct_max_pixels``). ``overrides`` go to ``build_model`` (default: ``cfg.model_overrides``).
    """
    counter = _ModelCounter(name, cfg or ComplexityConfig(), overrides)
    row = counter.count(hw, method)
    return {"model": name, "input_kind": counter.spec.input_kind, "overrides": counter.overrides,
            **param_counts(counter.model), "size": _hw_key(hw), **row}


def _clip_visual(model_name: str, image_size: tuple[int, int] | None = None) -> nn.Module:
    import logging

    import open_clip

    if model_name not in open_clip.list_models():
        raise ComplexityError(f"clip model {model_name!r} unknown to open_clip")
    kwargs = {"force_image_size": image_size} if image_size is not None else {}
    logging.getLogger().setLevel(max(logging.getLogger().level, logging.ERROR))  # "no pretrained weights"
    torch.manual_seed(0)
    return open_clip.create_model(model_name, pretrained=None, **kwargs).visual.eval()


def count_clip(model_name: str, n_patches: int) -> dict[str, Any]:
    """CLIP image tower (random init; counts do not depend on weights) for ``n_patches`` crops of 224x224.

    One 1x3x224x224 crop is traced; the total is exactly ``n_patches`` times that (batch-linear).
    """
    visual = _clip_visual(model_name)
    size = visual.image_size if hasattr(visual, "image_size") else 224
    size = tuple(size) if isinstance(size, (tuple, list)) else (size, size)
    trace = fvcore_count(visual, (torch.rand(1, 3, *size, generator=torch.Generator().manual_seed(0)),))
    per_patch = trace.total
    return {
        "model": f"clip:{model_name}",
        "tower": "image (open_clip .visual, random init)",
        **param_counts(visual),
        "n_patches": n_patches,
        "patch_input_shape": list(trace.input_shape),
        "macs_per_patch": per_patch,
        "gmacs_per_patch": round(per_patch / 1e9, 4),
        "macs": per_patch * n_patches,
        "gmacs": round(per_patch * n_patches / 1e9, 4),
        "by_operator_per_patch": trace.by_operator,
        "unsupported_ops": trace.unsupported_ops,
        "method": f"direct trace of one {size[0]}x{size[1]} crop x {n_patches}",
    }


def count_clip_whole_image(model_name: str, hw: tuple[int, int]) -> dict[str, Any]:
    """The image tower run once on the whole H x W image (positional grid resized to it; ViTs only)."""
    visual = _clip_visual(model_name, image_size=tuple(hw))
    trace = fvcore_count(visual, (torch.rand(1, 3, *hw, generator=torch.Generator().manual_seed(0)),))
    return {
        "model": f"clip:{model_name}",
        **param_counts(visual),
        "size": _hw_key(hw),
        "macs": trace.total,
        "gmacs": round(trace.total / 1e9, 4),
        "by_operator": trace.by_operator,
        "unsupported_ops": trace.unsupported_ops,
        "method": "direct trace of the whole image at native size (open_clip force_image_size)",
        "note": "params include the positional embedding resized to the image grid",
    }


def resolve_models(models: str | Iterable[str], modules: Iterable[str] = ()) -> list[str]:
    """Registry names to count: ``"all"`` or the names given, after importing ``modules`` (which register more)."""
    import ldp

    for module in modules:
        try:
            import_module(module)
        except ImportError as exc:
            raise ComplexityError(f"complexity.modules: cannot import {module!r}: {exc}") from exc
    known = ldp.list_models()
    if isinstance(models, str):
        if models == "all":
            return known
        models = [models]
    names = list(models)
    for n in names:
        ldp.get_spec(n)  # raises with the closest names
    return names


def complexity_report(models: str | Iterable[str] = "all", sizes: Sequence[tuple[int, int]] | None = None,
                      cfg: ComplexityConfig | None = None, progress: bool = True) -> dict[str, Any]:
    """Count every model at every size (plus CLIP and the extrapolation checks from ``cfg``)."""
    from tqdm import tqdm

    cfg = cfg or ComplexityConfig()
    sizes = [tuple(s) for s in (sizes if sizes is not None else cfg.sizes)]
    for s in sizes:
        if len(s) != 2 or min(s) <= 0:
            raise ComplexityError(f"complexity.sizes: bad size {list(s)} (want [H, W])")
    names = resolve_models(models, cfg.modules)
    report: dict[str, Any] = {
        "note": MAC_NOTE,
        "handles_added": [FFT_NOTE, ATTENTION_NOTE],
        "still_skipped": (
            "element-wise ops (add, mul, div, gelu, relu, softmax, sigmoid, sqrt, var/mean, clamp), custom "
            "autograd LayerNorm functions, pixel (un)shuffle and padding: each costs O(C*H*W), against O(C^2*H*W) "
            "for the convolutions (see docs/complexity.md)"
        ),
        "config": asdict(cfg),
        "environment": {"torch": torch.__version__, "fvcore": _fvcore_version(), "python": platform.python_version()},
        "models": {},
        "clip": {},
        "verification": [],
    }
    bar = tqdm(names, desc="complexity", disable=not progress)
    for name in bar:
        bar.set_postfix_str(name)
        counter = _ModelCounter(name, cfg)
        entry = {"input_kind": counter.spec.input_kind, "in_channels": make_channels(counter.spec.input_kind),
                 "overrides": counter.overrides, **param_counts(counter.model), "counts": {}}
        for hw in sizes:
            entry["counts"][_hw_key(hw)] = counter.count(hw)
        if name in cfg.verify_models:
            report["verification"].append(_verify(counter, tuple(cfg.verify_size)))
        report["models"][name] = entry
        del counter
    for clip_name in tqdm(cfg.clip_models, desc="clip", disable=not progress):
        entry = count_clip(clip_name, cfg.clip_patches)
        if clip_name in cfg.clip_whole_image:
            big = max(sizes, key=lambda s: s[0] * s[1])
            entry["whole_image"] = count_clip_whole_image(clip_name, big)
        report["clip"][f"clip:{clip_name}"] = entry
    report["paper"] = {"source": PAPER_SOURCE, "values": PAPER_VALUES}
    return report


def _verify(counter: _ModelCounter, hw: tuple[int, int]) -> dict[str, Any]:
    """Direct trace at ``hw`` against the extrapolation from the fit sizes."""
    predicted = counter.count(hw, "extrapolated")
    direct = counter.count(hw, "direct")
    counter.traces.pop(hw, None)  # big trace: free it
    return {
        "model": counter.name,
        "size": _hw_key(hw),
        "direct_macs": direct["macs"],
        "extrapolated_macs": predicted["macs"],
        "equal": direct["macs"] == predicted["macs"],
        "relative_difference": (predicted["macs"] - direct["macs"]) / max(direct["macs"], 1),
        "direct_trace_seconds": direct.get("trace_seconds"),
    }


def _fvcore_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("fvcore")
    except PackageNotFoundError:
        return "unknown"


# ---------------------------------------------------------------------------------------------- output


def _g(macs: int | None) -> str:
    return "–" if macs is None else f"{macs / 1e9:,.2f}"


def _m(n: int | None) -> str:
    return "–" if n is None else f"{n / 1e6:.2f}"


def render_markdown(report: dict[str, Any]) -> str:
    sizes = sorted({s for e in report["models"].values() for s in e["counts"]},
                   key=lambda s: math.prod(int(v) for v in s.split("x")))
    big = sizes[-1] if sizes else "1120x1680"
    lines = ["# Model complexity (fvcore)", "", f"> {report['note']}", ""]
    head = ["model", "input", "params (M, ours)"] + [f"GMACs @{s} (ours)" for s in sizes]
    head += ["method", "paper params (M)", f"paper G @{big}"]
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, e in report["models"].items():
        paper = PAPER_VALUES.get(name, {})
        cells = [name, f"{e['input_kind']} ({e['in_channels']} ch)", _m(e["params"])]
        cells += [_g(e["counts"][s]["macs"]) if s in e["counts"] else "–" for s in sizes]
        cells.append(", ".join(f"{s}: {e['counts'][s]['method']}" for s in sizes if s in e["counts"]))
        cells += [str(paper.get("params_M", "–")), str(paper.get("G_1120x1680", "–"))]
        lines.append("| " + " | ".join(cells) + " |")
    if report.get("clip"):
        lines += ["", "## CLIP image tower (blur-map estimation)", "",
                  "| tower | params (M, ours) | GMACs per 224² patch | patches | GMACs all patches (ours) | "
                  "GMACs whole image (ours) | paper params (M) | paper G |", "|---|---|---|---|---|---|---|---|"]
        for name, c in report["clip"].items():
            paper = PAPER_VALUES.get(name, {})
            whole = c.get("whole_image")
            whole_cell = f"{_g(whole['macs'])} @{whole['size']}" if whole else "–"
            lines.append(f"| {name} | {_m(c['params'])} | {c['gmacs_per_patch']:.3f} | {c['n_patches']} | "
                         f"{_g(c['macs'])} | {whole_cell} | {paper.get('params_M', '–')} | "
                         f"{paper.get('G_1120x1680', '–')} |")
    lines += ["", f"Paper values: {PAPER_SOURCE}; labelled 'paper', never measured here.", ""]
    if report.get("verification"):
        lines += ["## Extrapolation check (direct trace vs extrapolated)", "",
                  "| model | size | direct GMACs | extrapolated GMACs | equal |", "|---|---|---|---|---|"]
        for v in report["verification"]:
            lines.append(f"| {v['model']} | {v['size']} | {_g(v['direct_macs'])} | {_g(v['extrapolated_macs'])} | "
                         f"{v['equal']} |")
        lines.append("")
    lines += ["## Handles added to fvcore", ""] + [f"- {h}" for h in report["handles_added"]]
    lines += ["", f"Still skipped: {report['still_skipped']}.", "", "## Skipped ops per model (count of calls)", ""]
    for name, e in report["models"].items():
        s = e["counts"][big]["unsupported_ops"] if big in e["counts"] else {}
        lines.append(f"- **{name}**: " + (", ".join(f"`{k}` x{v}" for k, v in s.items()) or "none"))
    for name, c in report.get("clip", {}).items():
        lines.append(f"- **{name}**: " + (", ".join(f"`{k}` x{v}" for k, v in c["unsupported_ops"].items())
                                          or "none"))
    return "\n".join(lines) + "\n"


def write_complexity(report: dict[str, Any], out_json: str | Path = "results/complexity.json",
                     out_md: str | Path | None = "results/complexity.md") -> None:
    """Write the JSON report and its markdown table, each atomically."""
    atomic_write_json(out_json, report, default=str)
    if out_md is not None:
        atomic_write_text(out_md, render_markdown(report))
