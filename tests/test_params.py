"""Both profiles load strictly, every experiment builds its training config, and the grids agree."""

from pathlib import Path

import pytest
import yaml

from ldp.blurmap.estimate import BlurMapConfig
from ldp.complexity import ComplexityConfig
from ldp.config import ConfigError, section
from ldp.data.sources import load_data_config
from ldp.evaluate import EvalConfig
from ldp.experiments import load_experiments, train_overrides
from ldp.registry import list_models
from ldp.runs import MlflowConfig, _run_name
from ldp.train import train_config
from pipelines.figures import FiguresConfig
from pipelines.report import ReportConfig
from pipelines.tables import TablesConfig

REPO = Path(__file__).resolve().parents[1]
PROFILES = {"smoke": REPO / "params.yaml", "paper": REPO / "profiles" / "paper.yaml"}
SYNTHETIC_ONLY = {"ldp-small-oracle"}


@pytest.fixture(params=sorted(PROFILES), ids=sorted(PROFILES))
def params(request):
    return yaml.safe_load(PROFILES[request.param].read_text())


def test_every_section_loads_strictly(params):
    load_data_config(params)
    for map_id in params["blurmaps"]:
        section(params, f"blurmaps.{map_id}", BlurMapConfig)
    for key, cls in [("evaluate", EvalConfig), ("complexity", ComplexityConfig), ("figures", FiguresConfig),
                     ("tables", TablesConfig), ("report", ReportConfig), ("mlflow", MlflowConfig)]:
        section(params, key, cls)


def test_every_experiment_builds_a_training_config(params):
    models = set(list_models())
    for name, exp in load_experiments(params).items():
        assert exp.model in models, name
        cfg = train_config(params, train_overrides(params, exp), override_where=f"experiments.{name}")
        if exp.ldp_losses:
            assert cfg.loss.bwl > 0 and cfg.loss.bal > 0, name


def test_run_names_are_short_and_unique(params, monkeypatch):
    monkeypatch.delenv("DVC_EXP_NAME", raising=False)
    experiments = load_experiments(params)
    names = {key: _run_name(exp, key) for key, exp in experiments.items()}
    assert names["ldp-small"] == "ldp-small" and names["ldp-small-vitb16"] == "ldp-small-vitb16"
    assert names["restormer-dp-plus"] == "restormer-dp-plus"
    assert len(set(names.values())) == len(names)
    monkeypatch.setenv("DVC_EXP_NAME", "lean-fish")
    assert _run_name(experiments["nafnet-dp"], "nafnet-dp") == "nafnet-dp@lean-fish"


def test_profiles_share_the_grid():
    smoke = yaml.safe_load(PROFILES["smoke"].read_text())["experiments"]
    paper = yaml.safe_load(PROFILES["paper"].read_text())["experiments"]
    assert set(smoke) - SYNTHETIC_ONLY == set(paper)
    for name in paper:
        assert paper[name] == smoke[name], name


def test_smoke_profile_is_labelled_and_offline():
    p = yaml.safe_load(PROFILES["smoke"].read_text())
    assert p["data"]["source"] == "synthetic" and p["tables"]["profile"] == "smoke"
    assert all(m.get("weights", "none") == "none" for m in p["blurmaps"].values() if m["estimator"] == "clip")


def test_a_misspelt_key_is_an_error_naming_it():
    p = yaml.safe_load(PROFILES["smoke"].read_text())
    p["experiments"]["ldp-small"]["blurmapp"] = "x"
    with pytest.raises(ConfigError, match=r"experiments.ldp-small.blurmapp: unknown key \(did you mean 'blurmap'"):
        load_experiments(p)
    p = yaml.safe_load(PROFILES["smoke"].read_text())
    p["experiments"]["ldp-small"]["train"] = {"iterz": 3}
    exp = load_experiments(p)["ldp-small"]
    with pytest.raises(ConfigError, match="iterz"):
        train_config(p, train_overrides(p, exp))


def test_dvc_yaml_params_exist():
    dvc = yaml.safe_load((REPO / "dvc.yaml").read_text())
    p = yaml.safe_load(PROFILES["smoke"].read_text())
    for name, stage in dvc["stages"].items():
        body = stage.get("do", stage)
        for key in body.get("params", []):
            if "${" in key:
                continue
            assert key.split(".")[0] in p, f"stage {name}: params key {key} missing from params.yaml"
