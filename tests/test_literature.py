"""ldp.literature: every published value has a source, a number and a protocol; LDP's values are ldp.paper_results';
the table sets them beside a small hand-written results/eval tree, grouped by protocol, ranked only inside one."""

import json
import math

import pandas as pd
import pytest

from ldp.literature import (
    LITERATURE,
    LITERATURE_CSV,
    LITERATURE_MD,
    PUBLISHED,
    REPRODUCED,
    SOURCES,
    UNKNOWN,
    LiteratureEntry,
    LiteratureError,
    check_literature,
    literature_frame,
    literature_table,
    protocol_group,
    to_markdown,
    write_literature_table,
)
from ldp.paper_results import PAPER_COMPLEXITY, PAPER_ROWS

# LDP-sourced rows of ldp.literature -> the ldp.paper_results row they must reproduce.
PAPER_KEYS = {("LDP", "Large"): "main/ldp-large", ("LDP", "Small"): "main/ldp-small",
              ("LDP", "ablation 'Ours' (DP-aware format, ViT-B/32)"): "tab1/ours",
              ("Restormer", "as in LDP's table"): "tab3/restormer",
              ("Restormer", "+ L_bwl + L_bal (LDP's losses)"): "tab3/restormer+",
              ("DeepRFT", "as in LDP's table"): "tab3/deeprft",
              ("DeepRFT", "+ L_bwl + L_bal (LDP's losses)"): "tab3/deeprft+"}


def test_every_value_has_a_source_a_place_a_number_and_a_protocol():
    check_literature()  # raises on any bad entry
    df = literature_frame()
    assert len(df) == len(LITERATURE) >= 40
    assert df["number"].map(math.isfinite).all()
    assert (df["url"].str.len() > 0).all() and (df["document"].str.len() > 0).all() and (df["where"] != "").all()
    assert set(df["source"]) <= set(SOURCES)
    assert {"LDP", "Restormer", "LaKDNet", "IFAN", "DPDNet", "RDPD", "Uformer"} <= set(df["method"])
    # digits as printed, not as a float would print them
    assert "26.6160" in set(df["value"]) and "0.037130" in set(df["value"])
    # the protocols are ids or say what the source states
    for p in df["protocol"]:
        assert p in {"dpdd16-restormer-v1", "dpdd8-restormer-v1", "dpdd8-mmagic-v1", "dpdd16-half-v1"} or \
            (p.startswith("unknown: ") and len(p) > len("unknown: ") + 10)


def _entry(**kw):
    base = {"method": "M", "variant": "v", "subset": "all", "metric": "psnr", "value": "25.00", "source": "ldp-supp",
            "where": "Tab. 9", "protocol": "dpdd16-restormer-v1"}
    return LiteratureEntry(**{**base, **kw})


def test_check_names_every_bad_entry():
    bad = [_entry(source="nowhere"), _entry(variant="a", value="≈27"), _entry(variant="b", protocol="16-bit"),
           _entry(variant="c", metric="psnr2"), _entry(variant="d", where=" "), _entry(variant="e", value="nan")]
    with pytest.raises(LiteratureError) as err:
        check_literature(bad)
    msg = str(err.value)
    assert msg.startswith("ldp/literature.py: ")
    for needle in ("source 'nowhere' is not in SOURCES", "'≈27' is not a finite number", "protocol '16-bit'",
                   "unknown metric", "no table, figure or comment", "'nan' is not a finite number"):
        assert needle in msg
    with pytest.raises(LiteratureError, match="given twice"):
        check_literature([_entry(), _entry(value="25.10")])


def test_no_ldp_value_differs_from_paper_results():
    # every LDP-sourced value but the other methods' Fig. 1 plot readings (those are not in ldp.paper_results)
    ldp_sourced = [e for e in LITERATURE if e.source.startswith("ldp-")
                   and (e.method == "LDP" or e.variant in ("as in LDP's table", "+ L_bwl + L_bal (LDP's losses)"))]
    checked = 0
    for e in ldp_sourced:
        if e.metric == "params_M":
            name = {"Small": "ldp-small", "Large": "ldp-large"}[e.variant]
            assert e.number == PAPER_COMPLEXITY[name]["params_M"]
        else:
            row = PAPER_ROWS[PAPER_KEYS[(e.method, e.variant)]]
            attr = e.metric if e.subset == "all" else f"{e.metric}_{e.subset}"
            assert e.number == getattr(row, attr), (e, attr)
        checked += 1
    # and every value paper_results has for those rows is in the table
    expected = sum(getattr(PAPER_ROWS[key], a) is not None for key in PAPER_KEYS.values()
                   for a in ("psnr", "ssim", "mae", "rmse", "psnr_indoor", "psnr_outdoor")) + 2
    assert checked == expected == len(ldp_sourced)


def _metrics(psnr, *, protocol="dpdd16-restormer-v1", comparable=True, label="Net", why=(), indoor=None, n=76):
    subsets = {"all": {"psnr": {"mean": psnr}, "ssim": {"mean": 0.81234}, "lpips": {"mean": None}}}
    if indoor is not None:
        subsets["indoor"] = {"psnr": {"mean": indoor}}
    out = {"model": "m", "input_kind": "dp", "n_images": n, "experiment": {"label": label}, "metrics": subsets,
           "labels": {"comparable_with_paper": "yes" if comparable else "no", "caveats": list(why),
                      "not_comparable_because": list(why)}}
    if protocol is not None:
        out["protocol"] = protocol
    return out


@pytest.fixture()
def eval_dir(tmp_path):
    runs = {"good": _metrics(27.5, label="Ours on DPDD", indoor=30.1),
            "synthetic": _metrics(13.2, comparable=False, label="Smoke", why=["not the DPDD test set (synthetic)"]),
            "eight-bit": _metrics(26.0, protocol="dpdd8-restormer-v1", label="8-bit run"),
            "old": _metrics(25.0, protocol=None, label="Old run"),
            "input-combined": _metrics(24.0, label="ignored")}
    for name, m in runs.items():
        (tmp_path / "eval" / name).mkdir(parents=True)
        (tmp_path / "eval" / name / "metrics.json").write_text(json.dumps(m))
    return tmp_path / "eval"


PUBLISHED_FAKE = [_entry(method="A", value="26.00"), _entry(method="B", value="26.5", protocol="unknown: 8-bit, "
                                                            "SSIM code not stated"),
                  _entry(method="C", value="25.90", protocol="dpdd8-restormer-v1"),
                  _entry(method="A", metric="ssim", value="0.8000")]


def test_reproduced_rows_join_the_published_ones_by_protocol(eval_dir):
    df = literature_table(eval_dir, PUBLISHED_FAKE)
    assert list(df["protocol_group"].drop_duplicates()) == ["dpdd16-restormer-v1", "dpdd8-restormer-v1", UNKNOWN]
    rows = df.set_index("row")
    good, smoke = rows.loc["Ours on DPDD [good]"], rows.loc["Smoke [synthetic]"]
    assert good["origin"] == REPRODUCED and good["psnr"] == "27.50" and good["psnr_indoor"] == "30.10"
    assert good["ssim"] == "0.8123" and pd.isna(good["lpips"]) and good["n_images"] == 76
    assert rows.loc["Input: combined image C [input-combined]", "origin"] == REPRODUCED  # the baseline's own label
    # inside dpdd16-restormer-v1: the comparable reproduced row and the published one are ranked, the smoke row not
    assert good["rank"] == 1 and rows.loc["A (v)", "rank"] == 2 and rows.loc["A (v)", "ssim"] == "0.8000"
    assert pd.isna(smoke["rank"]) and "not the DPDD test set (synthetic)" in smoke["why_not_ranked"]
    # another protocol is its own ranking
    assert rows.loc["8-bit run [eight-bit]", "rank"] == 1 and rows.loc["C (v)", "rank"] == 2
    assert set(rows.loc[["8-bit run [eight-bit]", "C (v)"], "protocol_group"]) == {"dpdd8-restormer-v1"}
    # unknown protocols (a published note, a run that recorded none) are never ranked
    for name in ("B (v)", "Old run [old]"):
        assert rows.loc[name, "protocol_group"] == UNKNOWN and pd.isna(rows.loc[name, "rank"])
        assert rows.loc[name, "why_not_ranked"].startswith("protocol not known exactly")
    assert rows.loc["B (v)", "origin"] == PUBLISHED and rows.loc["B (v)", "protocol"].startswith("unknown: 8-bit")


def test_markdown_gives_each_protocol_its_own_section(eval_dir):
    df = literature_table(eval_dir, PUBLISHED_FAKE)
    md = to_markdown(df)
    sections = md.split("\n## ")[1:]
    assert [s.splitlines()[0].split(":")[0] for s in sections] == [
        "Protocol `dpdd16-restormer-v1`", "Protocol `dpdd8-restormer-v1`", "Protocol not known exactly (not ranked"]
    assert "never ranked together" in md
    for row in df["row"]:  # each row in exactly one section
        assert sum(f"| {row} |" in s for s in sections) == 1, row
    assert "| 1 | Ours on DPDD [good] |" in sections[0] and "| – | Smoke [synthetic] |" in sections[0]
    assert "Not ranked (1 rows" in sections[0]
    assert sections[2].splitlines()[2].endswith("| protocol |")  # unknown rows show what their source says


def test_write_keeps_the_printed_digits(eval_dir, tmp_path):
    out = tmp_path / "tables"
    df = write_literature_table(eval_dir, out)
    assert sorted(p.name for p in out.iterdir()) == [LITERATURE_CSV, LITERATURE_MD]
    back = pd.read_csv(out / LITERATURE_CSV, dtype=str)
    mm = back[back["row"].str.startswith("Restormer (official dual-pixel weights")].iloc[0]
    assert (mm["psnr"], mm["ssim"], mm["mae"], mm["protocol_group"]) == ("26.6160", "0.8346", "0.0354",
                                                                        "dpdd8-mmagic-v1")
    assert len(back) == len(df) and (out / LITERATURE_MD).read_text() == to_markdown(df)
    assert not list(out.glob(".*"))  # no temp files left


def test_the_whole_table_on_an_empty_eval_dir_has_only_published_rows(tmp_path):
    df = literature_table(tmp_path / "no-eval")
    assert set(df["origin"]) == {PUBLISHED}
    ranked = df[df["rank"].notna()]
    assert set(ranked["protocol_group"]) <= {"dpdd16-restormer-v1", "dpdd8-restormer-v1", "dpdd8-mmagic-v1",
                                             "dpdd16-half-v1"}
    assert df[df["protocol_group"] == UNKNOWN]["rank"].isna().all()


def test_an_unlabelled_evaluation_names_its_file(tmp_path):
    (tmp_path / "eval" / "x").mkdir(parents=True)
    (tmp_path / "eval" / "x" / "metrics.json").write_text(json.dumps({"metrics": {}}))
    with pytest.raises(ValueError, match=r"eval/x/metrics\.json: no labels"):
        literature_table(tmp_path / "eval")
    (tmp_path / "eval" / "x" / "metrics.json").write_text("{broken")
    with pytest.raises(ValueError, match=r"eval/x/metrics\.json: evaluation output not readable"):
        literature_table(tmp_path / "eval")


def test_protocol_group_keeps_any_recorded_id():
    assert protocol_group("dpdd16-restormer-v1") == "dpdd16-restormer-v1"
    assert protocol_group("dpdd16-someday-v2") == "dpdd16-someday-v2"
    assert protocol_group("unknown: 8-bit") == protocol_group(None) == protocol_group("") == UNKNOWN


def test_protocol_ids_are_the_suites():
    protocols = pytest.importorskip("ldp.protocols")
    from ldp.literature import PROTOCOLS

    assert set(PROTOCOLS) <= set(protocols.PROTOCOLS)
