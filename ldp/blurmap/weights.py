"""Loading CLIP through open_clip: OpenAI weights from the hub cache, a local checkpoint, or random init.

All three CLIP variants of the paper are OpenAI CLIP models, which use QuickGELU; we always build the
``-quickgelu`` open_clip architecture so that every weights source loads into the same network.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import urllib.request
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
from torch import nn

WeightsKind = Literal["openai", "checkpoint", "random"]

CLIP_MODELS = {"ViT-B-32": "ViT-B-32-quickgelu", "ViT-B-16": "ViT-B-16-quickgelu", "RN50": "RN50-quickgelu"}
_ALIASES = {"ViT-B/32": "ViT-B-32", "ViT-B/16": "ViT-B-16", "RN-50": "RN50", "ResNet50": "RN50"}
_OFFLINE_PROBE_TIMEOUT_S = 4.0


class ClipWeightsError(RuntimeError):
    """CLIP weights cannot be found or loaded; the message says how to provide them."""


@dataclass
class LoadedClip:
    model: nn.Module
    tokenizer: object
    model_name: str  # user-facing name, e.g. "ViT-B-32"
    weights_kind: WeightsKind
    weights_source: str  # file path, "openai" or "random(seed=N)"


def canonical_model_name(name: str) -> str:
    name = _ALIASES.get(name, name)
    if name not in CLIP_MODELS:
        raise ClipWeightsError(f"unknown CLIP model {name!r}; supported: {', '.join(CLIP_MODELS)}")
    return name


def weights_kind_of(weights: str) -> WeightsKind:
    if weights == "none":
        return "random"
    if weights == "openai":
        return "openai"
    return "checkpoint"


def _hub_cached_file(hf_hub: str) -> str | None:
    """Path of the OpenAI weights in the Hugging Face cache, without touching the network."""
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return None
    repo_id, filename = os.path.split(hf_hub.rstrip("/") + "/")
    repo_id = repo_id.rstrip("/")
    names = [filename] if filename else ["open_clip_model.safetensors", "open_clip_pytorch_model.bin"]
    for name in names:
        hit = try_to_load_from_cache(repo_id=repo_id, filename=name)
        if isinstance(hit, str) and os.path.isfile(hit):
            return hit
    return None


def _url_cached_file(url: str) -> str | None:
    path = Path(os.path.expanduser("~/.cache/clip")) / os.path.basename(url)
    return str(path) if path.is_file() else None


def _online(url: str = "https://huggingface.co") -> bool:
    if os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False"):
        return False
    try:
        urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=_OFFLINE_PROBE_TIMEOUT_S)
        return True
    except Exception:  # noqa: BLE001 - any failure means "cannot download"
        return False


def _how_to_provide(name: str, url: str = "") -> str:
    file_name = os.path.basename(url) or f"{name}.pt"
    return (
        f"OpenAI CLIP weights for {name} are not in the local cache and the hub cannot be reached. Either:\n"
        f"  1. on a machine with internet run: python -c \"import open_clip; "
        f"open_clip.create_model('{CLIP_MODELS[name]}', pretrained='openai')\" and copy the Hugging Face "
        f"cache (~/.cache/huggingface/hub) here; or\n"
        f"  2. put a checkpoint file on disk (OpenAI's {file_name} from {url or 'openaipublic'}, or an open_clip "
        f"state_dict) and set `weights: /path/to/file` (params.yaml blurmap.weights or loss.bal_weights); or\n"
        f"  3. for an offline smoke run only, set `weights: none` (random init; outputs are tagged 'random')."
    )


def release_sha256(url: str) -> str | None:
    """The SHA-256 OpenAI's release URLs carry as a path segment (``.../models/<sha256>/ViT-B-32.pt``)."""
    parts = [p for p in url.split("/") if re.fullmatch(r"[0-9a-f]{64}", p)]
    return parts[-1] if parts else None


def _hub_blob_sha256(path: str) -> str | None:
    """The SHA-256 the Hugging Face cache names an LFS blob by (``snapshots/<rev>/<file>`` links to it)."""
    blob = os.path.basename(os.path.realpath(path))
    return blob if re.fullmatch(r"[0-9a-f]{64}", blob) else None


def _file_sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _resolve_openai(name: str) -> tuple[str, str | None]:
    """The OpenAI weights file of ``name`` and, when it is not the release, why (its SHA-256 does not match)."""
    import open_clip

    cfg = open_clip.get_pretrained_cfg(CLIP_MODELS[name], "openai") or {}
    hub = _hub_cached_file(cfg["hf_hub"]) if cfg.get("hf_hub") else None
    url_file = None if hub else (_url_cached_file(cfg["url"]) if cfg.get("url") else None)
    if hub or url_file:
        path = hub or url_file
        expected = _hub_blob_sha256(path) if hub else release_sha256(cfg.get("url", ""))
        if expected is None:
            return path, f"{path}: no release SHA-256 to check it against"
        actual = _file_sha256(path)
        if actual != expected:
            return path, f"{path}: SHA-256 {actual[:12]}... is not the release's {expected[:12]}..."
        return path, None
    if not _online():
        raise ClipWeightsError(_how_to_provide(name, cfg.get("url", "")))
    try:
        return open_clip.download_pretrained(cfg), None  # open_clip and the hub check the download's hash
    except Exception as exc:  # noqa: BLE001
        hint = _how_to_provide(name, cfg.get("url", ""))
        raise ClipWeightsError(f"downloading OpenAI weights failed ({exc}).\n{hint}") from None


def _load_state_dict(path: str) -> dict[str, torch.Tensor]:
    from open_clip.factory import load_state_dict

    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as zf:
            if any(n.endswith("constants.pkl") for n in zf.namelist()):  # OpenAI's TorchScript archive
                sd = torch.jit.load(path, map_location="cpu").state_dict()
                return {k: v for k, v in sd.items() if k not in ("input_resolution", "context_length", "vocab_size")}
    return load_state_dict(path, device="cpu", weights_only=True)


def load_clip(model_name: str = "ViT-B-32", weights: str = "openai", device: str | torch.device = "cpu",
              seed: int = 0) -> LoadedClip:
    """Build a frozen, eval-mode open_clip model.

    ``weights``: ``openai`` (hub cache; fails fast offline), ``none`` (random init with ``seed``), or a path.
    """
    import open_clip
    from open_clip.factory import convert_state_dict

    name = canonical_model_name(model_name)
    arch = CLIP_MODELS[name]
    kind = weights_kind_of(weights)
    if kind == "checkpoint" and not Path(weights).is_file():
        raise ClipWeightsError(f"{weights}: CLIP checkpoint file not found (weights must be openai, none or a path)")
    path, unverified = _resolve_openai(name) if kind == "openai" else (weights if kind == "checkpoint" else None, None)
    if unverified:  # a file where OpenAI's should be, but not theirs: loaded, and labelled as a checkpoint
        warnings.warn(f"CLIP {name} weights are not OpenAI's release ({unverified}); results are labelled so",
                      stacklevel=2)
        kind = "checkpoint"

    root = logging.getLogger()
    was_disabled = root.disabled
    root.disabled = True  # silence open_clip's "initialized randomly" warning; weights come below
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = open_clip.create_model(arch, pretrained=None)
    finally:
        root.disabled = was_disabled
    if path is not None:
        try:
            state = convert_state_dict(model, _load_state_dict(path))
            if "logit_scale" in state and state["logit_scale"].ndim != model.logit_scale.ndim:
                state["logit_scale"] = state["logit_scale"].reshape(model.logit_scale.shape)
            model.load_state_dict(state, strict=True)
        except Exception as exc:  # noqa: BLE001
            raise ClipWeightsError(f"{path}: cannot load as {name} CLIP weights: {exc}") from None
    model = model.to(device).eval().requires_grad_(False)
    source = {"openai": "openai", "checkpoint": str(path) + (f" ({unverified})" if unverified else ""),
              "random": f"random(seed={seed})"}[kind]
    return LoadedClip(model, open_clip.get_tokenizer(arch), name, kind, source)
