"""ldp.tracking: URI and names, the unreachable-server case, run resume, concurrent store creation, and a real
`mlflow server` on 127.0.0.1."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import warnings
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch

from ldp.tracking import (
    TRACKING_RECORD,
    Tracker,
    default_tracking_uri,
    flatten_params,
    outside_dvc_temp,
    redact_uri,
    run_name,
    standard_tags,
)
from ldp.train import TrainConfig, ValConfig, run_training

REPO = Path(__file__).resolve().parents[1]
MODEL = "nafnet-dp"
SERVER_START_TIMEOUT_S = 240  # ~16 s on an idle machine; much more on a loaded 2-core one


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _closed_port_uri() -> str:
    return f"http://127.0.0.1:{_free_port()}"  # nothing listens there once the probe socket is closed


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    from test_train import make_tiny_dataset

    return make_tiny_dataset(tmp_path_factory.mktemp("tiny_dp_tracking"))


def tiny_cfg(iters: int = 3) -> TrainConfig:
    return TrainConfig(iters=iters, patch_size=32, batch_size=2, checkpoint_every=0, seed=1, device="cpu",
                       model_overrides={"tiny": True}, val=ValConfig(every=2, crop=32, samples=1))


# ---------------------------------------------------------------------------------------------------------------
# URI, names, tags


def test_default_uri_is_absolute_sqlite_in_repo_whatever_the_cwd(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(tmp_path)
    uri = default_tracking_uri()
    assert uri == f"sqlite:///{REPO / 'mlflow.db'}"
    assert uri.startswith("sqlite:////")  # four slashes: an absolute path
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://team-server:5000")
    assert default_tracking_uri() == "http://team-server:5000"


def test_dvc_experiment_copies_map_to_the_enclosing_repo():
    assert outside_dvc_temp(Path("/r/repo/.dvc/tmp/exps/tmpab12cd")) == Path("/r/repo")
    assert outside_dvc_temp(Path("/r/repo")) == Path("/r/repo")


def test_run_names_tags_and_params(monkeypatch):
    monkeypatch.setenv("DVC_EXP_NAME", "exp-abc12")
    assert run_name("ldp-small", "bwl+bal") == "ldp-small-bwl+bal@exp-abc12"
    assert run_name("ldp-small", "bwl+bal", stage="train") == "ldp-small-bwl+bal:train@exp-abc12"
    monkeypatch.delenv("DVC_EXP_NAME")
    assert run_name("nafnet-dp") == "nafnet-dp" and run_name("nafnet-dp", stage="evaluate") == "nafnet-dp:evaluate"
    monkeypatch.setenv("DVC_EXP_NAME", "exp-abc12")
    tags = standard_tags("ldp-small", protocol="dpdd16-restormer-v1", data_source="synthetic", device="cpu",
                         clip_weights="random")
    for key in ("git_commit", "DVC_EXP_NAME", "model", "protocol", "data_source", "device", "clip_weights"):
        assert key in tags
    assert tags["DVC_EXP_NAME"] == "exp-abc12" and tags["clip_weights"] == "random"
    flat = flatten_params({"train": TrainConfig(), "data": {"source": "synthetic"}, "seed": 3})
    assert flat["train.optim.lr"] == "0.001" and flat["train.optim.betas"] == "[0.9, 0.999]"
    assert flat["data.source"] == "synthetic" and flat["seed"] == "3" and flat["train.loss.charbonnier"] == "1.0"
    assert redact_uri("https://bob:secret@host:5000/x") == "https://***@host:5000/x"


# ---------------------------------------------------------------------------------------------------------------
# Unreachable server


def test_unreachable_server_does_not_stop_the_run(dataset, tmp_path):
    out = tmp_path / "run"
    uri = _closed_port_uri()
    entered = []

    @contextmanager
    def open_tracker(run_id):
        start = time.monotonic()
        with Tracker({"train": tiny_cfg()}, "main", run_name(MODEL), standard_tags(MODEL), uri=uri, out_dir=out,
                     run_id=run_id) as tracker:
            entered.append(time.monotonic() - start)
            yield tracker

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        summary = run_training(tiny_cfg(), MODEL, dataset, out, open_tracker=open_tracker)
    assert entered and entered[0] < 5.0  # one short probe, not MLflow's minutes of HTTP retries
    assert summary["iterations_this_run"] == 3 and (out / "model.pt").is_file()
    ours = [w for w in caught if "MLflow tracking" in str(w.message)]
    assert len(ours) == 1 and "unavailable" in str(ours[0].message)  # warned once, not per call
    record = json.loads((out / TRACKING_RECORD).read_text())
    assert record["tracked"] is False and record["run_id"] is None
    assert "unreachable" in record["reason"] and record["tracking_uri"] == uri


def test_disabled_tracker_and_non_zero_rank_record_why(tmp_path, monkeypatch):
    with Tracker(None, "main", "x", uri=_closed_port_uri(), out_dir=tmp_path / "a", enabled=False) as t:
        t.log_metrics({"a": 1.0})
    assert json.loads((tmp_path / "a" / TRACKING_RECORD).read_text())["reason"] == "disabled"
    monkeypatch.setenv("RANK", "1")
    with Tracker(None, "main", "x", uri=_closed_port_uri(), out_dir=tmp_path / "b") as t:
        t.log_metrics({"a": 1.0})
    assert not (tmp_path / "b" / TRACKING_RECORD).exists()  # only rank 0 writes


# ---------------------------------------------------------------------------------------------------------------
# A real MLflow server


@pytest.fixture
def mlflow_server(tmp_path):
    port = _free_port()
    log = (tmp_path / "server.log").open("w")
    env = dict(os.environ, MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false", MLFLOW_DISABLE_TELEMETRY="true")
    env.pop("MLFLOW_TRACKING_URI", None)
    cmd = [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
           "--backend-store-uri", f"sqlite:///{tmp_path / 'server.db'}",
           "--artifacts-destination", str(tmp_path / "artifacts")]
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=tmp_path,
                            start_new_session=True)
    uri = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + SERVER_START_TIMEOUT_S
        while True:
            assert proc.poll() is None, f"mlflow server exited: {(tmp_path / 'server.log').read_text()[-3000:]}"
            try:
                with urllib.request.urlopen(f"{uri}/health", timeout=1) as resp:
                    if resp.status == 200:
                        break
            except OSError:
                pass
            assert time.monotonic() < deadline, "mlflow server did not answer /health in time"
            time.sleep(0.5)
        yield uri, proc
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)  # the group of the server we started (uvicorn child included)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        log.close()


@pytest.mark.network
def test_training_run_logs_to_a_real_mlflow_server(mlflow_server, dataset, tmp_path, monkeypatch):
    from mlflow.tracking import MlflowClient

    uri, proc = mlflow_server
    monkeypatch.setenv("DVC_EXP_NAME", "exp-test1")
    out = tmp_path / "run"
    cfg = tiny_cfg(iters=4)
    tags = standard_tags(MODEL, protocol="dpdd16-restormer-v1", data_source="tiny-test", device="cpu",
                         clip_weights="none")
    name = run_name(MODEL, "smoke", stage="train")
    run_training(cfg, MODEL, dataset, out,
                 open_tracker=lambda run_id: Tracker({"train": cfg}, "main", name, tags, uri=uri, run_id=run_id))
    record = json.loads((out / TRACKING_RECORD).read_text())
    assert record["tracked"] is True and record["errors"] == [] and record["logged"]["models"] == 1, record

    client = MlflowClient(tracking_uri=uri)
    run = client.get_run(record["run_id"])
    assert run.info.run_name == "nafnet-dp-smoke:train@exp-test1" and run.info.status == "FINISHED"
    assert client.get_experiment(run.info.experiment_id).name == "main"
    assert run.data.params["train.iters"] == "4" and run.data.params["train.optim.lr"] == "0.001"
    assert run.data.params["train.model_overrides.tiny"] == "True"
    for key, value in (("model", MODEL), ("DVC_EXP_NAME", "exp-test1"), ("protocol", "dpdd16-restormer-v1"),
                       ("data_source", "tiny-test"), ("device", "cpu"), ("clip_weights", "none"),
                       ("val_view", "crop32")):
        assert run.data.tags[key] == value
    assert "git_commit" in run.data.tags
    history = client.get_metric_history(run.info.run_id, "train.loss")
    assert sorted(m.step for m in history) == [1, 2, 3, 4]
    assert [m.step for m in client.get_metric_history(run.info.run_id, "train.lr")] == [1, 2, 3, 4]
    assert "train.charbonnier" in run.data.metrics
    assert sorted(m.step for m in client.get_metric_history(run.info.run_id, "val.psnr")) == [2, 4]
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"train_log.csv", "val_log.csv", "train_summary.json", "model_summary.txt", "samples"} <= artifacts
    # The model logged through mlflow.pytorch.log_model reloads and runs.
    import mlflow.pytorch

    models = client.search_logged_models(experiment_ids=[run.info.experiment_id])
    assert any(m.source_run_id == run.info.run_id for m in models)
    model_uri = next(f"models:/{m.model_id}" for m in models if m.source_run_id == run.info.run_id)
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(uri)
    try:
        loaded = mlflow.pytorch.load_model(model_uri)
    finally:
        mlflow.set_tracking_uri(previous)
    assert loaded(torch.rand(1, 6, 32, 32)).shape == (1, 3, 32, 32)

    # The server goes away mid-run: one warning, the run's record says partial, nothing raises.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with Tracker({"train": cfg}, "main", "dies", uri=uri, out_dir=tmp_path / "dies") as tracker:
            tracker.log_metrics({"a": 1.0}, step=1)
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=30)
            start = time.monotonic()
            for step in range(2, 5):
                tracker.log_metrics({"a": float(step)}, step=step)
            elapsed = time.monotonic() - start
    record = json.loads((tmp_path / "dies" / TRACKING_RECORD).read_text())
    assert record["tracked"] is False and record["partial"] is True and record["run_id"]
    assert len([w for w in caught if "MLflow tracking" in str(w.message)]) == 1
    assert elapsed < 60


def test_sqlite_store_keeps_artifacts_next_to_the_db_not_in_the_cwd(tmp_path, monkeypatch):
    from mlflow.tracking import MlflowClient

    store = tmp_path / "store"
    store.mkdir()
    cwd = tmp_path / "dvc-exp-copy"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    uri = f"sqlite:///{store / 'mlflow.db'}"
    with Tracker({"train": tiny_cfg()}, "losses", "r", {"model": MODEL}, uri=uri, out_dir=tmp_path / "out") as t:
        t.log_metrics({"train.loss": 0.5}, step=3)
        note = tmp_path / "a.txt"
        note.write_text("hello")
        t.log_artifact(note, "notes")
    assert t.tracked and list(cwd.iterdir()) == []
    run = MlflowClient(tracking_uri=uri).get_run(t.run_id)
    assert run.data.metrics["train.loss"] == 0.5 and run.data.params["train.iters"] == "3"
    assert run.info.artifact_uri.startswith((store / "mlruns" / "losses").as_uri())
    assert (store / "mlruns" / "losses" / t.run_id / "artifacts" / "notes" / "a.txt").read_text() == "hello"
    assert sorted(p.name for p in store.iterdir()) == ["mlflow.db", "mlruns"]  # no lock or temp file left


def test_a_run_id_resumes_the_same_run_from_killed_to_finished(tmp_path):
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    with pytest.raises(KeyboardInterrupt):
        with Tracker({"train": tiny_cfg()}, "main", "r", uri=uri) as first:
            first.log_metrics({"train.loss": 1.0}, step=1)
            raise KeyboardInterrupt  # SIGINT, or SIGTERM through ldp.train.TrainingTerminated
    client = MlflowClient(tracking_uri=uri)
    assert client.get_run(first.run_id).info.status == "KILLED"
    with Tracker({"train": tiny_cfg()}, "main", "r", uri=uri, run_id=first.run_id) as again:
        assert client.get_run(first.run_id).info.status == "RUNNING"
        again.log_metrics({"train.loss": 0.5}, step=2)
    run = client.get_run(first.run_id)
    assert again.run_id == first.run_id and run.info.status == "FINISHED" and run.data.tags["resumed"] == "1"
    assert [(m.step, m.value) for m in client.get_metric_history(first.run_id, "train.loss")] == [(1, 1.0), (2, 0.5)]
    assert len(client.search_runs([run.info.experiment_id])) == 1


CONCURRENT_RUN = """
import os, sys, time
from pathlib import Path
import mlflow.store.tracking.sqlalchemy_store  # the slow imports before the start line
from ldp.tracking import Tracker
go = Path(sys.argv[2])
(go.parent / f"ready-{os.getpid()}").touch()
while not go.exists():
    time.sleep(0.01)
with Tracker(None, "main", "r", uri=sys.argv[1]) as t:
    t.log_metrics({"a": 1.0}, step=1)
print("TRACKED" if t.tracked else f"UNTRACKED {t.reason}")
"""


def test_concurrent_first_runs_create_one_working_store(tmp_path):
    # Processes that enter a Tracker at the same moment on a fresh sqlite path all log, and the store works after.
    from mlflow.tracking import MlflowClient

    uri, go = f"sqlite:///{tmp_path / 'mlflow.db'}", tmp_path / "go"
    env = dict(os.environ, MLFLOW_DISABLE_TELEMETRY="true")
    procs = [subprocess.Popen([sys.executable, "-c", CONCURRENT_RUN, uri, str(go)], stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True, env=env, cwd=tmp_path) for _ in range(2)]
    deadline = time.monotonic() + 120
    while len(list(tmp_path.glob("ready-*"))) < len(procs):
        assert time.monotonic() < deadline and all(p.poll() is None for p in procs), "the processes did not start"
        time.sleep(0.05)
    go.touch()
    outputs = [p.communicate(timeout=180)[0] for p in procs]
    assert all(out.strip().endswith("TRACKED") and "UNTRACKED" not in out for out in outputs), outputs
    runs = MlflowClient(tracking_uri=uri).search_runs([MlflowClient(tracking_uri=uri).get_experiment_by_name(
        "main").experiment_id])
    assert len(runs) == 2


def test_a_tracker_that_loses_the_race_to_create_the_experiment_joins_it(tmp_path, monkeypatch):
    # Parallel training lanes: both see no experiment, the other one creates it first; this one must log into it.
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    with Tracker(None, "main", "first", uri=uri, out_dir=tmp_path / "a") as first:
        assert first.active
    real_get, calls = MlflowClient.get_experiment_by_name, []

    def not_there_yet(self, name):
        calls.append(name)
        return None if len(calls) == 1 else real_get(self, name)

    monkeypatch.setattr(MlflowClient, "get_experiment_by_name", not_there_yet)
    with Tracker(None, "main", "second", uri=uri, out_dir=tmp_path / "b") as second:
        assert second.active, second.reason
        assert second.experiment_id == first.experiment_id
    assert len(calls) == 2
    monkeypatch.undo()
    runs = MlflowClient(tracking_uri=uri).search_runs([first.experiment_id])
    assert sorted(r.info.run_name for r in runs) == ["first", "second"]


def test_using_tracking_uri_puts_the_process_environment_back(monkeypatch, tmp_path):
    """mlflow.set_tracking_uri also sets MLFLOW_TRACKING_URI; a later run must not inherit another run's URI."""
    import mlflow

    from ldp.tracking import using_tracking_uri

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'a.db'}")
    with using_tracking_uri(f"sqlite:///{tmp_path / 'b.db'}"):
        assert os.environ["MLFLOW_TRACKING_URI"].endswith("b.db")
    assert os.environ["MLFLOW_TRACKING_URI"].endswith("a.db")
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    with using_tracking_uri(f"sqlite:///{tmp_path / 'b.db'}"):
        pass
    assert "MLFLOW_TRACKING_URI" not in os.environ
    assert mlflow.get_tracking_uri() != f"sqlite:///{tmp_path / 'b.db'}"
