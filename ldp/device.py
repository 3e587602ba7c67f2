"""One way to turn a ``device`` setting (``auto``, ``cpu``, ``cuda``, ``cuda:N``) into a torch device."""

from __future__ import annotations

import torch


class DeviceError(ValueError):
    """A device setting this machine cannot honour; the message names the setting."""


def resolve_device(device: str, key: str = "device") -> torch.device:
    """``auto``: CUDA when available, else the CPU. A CUDA device that this machine lacks is an error naming ``key``."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise DeviceError(f"{key}: {device!r} is not a device (use auto, cpu, cuda or cuda:N)") from exc
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceError(f"{key}: {device!r} requested but CUDA is not available")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise DeviceError(f"{key}: {device!r} requested but this machine has {torch.cuda.device_count()} "
                              "CUDA device(s)")
    return dev
