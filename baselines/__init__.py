"""In-tree baselines. Each module registers its models on import; list every module here explicitly."""

from baselines import deeprft, restormer  # noqa: F401  (importing registers: restormer-dp, deeprft, deeprft-dp)

__all__ = ["deeprft", "restormer"]
