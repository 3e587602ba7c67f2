"""Dual-pixel datasets: sources (synthetic, dpdd, dpd_disp, folder), the manifest, and the patch sampler."""
