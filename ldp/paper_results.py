"""Numbers the LDP paper and its supplementary report, with their sources. These are the paper's, never ours.

Every value is on DPD-blur (the DPDD test set, 76 scenes). ``rmse`` is the column the paper calls "MSE_rel"
(see docs/metrics.md). ``None`` means the paper does not report it.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PaperRow:
    psnr: float | None
    ssim: float | None = None
    mae: float | None = None
    rmse: float | None = None
    psnr_indoor: float | None = None
    psnr_outdoor: float | None = None
    source: str = ""


_SUPP = "LDP supplementary"
PAPER_ROWS: dict[str, PaperRow] = {
    "main/ldp-large": PaperRow(27.24, psnr_indoor=29.88, psnr_outdoor=24.73,
                               source="benchmark listing of the paper's table (indoor/outdoor labels fixed)"),
    "main/ldp-small": PaperRow(26.9, source="read off the paper's Fig. 1 plot (about ±0.05 dB)"),
    "main/restormer-dp": PaperRow(26.66, 0.833, 0.035, 0.046, source=f"{_SUPP} Tab. 3"),
    "main/deeprft-dp": PaperRow(25.71, 0.801, 0.037, 0.051, source=f"{_SUPP} Tab. 3"),
    "tab1/diff-lr": PaperRow(26.61, 0.825, 0.036, 0.047, source=f"{_SUPP} Tab. 1"),
    "tab1/inconsistent": PaperRow(26.69, 0.827, 0.033, 0.046, source=f"{_SUPP} Tab. 1"),
    "tab1/halves": PaperRow(26.76, 0.828, 0.034, 0.046, source=f"{_SUPP} Tab. 1"),
    "tab1/ours": PaperRow(26.91, 0.831, 0.032, 0.045, source=f"{_SUPP} Tab. 1"),
    "tab2/rn50": PaperRow(26.81, 0.828, 0.032, 0.046, source=f"{_SUPP} Tab. 2"),
    "tab2/vit-b16": PaperRow(26.88, 0.830, 0.032, 0.045, source=f"{_SUPP} Tab. 2"),
    "tab2/vit-b32": PaperRow(26.91, 0.831, 0.032, 0.045, source=f"{_SUPP} Tab. 2"),
    "tab3/restormer": PaperRow(26.66, 0.833, 0.035, 0.046, source=f"{_SUPP} Tab. 3"),
    "tab3/restormer+": PaperRow(26.91, 0.834, 0.033, 0.045, source=f"{_SUPP} Tab. 3"),
    "tab3/deeprft": PaperRow(25.71, 0.801, 0.037, 0.051, source=f"{_SUPP} Tab. 3"),
    "tab3/deeprft+": PaperRow(26.12, 0.806, 0.036, 0.049, source=f"{_SUPP} Tab. 3"),
}

# Complexity (supplementary Sec. 1): params in millions and "flops" (fvcore-style MACs) at a 1120x1680 DP pair.
PAPER_COMPLEXITY_SOURCE = ("LDP supplementary, Sec. 1 ('7.6M/19.6M parameters and 270G/686G flops ... "
                           "CLIP ... 88M, 220G')")
PAPER_COMPLEXITY: dict[str, dict] = {
    "ldp-small": {"label": "LDP-S (Ours Small)", "params_M": 7.6, "G_1120x1680": 270.0},
    "ldp-large": {"label": "LDP-L (Ours Large)", "params_M": 19.6, "G_1120x1680": 686.0},
    "clip:ViT-B-32": {"label": "CLIP ViT-B/32 (blur map)", "params_M": 88.0, "G_1120x1680": 220.0},
}


# The DPDD (DPD-blur) test set every paper value is on: 76 scenes of 1680x1120 (Abuolaim & Brown 2020; the scene
# names are ldp/data/splits/dpdd_test_*.txt). A result on anything else is "not the DPDD test set" (ldp.labels).
DPDD_TEST_IMAGES = 76
DPDD_TEST_SIZE_WXH = "1680x1120"


@dataclass(frozen=True)
class ReferenceSchedule:
    """The training length a recipe's rows are compared against, and where that length comes from."""

    iters: int
    source: str
    official: bool  # False: the paper gives none and the length is our choice (its rows are labelled so)


# Recipe id (params ``recipes``) -> its reference schedule. A recipe not listed has no reference (labelled).
REFERENCE_SCHEDULES: dict[str, ReferenceSchedule] = {
    "restormer": ReferenceSchedule(300_000, "Restormer's Defocus_Deblurring/Options/"
                                            "DefocusDeblur_DualPixel_16bit_Restormer.yml (300k iterations)", True),
    "deeprft": ReferenceSchedule(66_000, "DeepRFT's training defaults: 3000 epochs of the 350 DPDD training images "
                                         "at batch 16 (22 batches an epoch, the last one kept)", True),
    "nafnet": ReferenceSchedule(200_000, "NAFNet's GoPro width-32 options (200k iterations)", True),
    "ldp": ReferenceSchedule(200_000, "our choice: the paper gives no LDP schedule; NAFNet's GoPro length (its "
                                      "backbone's), as in profiles/paper.yaml", False),
}


def paper_row(key: str | None) -> PaperRow | None:
    if key is None:
        return None
    if key not in PAPER_ROWS:
        raise KeyError(f"unknown paper row {key!r}; known: {', '.join(sorted(PAPER_ROWS))}")
    return PAPER_ROWS[key]
