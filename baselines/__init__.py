"""In-tree baselines. Importing this package registers their models; to add a baseline, add its module to the
import below (the one place: no other list, no folder scanning)."""

from baselines import deeprft, restormer  # noqa: F401  (importing registers: restormer-dp, deeprft, deeprft-dp)
