"""ldp-bench: reproducible benchmarking for dual-pixel defocus deblurring (LDP, CVPR 2024).

``ldp.list_models``, ``ldp.build_model``, ``ldp.get_spec`` and ``ldp.register_model`` come from
:mod:`ldp.registry`; they are loaded on first use so that torch-free stages start fast.
"""

__all__ = ["build_model", "get_spec", "list_models", "register_model"]
__version__ = "0.1.0"


def __getattr__(name: str):
    if name in __all__:
        from ldp import registry

        return getattr(registry, name)
    raise AttributeError(f"module 'ldp' has no attribute {name!r}")
