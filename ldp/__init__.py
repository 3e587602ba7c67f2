"""ldp-bench: reproducible benchmarking for dual-pixel defocus deblurring (LDP, CVPR 2024)."""

from ldp.registry import build_model, get_spec, list_models, register_model

__all__ = ["build_model", "get_spec", "list_models", "register_model"]
__version__ = "0.1.0"
