"""Core networks. Importing this package registers them (explicit imports, no folder scanning)."""

from ldp.models import input_baselines, ldp_net, nafnet  # noqa: F401  (importing registers the models)
