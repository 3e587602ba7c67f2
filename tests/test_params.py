"""Both profiles load strictly and resolve every experiment; the paper profile is an overlay of params.yaml that DVC's
own `-S` machinery reproduces; every params error names the file given and the exact key of the layer that holds it."""

import json
import shutil
from pathlib import Path

import pytest
import yaml

from ldp.blurmap.estimate import BlurMapConfig
from ldp.config import ConfigError, Params, load_params, profile_overrides, section
from ldp.data.sources import load_data_config
from ldp.experiments import ResolvedExperiment, load_experiments, resolve
from ldp.registry import list_models
from ldp.runs import configure_evaluation, configure_training

REPO = Path(__file__).resolve().parents[1]
PROFILES = {"smoke": REPO / "params.yaml", "paper": REPO / "profiles" / "paper.yaml"}
SYNTHETIC_ONLY = {"ldp-small-oracle"}


@pytest.fixture(params=sorted(PROFILES), ids=sorted(PROFILES))
def params(request):
    return load_params(PROFILES[request.param])


def _smoke(tmp_path: Path, edit=None, name: str = "my-params.yaml") -> Path:
    """A copy of params.yaml under another name (errors must name it), edited by ``edit(dict)``."""
    data = yaml.safe_load(PROFILES["smoke"].read_text())
    if edit:
        edit(data)
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def test_every_experiment_resolves(params):
    load_data_config(params)
    for map_id in params["blurmaps"]:
        section(params, f"blurmaps.{map_id}", BlurMapConfig)
    models = set(list_models())
    for name, exp in load_experiments(params).items():
        resolved = resolve(params, name)
        assert resolved.model == exp.model in models
        if exp.ldp_losses:
            assert resolved.train.loss.bwl > 0 and resolved.train.loss.bal > 0, name


def test_paper_profile_is_an_overlay_that_dvc_overrides_reproduce(tmp_path):
    smoke, paper = load_params(PROFILES["smoke"]), load_params(PROFILES["paper"])
    assert set(paper["experiments"]) == set(smoke["experiments"]) - SYNTHETIC_ONLY
    assert all(paper["experiments"][n] == smoke["experiments"][n] for n in paper["experiments"])
    assert "oracle" not in paper["blurmaps"] and "synthetic" not in paper["data"]
    assert len(PROFILES["paper"].read_text().splitlines()) < 110  # not a copy of the grid
    # `make paper` = `dvc exp run --temp -S ...` with these overrides; apply them with DVC's own code.
    from dvc.utils.hydra import apply_overrides

    work = tmp_path / "params.yaml"
    shutil.copy(PROFILES["smoke"], work)
    args = profile_overrides(PROFILES["paper"])
    assert args[::2] == ["-S"] * (len(args) // 2)
    apply_overrides(work, args[1::2])
    assert dict(load_params(work)) == dict(paper)


def test_the_paper_profile_is_labelled_by_its_values(params):
    kinds = {m.get("weights", "none") for m in params["blurmaps"].values() if m["estimator"] == "clip"}
    if params.source.endswith("paper.yaml"):
        assert params["data"]["source"] == "dpdd" and kinds == {"openai"}
    else:
        assert params["data"]["source"] == "synthetic" and kinds == {"none"}


def test_unknown_top_level_key_is_an_error_naming_the_file(tmp_path):
    path = _smoke(tmp_path, lambda d: d.update(trian={"iters": 2}))
    with pytest.raises(ConfigError, match=r"my-params.yaml:trian: unknown top-level key \(did you mean 'train'"):
        load_params(path)


def test_ldp_losses_true_without_its_section_is_an_error(tmp_path):
    params = load_params(_smoke(tmp_path, lambda d: d.pop("ldp_losses")))
    with pytest.raises(ConfigError, match=r"my-params.yaml:experiments.ldp-small.ldp_losses: true, but .* no "
                                          r"ldp_losses section"):
        resolve(params, "ldp-small")
    resolve(params, "nafnet-dp")  # rows without the LDP losses do not need it


@pytest.mark.parametrize(("edit", "message"), [
    (lambda d: d["experiments"]["ldp-small"].update(train={"optim": {"lrr": 1}}),
     r"my-params.yaml:experiments.ldp-small.train.optim.lrr: unknown key \(did you mean 'lr'"),
    (lambda d: d["recipes"]["ldp"].update(optim={"lrr": 1}),
     r"my-params.yaml:recipes.ldp.optim.lrr: unknown key"),
    (lambda d: d["recipes"]["ldp"].update(iters="many"),
     r"my-params.yaml:recipes.ldp.iters: expected an integer"),
    (lambda d: d["ldp_losses"].update(balx=1),
     r"my-params.yaml:ldp_losses.balx: unknown key"),
    (lambda d: d["train"].update(batch_size=1.5),
     r"my-params.yaml:train.batch_size: expected an integer"),
    (lambda d: d["experiments"]["ldp-small"].update(model="ldp-smal"),
     r"my-params.yaml:experiments.ldp-small.model: unknown model 'ldp-smal'"),
    (lambda d: d["experiments"]["ldp-small"].update(blurmap="clip-nope"),
     r"my-params.yaml:experiments.ldp-small.blurmap: 'clip-nope' is not defined under blurmaps"),
    (lambda d: d["experiments"]["ldp-small"].update(train={"model_overrides": {"widthh": 8}}),
     r"my-params.yaml:experiments.ldp-small.train.model_overrides.widthh: unknown key"),
    (lambda d: d["experiments"]["ldp-small"].update(model="input-average"),
     r"my-params.yaml:experiments.ldp-small.model: 'input-average' is an input baseline: it has nothing to train"),
    (lambda d: d["experiments"]["ldp-small"].update(recipe="nope"),
     r"my-params.yaml:recipes.nope: not defined"),
])
def test_errors_name_the_file_and_the_layer_key(tmp_path, edit, message):
    params = load_params(_smoke(tmp_path, edit))
    with pytest.raises(ConfigError, match=message):
        resolve(params, "ldp-small")


def test_each_value_knows_its_layer():
    exp = resolve(load_params(PROFILES["smoke"]), "restormer-dp-plus")
    f = exp.params_file
    assert exp.sources["iters"] == f"{f}:train.iters"
    assert exp.sources["optim.lr"] == f"{f}:recipes.restormer.optim.lr"
    assert exp.sources["loss.bal"] == f"{f}:ldp_losses.bal"
    assert "schedule.flat_iters" not in exp.sources  # a default
    assert exp.key_path("schedule.flat_iters") == f"{f}:train.schedule.flat_iters"
    assert exp.key_path("progressive[1]") == f"{f}:train.progressive[1]"
    text = exp.describe()
    assert "optim.lr" in text and f"{f}:recipes.restormer.optim.lr" in text and "default" in text


def test_resolved_experiment_round_trips_through_json(tmp_path):
    params = load_params(PROFILES["smoke"])
    exp = resolve(params, "ldp-small").for_evaluation(configure_evaluation(params, "ldp-small").evaluate)
    data = json.loads(json.dumps(exp.to_json()))
    back = ResolvedExperiment.from_json(data, "config.json")
    assert back == exp
    data["train"]["iterz"] = 1
    with pytest.raises(ConfigError, match=r"config.json:train.iterz: unknown key"):
        ResolvedExperiment.from_json(data, "config.json")
    with pytest.raises(ConfigError, match="not a resolved experiment"):
        ResolvedExperiment.from_json({"format": "other"}, "config.json")


def test_training_job_reads_the_data_source_stamp(tmp_path):
    from ldp.runs import Layout

    (tmp_path / "source.json").write_text(json.dumps({"source": "synthetic", "config_sha": "x"}))
    job = configure_training(load_params(PROFILES["smoke"]), "nafnet-dp", Layout(dataset=tmp_path))
    assert job.experiment.data_source == "synthetic" and job.experiment.labels["data"] == "synthetic"
    assert job.experiment.clip_weights_kinds == ()
    ldp = configure_training(load_params(PROFILES["smoke"]), "ldp-small", Layout(dataset=tmp_path)).experiment
    assert ldp.clip_weights_kinds == ("random",)


def test_a_plain_dict_names_params_yaml():
    with pytest.raises(ConfigError, match=r"^params.yaml:experiments.x: no such experiment"):
        resolve(Params({"experiments": {"y": {}}}), "x")


def test_cli_errors_exit_2_naming_the_file(tmp_path, capsys):
    from ldp.cli import main

    path = _smoke(tmp_path, lambda d: d["experiments"]["ldp-small"].update(train={"optim": {"lrr": 1}}))
    assert main(["show-config", "ldp-small", "--params", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{path}:experiments.ldp-small.train.optim.lrr" in err
    assert main(["show-config", "ldp-small"]) == 0
    assert "params.yaml:train.iters" in capsys.readouterr().out
