"""Published results on the DPDD dual-pixel test set, each value with the document it was read in, and the table
that sets them beside the suite's reproduced rows, grouped by evaluation protocol (docs/literature.md).

Rules of the data:

- a value is the string printed in its source (its digits kept: ``"26.6160"`` is not ``"26.616"``); a number not
  read in a source is not in the table (an empty cell is the correct answer);
- every value names its source document (:data:`SOURCES`: what was read, where) and the table, figure or comment in
  it, and how it was read (:data:`READINGS`: printed by the method's authors, read off a plot, quoted second-hand,
  re-evaluated by a third party);
- every value names the protocol it was measured under: a protocol id of the suite (``dpdd16-restormer-v1``, ...)
  where the source pins it down, else ``"unknown: "`` plus what the source says;
- the LDP paper's own numbers and its baseline rows come from :mod:`ldp.paper_results`, never retyped here.

Ranking: rows are ranked by PSNR only inside one known protocol, and only rows measured on the DPDD test set; rows
of an unknown protocol, and reproduced rows whose labels say they are not comparable with the paper, carry no rank
and say why (:func:`literature_table`). Nothing here reads the network.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import pandas as pd

from ldp.fsutil import atomic_write_text
from ldp.paper_results import DPDD_TEST_IMAGES, PAPER_COMPLEXITY, PAPER_COMPLEXITY_SOURCE, PAPER_ROWS

DATASET = f"DPDD dual-pixel test ({DPDD_TEST_IMAGES})"
SUBSETS = ("all", "indoor", "outdoor")  # "all" is the papers' "combined"
METRICS = ("psnr", "ssim", "mae", "rmse", "lpips", "params_M")
METRIC_TITLES = {"psnr": "PSNR", "ssim": "SSIM", "mae": "MAE", "rmse": "MSE_rel (RMSE)", "lpips": "LPIPS",
                 "params_M": "params (M)"}
UNKNOWN = "unknown"
LITERATURE_CSV = "literature.csv"
LITERATURE_MD = "literature.md"
PUBLISHED = "published"
REPRODUCED = "reproduced (this suite)"

# How a value was read.
READINGS = {
    "printed": "printed in a table of the source",
    "listing": "a benchmark listing of the paper's table",
    "plot": "read off a plot (about ±0.05 dB), not printed",
    "quoted": "quoted second-hand: the source quotes another paper's table",
    "re-evaluation": "a third party's re-evaluation of released weights, not the method's paper",
}

# The suite's protocol ids (their rules live in ldp/protocols.py; only the ids and a one-line summary here).
PROTOCOLS = {
    "dpdd16-restormer-v1": "16-bit PNG / 65535, full resolution, skimage SSIM (7x7 uniform window) on [0, 1]",
    "dpdd8-restormer-v1": "8-bit PNG / 255, full resolution, skimage SSIM (7x7 uniform window) on [0, 1]",
    "dpdd8-mmagic-v1": "8-bit loading (cv2 colour), full resolution, mmagic's SSIM (11x11 Gaussian window) on 0-255",
    "dpdd16-half-v1": "16-bit PNG, half resolution (2x2 area mean of restoration and target), skimage SSIM",
}


class LiteratureError(ValueError):
    """A literature entry without a source, a parseable value or a protocol."""


@dataclass(frozen=True)
class Source:
    """A document read for the table: what it is and where it was read."""

    key: str
    document: str  # what was read (authors, title, venue, year; or repository, file, commit; or issue thread)
    url: str  # URL, or repository path @ commit


@dataclass(frozen=True)
class LiteratureEntry:
    """One published value."""

    method: str
    variant: str
    subset: str  # all | indoor | outdoor
    metric: str  # psnr | ssim | mae | rmse | lpips | params_M
    value: str  # as printed, digits kept
    source: str  # a key of SOURCES
    where: str  # the table, figure or comment of the source
    protocol: str  # a protocol id, or "unknown: <what the source says>"
    reading: str = "printed"  # a key of READINGS
    input: str = "not stated"  # what the network was fed, as the source says
    caveat: str = ""
    dataset: str = DATASET

    @property
    def number(self) -> float:
        return float(self.value)


SOURCES: dict[str, Source] = {s.key: s for s in (
    Source("ldp-supp", "Yang, Pan, Liu, Liu. LDP: Language-driven Dual-Pixel Image Defocus Deblurring Network. "
                       "CVPR 2024, supplementary material (via ldp/paper_results.py)",
           "../shared/reference/ldp-supplementary.md"),
    Source("ldp-listing", "Benchmark listing of the LDP paper's DPD-blur table (CVPR 2024), indoor/outdoor labels "
                          "swapped there, fixed by the 37/39 weighted mean (via ldp/paper_results.py)",
           "https://www.wizwand.com/paper/68fa713a1e209131cea4fe6e, as recorded in "
           "../shared/reference/ldp-paper-and-baselines.md §0, §1.7"),
    Source("ldp-fig1", "LDP paper Fig. 1 (PSNR against inference time, DPD-blur), shipped as asset/intro.png; "
                       "values read off the plot in the project's reference notes",
           "noxsine/LDP @ 4a133ea asset/intro.png; ../shared/reference/ldp-paper-and-baselines.md §1.7"),
    Source("lakdnet-readme", "Ruan, Bemana, Seidel, Myszkowski, Chen. Revisiting Image Deblurring with an Efficient "
                             "ConvNet (LaKDNet), arXiv 2302.02234, 2023: the repository README's result table",
           "lingyanruan/LaKDNet README.md @ f9e9b57640e97da3036b27b26caa4834043230af "
           "(test code: run.py, util/util.py @ 3d5e0444a773237b47a9418d4fe2e9072e17319e)"),
    Source("mmagic-restormer", "OpenMMLab mmagic: re-evaluation of the official Restormer weights, "
                               "configs/restormer/README.md 'Defocus Deblurring' table",
           "open-mmlab/mmagic configs/restormer/README.md @ 07ceb6040105adc202518b0578d7d8ccf67dc7bb; test data "
           "pipeline configs/_base_/datasets/deblurring-defocus_test_config.py @ "
           "75bd7d89d3c2ac20b7e21a3bb62679d224ce0712"),
    Source("ifan-issue1", "codeslake/IFAN issue #1 'About th evalaution on DPDD', answer by IFAN's first author "
                          "(codeslake, 2021-06-23)", "https://github.com/codeslake/IFAN/issues/1"),
    Source("restormer-issue77", "swz30/Restormer issue #77 'About PSNR of IFAN in defocus deblurring tasks', "
                                "comment by bnm6900030 (2023-07-24)", "https://github.com/swz30/Restormer/issues/77"),
    Source("uformer-issue60", "ZhendongWang6/Uformer issue #60, description by TPZZZ (2022-10-21) quoting the "
                              "Uformer and Restormer papers' Table 3",
           "https://github.com/ZhendongWang6/Uformer/issues/60"),
    Source("dddnet-issue1", "panpanfei/Dual-Pixel-Exploration-Simultaneous-Depth-Estimation-and-Image-Restoration "
                            "issue #1 (2021-03-04), answered by the maintainer panpanfei",
           "https://github.com/panpanfei/Dual-Pixel-Exploration-Simultaneous-Depth-Estimation-and-Image-Restoration"
           "/issues/1"),
    Source("dddnet-issue7", "panpanfei/Dual-Pixel-Exploration-... issue #7, comment by the maintainer panpanfei "
                            "(2021-09-07); issue #9 (2021-11-28) says these numbers are 8-bit",
           "https://github.com/panpanfei/Dual-Pixel-Exploration-Simultaneous-Depth-Estimation-and-Image-Restoration"
           "/issues/7 and /issues/9"),
    Source("drbnet-issue7", "lingyanruan/DRBNet issue #7 'Questions about the pre-trained models', description by "
                            "C-water (2022-10-31)", "https://github.com/lingyanruan/DRBNet/issues/7"),
)}

# The method's own paper (what a reader cites for the method), by method name.
PAPERS = {
    "LDP": "Yang, Pan, Liu, Liu. LDP: Language-driven Dual-Pixel Image Defocus Deblurring Network. CVPR 2024",
    "Restormer": "Zamir, Arora, Khan, Hayat, Khan, Yang. Restormer: Efficient Transformer for High-Resolution Image "
                 "Restoration. CVPR 2022",
    "DeepRFT": "DeepRFT (AAAI 2022; INVOKERer/DeepRFT)",
    "LaKDNet": "Ruan, Bemana, Seidel, Myszkowski, Chen. Revisiting Image Deblurring with an Efficient ConvNet. "
               "arXiv 2302.02234, 2023",
    "IFAN": "Lee, Son, Rim, Cho, Lee. Iterative Filter Adaptive Network for Single Image Defocus Deblurring. CVPR 2021",
    "DPDNet": "Abuolaim, Brown. Defocus Deblurring Using Dual-Pixel Data. ECCV 2020",
    "RDPD": "Abuolaim, Delbracio, Kelly, Brown, Milanfar. Learning to Reduce Defocus Blur by Realistically Modeling "
            "Dual-Pixel Data. ICCV 2021",
    "Uformer": "Wang, Cun, Bao, Zhou, Liu, Li. Uformer: A General U-Shaped Transformer for Image Restoration. "
               "CVPR 2022",
    "DDDNet": "Pan et al. Dual Pixel Exploration: Simultaneous Depth Estimation and Image Restoration. CVPR 2021 "
              "(arXiv 2012.00301)",
    "DRBNet": "Ruan, Chen, Li, Lam. Learning to Deblur using Light Field Generated and Real Defocused Images",
    "K3DN": "Yang, Pan, Liu, Liu. K3DN: Disparity-aware Kernel Estimation for Dual-Pixel Defocus Deblurring. CVPR 2023",
    "BAMBNet": "BAMBNet (2021; as labelled in LDP's Fig. 1)",
}

# ---------------------------------------------------------------------------------------------- protocol notes
_LDP_PROTOCOL = ("unknown: LDP's released test script reads every PNG / 255 (8-bit copies of DPDD implied) and "
                 "computes no metric; the paper does not say which metric code made its table")
_LDP_BASELINE = ("LDP's table; whether LDP re-trained this baseline or copied its number, and on which input, is not "
                 "stated")
_LAKD_PROTOCOL = ("unknown: close to dpdd16-restormer-v1 - the released run.py reads 16-bit PNGs / 65535 at full "
                  "resolution (reflect-padded to a multiple of 8, cropped back) and scores with skimage PSNR and SSIM "
                  "(data_range=1, channel_axis=-1), but does not clamp the output to [0, 1]; the README does not "
                  "say that this script made its table")
_MMAGIC_CAVEAT = ("mmagic's own re-evaluation of the official Restormer dual-pixel weights, not Restormer's paper; "
                  "its README prints the same 26.6160 / 0.8346 / 0.0354 for Indoor, Outdoor and Combined, so only "
                  "Combined is taken (the indoor and outdoor cells are evidently copies)")


def _entries(method: str, variant: str, subset: str, values: Mapping[str, str], **common: str) -> list[LiteratureEntry]:
    return [LiteratureEntry(method, variant, subset, metric, value, **common) for metric, value in values.items()]


def _printed(value: float, decimals: int) -> str:
    return f"{value:.{decimals}f}"


_PAPER_DECIMALS = {"psnr": 2, "ssim": 3, "mae": 3, "rmse": 3}


def _from_paper_row(key: str, method: str, variant: str, source: str, where: str, reading: str, caveat: str,
                    psnr_decimals: int = 2) -> list[LiteratureEntry]:
    """The entries of ``ldp.paper_results.PAPER_ROWS[key]``: every metric it has, printed with the paper's digits."""
    row = PAPER_ROWS[key]
    common = {"source": source, "where": where, "protocol": _LDP_PROTOCOL, "reading": reading, "caveat": caveat}
    out = []
    for metric in ("psnr", "ssim", "mae", "rmse"):
        value = getattr(row, metric)
        if value is not None:
            decimals = psnr_decimals if metric == "psnr" else _PAPER_DECIMALS[metric]
            note = caveat if metric != "rmse" else "; ".join(
                x for x in (caveat, "printed as MSE_rel; read as RMSE on [0, 1] (docs/metrics.md)") if x)
            out.append(LiteratureEntry(method, variant, "all", metric, _printed(value, decimals),
                                       **{**common, "caveat": note}))
    for subset in ("indoor", "outdoor"):
        value = getattr(row, f"psnr_{subset}")
        if value is not None:
            out.append(LiteratureEntry(method, variant, subset, "psnr", _printed(value, psnr_decimals), **common))
    return out


def _ldp_entries() -> list[LiteratureEntry]:
    tab3 = "supplementary Tab. 3"
    out = _from_paper_row("main/ldp-large", "LDP", "Large", "ldp-listing", "the paper's DPD-blur table (listing)",
                          "listing", "indoor/outdoor labels swapped in the listing, fixed here")
    out += _from_paper_row("main/ldp-small", "LDP", "Small", "ldp-fig1", "Fig. 1", "plot",
                           "read off the plot (about ±0.05 dB)", psnr_decimals=1)
    out += _from_paper_row("tab1/ours", "LDP", "ablation 'Ours' (DP-aware format, ViT-B/32)", "ldp-supp",
                           "supplementary Tab. 1 (= Tab. 2 ViT-B/32)", "printed",
                           "ablation row; the supplementary does not say whether its ablations use Small or Large")
    for key, method, variant in (("tab3/restormer", "Restormer", "as in LDP's table"),
                                 ("tab3/restormer+", "Restormer", "+ L_bwl + L_bal (LDP's losses)"),
                                 ("tab3/deeprft", "DeepRFT", "as in LDP's table"),
                                 ("tab3/deeprft+", "DeepRFT", "+ L_bwl + L_bal (LDP's losses)")):
        out += _from_paper_row(key, method, variant, "ldp-supp", tab3, "printed", _LDP_BASELINE)
    for name, variant in (("ldp-small", "Small"), ("ldp-large", "Large")):
        out.append(LiteratureEntry("LDP", variant, "all", "params_M", _printed(PAPER_COMPLEXITY[name]["params_M"], 1),
                                   "ldp-supp", "supplementary Sec. 1", _LDP_PROTOCOL,
                                   caveat=f"without CLIP ({PAPER_COMPLEXITY_SOURCE})"))
    return out


def _fig1_entries() -> list[LiteratureEntry]:
    """The other methods of LDP's Fig. 1, as read off the plot in the reference notes."""
    protocol = "unknown: LDP's Fig. 1 does not say how the plotted PSNRs were measured"
    read = "read off the plot (about ±0.05 dB); the paper's own table of these rows was not read"
    return [LiteratureEntry(method, "as plotted in LDP's Fig. 1", "all", "psnr", value, "ldp-fig1", "Fig. 1",
                            protocol, "plot", caveat=read)
            for method, value in (("K3DN", "27.0"), ("BAMBNet", "26.4"), ("IFAN", "26.0"), ("DeepRFT", "25.8"),
                                  ("DDDNet", "25.4"), ("RDPD", "25.4"))]


def _other_entries() -> list[LiteratureEntry]:
    out: list[LiteratureEntry] = []
    lakd = {"source": "lakdnet-readme", "where": "README table, rows 'Defocus-dual', trained and evaluated on DPDD",
            "protocol": _LAKD_PROTOCOL, "input": "L, R and C (run.py: cat(L, R, C))"}
    out += _entries("LaKDNet", "base (width 32)", "all", {"psnr": "26.72", "ssim": "0.826", "params_M": "17.7"},
                    **lakd, caveat="params printed as '17.7M'")
    out += _entries("LaKDNet", "large (width 48)", "all", {"psnr": "26.89", "ssim": "0.832", "params_M": "38.4"},
                    **lakd, caveat="params printed as '38.4M'; README: 'we increase the channel dimension from 32 "
                                   "to 48 to get the large version'")
    out += _entries("Restormer", "official dual-pixel weights, re-evaluated by mmagic", "all",
                    {"psnr": "26.6160", "ssim": "0.8346", "mae": "0.0354"}, source="mmagic-restormer",
                    where="README 'Defocus Deblurring' table, restormer_official_dpdd-dual, Combined",
                    protocol="dpdd8-mmagic-v1", reading="re-evaluation", input="L, R (inp_channels=6)",
                    caveat=_MMAGIC_CAVEAT)
    out.append(LiteratureEntry("DPDNet", "dual, as in its paper", "all", "psnr", "25.13", "ifan-issue1",
                               "the question, quoting DPDNet's paper",
                               "unknown: DPDNet's README says 'we test with 16-bit images' (bit_depth=16); the IFAN "
                               "author's answer says DPDNet's paper used 8-bit images (the sentence reads like a "
                               "slip); SSIM code and resolution of the paper's table not read",
                               "quoted", "L, R", "also quoted as 'the original paper' in dddnet-issue1"))
    out.append(LiteratureEntry("DPDNet", "dual, 8-bit checkpoint from its authors, as in IFAN's paper", "all", "psnr",
                               "25.23", "ifan-issue1", "question quoting IFAN's paper; the IFAN author's answer",
                               "unknown: 8-bit images per IFAN's author (all of IFAN's comparisons are 8-bit); "
                               "IFAN's released eval code is what dpdd8-restormer-v1 follows, but that it made "
                               "IFAN's table is not stated", "quoted", "L, R",
                               "the IFAN author: 'still different from what they have reported in their supplementary "
                               "material (Table 5)'"))
    out.append(LiteratureEntry("DPDNet", "dual, as in DDDNet's paper Table 1", "all", "psnr", "25.53", "dddnet-issue1",
                               "question quoting DDDNet's Table 1; the maintainer's answer",
                               "unknown: half-resolution test images (DDDNet maintainer, issues #1 and #7); bit "
                               "depth and SSIM code not stated", "quoted", "L, R",
                               "the half-resolution protocol of DDDNet's paper; not comparable with full-resolution "
                               "rows"))
    ifan = {"source": "restormer-issue77", "where": "comment, printed output of the commenter's evaluation",
            "protocol": "unknown: 16-bit test images per the comment; script and SSIM implementation not stated",
            "reading": "re-evaluation", "input": "not stated (which IFAN checkpoint is not said)",
            "caveat": "an IFAN checkpoint trained on 8-bit images, run on 16-bit images by a third party; its "
                      "printed LPIPS repeats the SSIM (all) and MAE (indoor, outdoor) values, so LPIPS is left empty"}
    out += _entries("IFAN", "released 8-bit checkpoint on 16-bit images", "all",
                    {"psnr": "26.023693", "ssim": "0.805778", "mae": "0.037130"}, **ifan)
    out += _entries("IFAN", "released 8-bit checkpoint on 16-bit images", "indoor",
                    {"psnr": "28.699427", "ssim": "0.870385", "mae": "0.024749"}, **ifan)
    out += _entries("IFAN", "released 8-bit checkpoint on 16-bit images", "outdoor",
                    {"psnr": "23.485176", "ssim": "0.744484", "mae": "0.048877"}, **ifan)
    uformer = {"source": "uformer-issue60", "reading": "quoted", "input": "not stated in the Uformer paper (issue #60)"}
    out.append(LiteratureEntry("Uformer", "as in its paper", "all", "psnr", "26.28", where="Uformer paper Table 3, "
                               "as quoted in the issue", protocol="unknown: not stated in the issue", **uformer))
    out.append(LiteratureEntry("Uformer", "dual-pixel, as in Restormer's paper", "all", "psnr", "25.66",
                               where="Restormer paper Table 3, as quoted in the issue",
                               protocol="unknown: Restormer's table; its own rows are dpdd16-restormer-v1 by its "
                                        "script, how the Uformer row was obtained is not stated",
                               **{**uformer, "input": "dual-pixel (issue #60)"}))
    out += _entries("DDDNet", "released weights, full resolution", "all", {"psnr": "25.4136", "ssim": "0.8394"},
                    source="dddnet-issue7", where="the maintainer's comment in issue #7",
                    protocol="unknown: full resolution (issue #7), 8-bit images (issue #9); SSIM implementation not "
                             "stated", reading="printed", input="L, R",
                    caveat="DDDNet's paper reports a half-resolution number (not read here)")
    drb = {"source": "drbnet-issue7", "where": "issue description", "reading": "re-evaluation",
           "caveat": "a user's run of the released weights; the maintainer asked whether the instructions were "
                     "followed exactly"}
    out.append(LiteratureEntry("DRBNet", "released dual weights, 8-bit inputs", "all", "psnr", "25.57",
                               protocol="unknown: 8-bit inputs; script not stated", input="L, R", **drb))
    out.append(LiteratureEntry("DRBNet", "released dual weights, 16-bit inputs", "all", "psnr", "25.61",
                               protocol="unknown: 16-bit inputs; script not stated", input="L, R", **drb))
    out.append(LiteratureEntry("DRBNet", "as in its paper", "all", "psnr", "25.725", "drbnet-issue7",
                               "issue description quoting the paper", "unknown: not stated in the issue", "quoted",
                               caveat="the issue does not say which variant (single or dual) 25.725 is"))
    return out


LITERATURE: tuple[LiteratureEntry, ...] = tuple(_ldp_entries() + _fig1_entries() + _other_entries())


# ------------------------------------------------------------------------------------------------- validation
def protocol_group(protocol: str | None) -> str:
    """The protocol id of ``protocol`` (any id a metrics.json records, not only those of :data:`PROTOCOLS`), or
    ``unknown`` for an ``unknown: ...`` note or nothing."""
    text = (protocol or "").strip()
    return UNKNOWN if not text or text == UNKNOWN or text.startswith(f"{UNKNOWN}:") else text


def check_literature(entries: Iterable[LiteratureEntry] = LITERATURE,
                     sources: Mapping[str, Source] = SOURCES) -> None:
    """Every entry has a known source and a place in it, a parseable number, a known metric, subset and reading,
    and a protocol (an id or ``unknown: ...``); no value is given twice. Raises :class:`LiteratureError` naming every
    bad entry."""
    problems, seen = [], set()
    for e in entries:
        name = f"{e.method} / {e.variant} / {e.subset} / {e.metric}"
        if e.source not in sources:
            problems.append(f"{name}: source {e.source!r} is not in SOURCES")
        elif not sources[e.source].url.strip() or not sources[e.source].document.strip():
            problems.append(f"{name}: source {e.source!r} has no document or URL")
        if not e.where.strip():
            problems.append(f"{name}: no table, figure or comment ('where') in its source")
        try:
            if not math.isfinite(float(e.value)):
                raise ValueError
        except ValueError:
            problems.append(f"{name}: value {e.value!r} is not a finite number")
        if e.value != e.value.strip() or not e.value:
            problems.append(f"{name}: value {e.value!r} is not a bare printed number")
        if e.metric not in METRICS:
            problems.append(f"{name}: unknown metric (known: {', '.join(METRICS)})")
        if e.subset not in SUBSETS:
            problems.append(f"{name}: unknown subset (known: {', '.join(SUBSETS)})")
        if e.reading not in READINGS:
            problems.append(f"{name}: unknown reading {e.reading!r} (known: {', '.join(READINGS)})")
        if e.protocol not in PROTOCOLS and not e.protocol.startswith(f"{UNKNOWN}: "):
            problems.append(f"{name}: protocol {e.protocol!r} is neither a protocol id nor 'unknown: <what the "
                            "source says>'")
        key = (e.method, e.variant, e.subset, e.metric, e.source, e.where)
        if key in seen:
            problems.append(f"{name}: given twice from {e.source} ({e.where})")
        seen.add(key)
    if problems:
        raise LiteratureError("ldp/literature.py: " + "; ".join(problems))


def literature_frame(entries: Iterable[LiteratureEntry] = LITERATURE) -> pd.DataFrame:
    """One row per published value: the entry's fields, ``number`` (the value as a float), the protocol group, the
    method's paper and the source's document and URL."""
    entries = list(entries)
    check_literature(entries)
    rows = []
    for e in entries:
        src = SOURCES[e.source]
        rows.append({**asdict(e), "number": e.number, "protocol_group": protocol_group(e.protocol),
                     "paper": PAPERS.get(e.method, ""), "document": src.document, "url": src.url})
    columns = [f.name for f in fields(LiteratureEntry)] + ["number", "protocol_group", "paper", "document", "url"]
    return pd.DataFrame(rows, columns=columns)


# ------------------------------------------------------------------------------- published beside reproduced
VALUE_COLUMNS = tuple(m if s == "all" else f"{m}_{s}" for s in SUBSETS for m in METRICS
                      if not (s != "all" and m == "params_M"))
TABLE_COLUMNS = ("protocol_group", "origin", "row", "input", "rank", *VALUE_COLUMNS, "n_images", "protocol",
                 "reading", "sources", "caveats", "why_not_ranked")
_REPRODUCED_DECIMALS = {"psnr": 2, "ssim": 4, "mae": 4, "rmse": 4, "lpips": 4}


def _published_rows(entries: Iterable[LiteratureEntry]) -> list[dict[str, Any]]:
    """One row per (method, variant, source, place, protocol), its values pivoted into the metric columns."""
    rows: dict[tuple, dict[str, Any]] = {}
    for e in entries:
        key = (e.method, e.variant, e.source, e.where, e.protocol)
        row = rows.setdefault(key, {
            "protocol_group": protocol_group(e.protocol), "origin": PUBLISHED, "row": f"{e.method} ({e.variant})",
            "input": e.input, "n_images": DPDD_TEST_IMAGES, "protocol": e.protocol, "reading": set(),
            "sources": f"{e.source}: {e.where} <{SOURCES[e.source].url}>", "caveats": []})
        column = e.metric if e.subset == "all" else f"{e.metric}_{e.subset}"
        row[column] = e.value
        row["reading"].add(e.reading)
        for part in e.caveat.split("; ") if e.caveat else ():
            if part not in row["caveats"]:
                row["caveats"].append(part)
    out = []
    for row in rows.values():
        row["reading"] = ", ".join(sorted(row["reading"]))
        row["caveats"] = "; ".join(row["caveats"])
        out.append(row)
    return out


def _reproduced_label(name: str, metrics: Mapping[str, Any]) -> str:
    from ldp.models.input_baselines import INPUT_BASELINE_LABELS

    if name in INPUT_BASELINE_LABELS:
        return INPUT_BASELINE_LABELS[name]
    return (metrics.get("experiment") or {}).get("label") or name


def reproduced_rows(eval_dir: Path) -> list[dict[str, Any]]:
    """One row per ``<eval_dir>/<run>/metrics.json`` (sorted by run name): its means, protocol and labels."""
    rows = []
    for path in sorted(Path(eval_dir).glob("*/metrics.json")):
        try:
            metrics = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise ValueError(f"{path}: evaluation output not readable: {exc}") from exc
        labels = metrics.get("labels")
        if not isinstance(labels, Mapping) or "comparable_with_paper" not in labels:
            raise ValueError(f"{path}: no labels (an evaluation from before ldp.labels); re-run it (dvc repro "
                             "evaluate)")
        protocol = metrics.get("protocol") or f"{UNKNOWN}: not recorded in {path.name}"
        row: dict[str, Any] = {
            "protocol_group": protocol_group(protocol), "origin": REPRODUCED,
            "row": f"{_reproduced_label(path.parent.name, metrics)} [{path.parent.name}]",
            "input": metrics.get("input_kind") or "", "n_images": metrics.get("n_images"), "protocol": protocol,
            "reading": "measured by this suite", "sources": f"{path.parent.name}/{path.name}",
            "caveats": "; ".join(labels.get("caveats") or []),
            "_comparable": labels["comparable_with_paper"] == "yes",
            "_why": "; ".join(labels.get("not_comparable_because") or [])}
        for subset in SUBSETS:
            for metric, decimals in _REPRODUCED_DECIMALS.items():
                mean = (((metrics.get("metrics") or {}).get(subset) or {}).get(metric) or {}).get("mean")
                if mean is not None and math.isfinite(float(mean)):
                    column = metric if subset == "all" else f"{metric}_{subset}"
                    row[column] = f"{float(mean):.{decimals}f}"
        rows.append(row)
    return rows


def literature_table(eval_dir: Path, entries: Iterable[LiteratureEntry] = LITERATURE) -> pd.DataFrame:
    """The published values (:data:`LITERATURE`) beside the reproduced rows of ``eval_dir`` (results/eval), grouped
    by protocol: the known protocol ids first (in :data:`PROTOCOLS` order), then ``unknown``.

    ``rank`` is the PSNR rank inside one known protocol, among the rows measured on the DPDD test set (published
    rows, and reproduced rows whose labels say comparable); every other row has no rank and ``why_not_ranked`` says
    why. Values are strings: published ones as printed, reproduced ones rounded (PSNR 2, others 4 decimals)."""
    entries = list(entries)
    check_literature(entries)
    published = sorted(_published_rows(entries), key=lambda r: r["row"].casefold())
    rows = published + reproduced_rows(eval_dir)
    for row in rows:
        comparable = row.pop("_comparable", True)
        why = row.pop("_why", "")
        if row["protocol_group"] == UNKNOWN:
            row["why_not_ranked"] = "protocol not known exactly: not ranked against any other row"
        elif not comparable:
            row["why_not_ranked"] = f"not comparable with the published rows ({why})"
        elif "psnr" not in row:
            row["why_not_ranked"] = "no PSNR"
        else:
            row["why_not_ranked"] = ""
    order = {group: i for i, group in enumerate(PROTOCOLS)}
    groups = sorted({r["protocol_group"] for r in rows}, key=lambda g: (g == UNKNOWN, order.get(g, len(order)), g))
    ordered: list[dict[str, Any]] = []
    for group in groups:
        members = [r for r in rows if r["protocol_group"] == group]
        ranked = sorted((r for r in members if not r["why_not_ranked"]), key=lambda r: -float(r["psnr"]))
        for i, r in enumerate(ranked, 1):
            r["rank"] = i
        # Unranked rows keep a neutral order (published by method, then reproduced by run), never one by PSNR.
        ordered += ranked + [r for r in members if r["why_not_ranked"] and r["origin"] == PUBLISHED] + [
            r for r in members if r["why_not_ranked"] and r["origin"] != PUBLISHED]
    df = pd.DataFrame(ordered, columns=list(TABLE_COLUMNS))
    df["rank"] = df["rank"].astype("Int64")
    return df


def _md_cell(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA:
        return "–"
    return " ".join(str(value).split()).replace("|", "\\|")


_MD_VALUES = ("psnr", "ssim", "mae", "rmse", "lpips", "psnr_indoor", "psnr_outdoor", "params_M", "n_images")


def _title(column: str) -> str:
    if column == "n_images":
        return "images"
    metric, _, subset = column.partition("_") if not column.startswith("params") else (column, "", "")
    return f"{METRIC_TITLES[metric]} {subset}".strip()


def to_markdown(df: pd.DataFrame) -> str:
    """The table as markdown: one section per protocol group, each with its rule, the rows, and the caveats."""
    lines = ["# Published DPDD dual-pixel results beside this suite's rows", "",
             "> **Each section is one evaluation protocol. Numbers from different sections were measured under "
             "different rules (bit depth, resolution, SSIM implementation) and are never ranked together.** "
             "Rows of an unknown protocol are not ranked at all, and reproduced rows whose labels say they are not "
             "comparable with the paper (synthetic data, short schedules, ...) are not ranked either. Published "
             "values are the sources' digits; an empty cell (–) means the source gives no value. "
             "docs/literature.md lists the sources and how each value was read.", ""]
    head = ["rank", "row", "origin", "reading", *(_title(c) for c in _MD_VALUES), "input", "sources", "caveats"]
    for group, sub in df.groupby("protocol_group", sort=False):
        title = ("## Protocol not known exactly (not ranked: each row's protocol note says what its source states)"
                 if group == UNKNOWN else
                 f"## Protocol `{group}`: {PROTOCOLS.get(group, 'rules in ldp/protocols.py and docs/metrics.md')}")
        lines += [title, "", "| " + " | ".join(head) + (" | protocol |" if group == UNKNOWN else " |"),
                  "|" + "---|" * (len(head) + (group == UNKNOWN))]
        for r in sub.to_dict("records"):
            cells = [_md_cell(r["rank"]), _md_cell(r["row"]), _md_cell(r["origin"]), _md_cell(r["reading"]),
                     *(_md_cell(r[c]) for c in _MD_VALUES), _md_cell(r["input"]), _md_cell(r["sources"]),
                     _md_cell(r["caveats"] or "")]
            if group == UNKNOWN:
                cells.append(_md_cell(r["protocol"]))
            lines.append("| " + " | ".join(cells) + " |")
        unranked = [_md_cell(r["row"]) for r in sub.to_dict("records") if r["why_not_ranked"] and group != UNKNOWN]
        if unranked:
            lines += ["", f"Not ranked ({len(unranked)} rows; why_not_ranked in {LITERATURE_CSV} says why, their "
                          "caveats list what their labels say): " + "; ".join(unranked) + "."]
        lines.append("")
    lines += ["Readings: " + "; ".join(f"**{k}** = {v}" for k, v in READINGS.items()) + ".", ""]
    return "\n".join(lines)


def write_literature_table(eval_dir: Path, out_dir: Path) -> pd.DataFrame:
    """``<out_dir>/literature.csv`` and ``literature.md`` from :func:`literature_table`, each written atomically."""
    df = literature_table(eval_dir)
    out_dir = Path(out_dir)
    atomic_write_text(out_dir / LITERATURE_CSV, df.to_csv(index=False))
    atomic_write_text(out_dir / LITERATURE_MD, to_markdown(df))
    return df
