"""MLflow tracking that never stops a run.

* The tracking URI defaults to a sqlite store inside the repository, with an absolute path found from the
  repository root (not the working directory), so ``dvc exp run --temp`` and queued experiments log to the same
  store: ``sqlite:////abs/repo/mlflow.db``. ``MLFLOW_TRACKING_URI`` overrides it (e.g. a team server).
* One experiment per results table (the keys of ``ldp.experiments.TABLES``: main, losses, clip-variants,
  prompts, ...); the caller passes the name.
* :class:`Tracker` is a context manager. If the store cannot be reached (probed with a short timeout before
  anything else) or a logging call fails later, it warns once, stops calling MLflow, and records
  ``"tracked": false`` and the reason in ``<out_dir>/tracking.json``. The run itself goes on; its results are on
  disk anyway.
* ``Tracker(..., run_id=...)`` continues an existing run (a resumed training is one MLflow run). A new sqlite
  store is created under an inter-process lock, in a temp file moved into place (:func:`ensure_sqlite_store`).

Start the UI (local store) with::

    mlflow ui --backend-store-uri sqlite:///$(pwd)/mlflow.db --host 127.0.0.1
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ldp.config import to_flat_dict
from ldp.fsutil import atomic_write_json

DB_NAME = "mlflow.db"
PROBE_TIMEOUT_S = 3.0
# MLflow's own HTTP retries (default 7 retries with exponential back-off, 120 s timeout) can hold a dead run for
# minutes; these defaults bound one failing call to well under a minute. Explicit user settings win.
HTTP_ENV_DEFAULTS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1", "MLFLOW_HTTP_REQUEST_TIMEOUT": "20",
                     "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1"}
TRACKING_RECORD = "tracking.json"
MAX_PARAM_CHARS = 6000


# ---------------------------------------------------------------------------------------------------------------
# Locations and names


def repo_root() -> Path:
    """The ldp-bench repository root, found from this package's location (not the working directory).

    When the code runs from a DVC experiment copy (``<repo>/.dvc/tmp/exps/<tmp>/``), the enclosing repository
    is returned so that all experiments share one store.
    """
    here = Path(__file__).resolve().parent
    root = next((p for p in [here, *here.parents] if (p / "pyproject.toml").is_file()), here.parent)
    return outside_dvc_temp(root)


def outside_dvc_temp(path: Path) -> Path:
    """``<repo>`` for a path inside ``<repo>/.dvc/tmp/exps/...``; any other path unchanged."""
    parts = path.parts
    for i in range(len(parts) - 2):
        if parts[i] == ".dvc" and parts[i + 1] == "tmp" and parts[i + 2] == "exps":
            return Path(*parts[:i])
    return path


def default_tracking_uri() -> str:
    """``MLFLOW_TRACKING_URI`` if set, else ``sqlite:////<abs repo root>/mlflow.db``."""
    env = os.environ.get("MLFLOW_TRACKING_URI", "").strip()
    if env:
        return env
    return "sqlite:///" + str((repo_root() / DB_NAME).resolve())


@contextmanager
def using_tracking_uri(uri: str) -> Iterator[None]:
    """MLflow's fluent API pointed at ``uri`` for a block. ``mlflow.set_tracking_uri`` also sets the process's
    ``MLFLOW_TRACKING_URI``; both are put back as they were, so no later run inherits the URI."""
    import mlflow

    env = os.environ.get("MLFLOW_TRACKING_URI")
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(uri)
    try:
        yield
    finally:
        mlflow.set_tracking_uri(previous)
        if env is None:
            os.environ.pop("MLFLOW_TRACKING_URI", None)
        else:
            os.environ["MLFLOW_TRACKING_URI"] = env


def local_artifact_location(uri: str, experiment: str) -> str | None:
    """Absolute artifact folder for a sqlite store: ``<db folder>/mlruns/<experiment>``.

    MLflow's default for a sqlite store is ``./mlruns`` relative to the *working directory* at experiment
    creation, which would put artifacts inside a ``dvc exp`` temporary copy. Servers choose their own (None).
    """
    path = sqlite_path(uri)
    if path is None:
        return None
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in experiment)
    return (path.resolve().parent / "mlruns" / safe).as_uri()


def sqlite_path(uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` URI (None for other stores and in-memory sqlite)."""
    if not uri.startswith("sqlite:///"):
        return None
    path = uri[len("sqlite:///"):]
    return Path(path) if path and path != ":memory:" else None


def ensure_sqlite_store(db: Path) -> None:
    """Create the MLflow tables of a new sqlite store safely when several processes start at once.

    Under an inter-process lock beside the db, a missing store is built in a temp file and moved into place, so
    no process ever sees (or leaves behind) a half-migrated store; an existing store is left alone.
    """
    from ldp.filelock import exclusive_lock

    with exclusive_lock(db.with_name(f".{db.name}.lock"), wait=True):
        if db.is_file() and db.stat().st_size > 0:
            return
        from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

        tmp = db.with_name(f".{db.name}.{os.getpid()}.init.tmp")
        tmp.unlink(missing_ok=True)
        tmp_uri = f"sqlite:///{tmp}"
        try:
            store = SqlAlchemyStore(tmp_uri, (db.parent / "mlruns").resolve().as_uri())
            store.engine.dispose()
            SqlAlchemyStore._engine_map.pop(tmp_uri, None)  # MLflow caches one engine per URI
            os.replace(tmp, db)
        finally:
            tmp.unlink(missing_ok=True)


def redact_uri(uri: str) -> str:
    """Drop user:password from a URI before it is written anywhere."""
    parts = urllib.parse.urlsplit(uri)
    if parts.username or parts.password:
        host = parts.hostname or ""
        if parts.port:
            host = f"{host}:{parts.port}"
        return urllib.parse.urlunsplit((parts.scheme, f"***@{host}", parts.path, parts.query, parts.fragment))
    return uri


def run_name(model: str, variant: str | None = None, dvc_exp: str | None = None, *, stage: str | None = None) -> str:
    """``<model>[-<variant>][:<stage>][@<DVC experiment>]``; the DVC name defaults to ``$DVC_EXP_NAME``.

    ``stage`` (``train``, ``evaluate``) keeps the runs of one experiment apart, e.g. ``ldp-small:train@exp-3f2a1``.
    """
    dvc_exp = dvc_exp if dvc_exp is not None else os.environ.get("DVC_EXP_NAME", "")
    name = model + (f"-{variant}" if variant else "") + (f":{stage}" if stage else "")
    return name + (f"@{dvc_exp}" if dvc_exp else "")


def git_commit(root: Path | None = None) -> str:
    """HEAD commit of the repository (``+dirty`` when the tree has changes), or ``unknown``."""
    root = root or repo_root()
    try:
        head = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
                              timeout=5, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return head + ("+dirty" if dirty else "") if head else "unknown"


def standard_tags(
    model: str,
    *,
    protocol: str = "",
    data_source: str = "",
    device: str = "",
    clip_weights: str = "",
    extra: Mapping[str, Any] | None = None,
) -> dict[str, str]:
    """The tags every run carries: git commit, DVC_EXP_NAME, model, protocol, data source, device, CLIP weights."""
    commit = git_commit()
    tags = {
        "git_commit": commit,
        "mlflow.source.git.commit": commit.split("+")[0],
        "DVC_EXP_NAME": os.environ.get("DVC_EXP_NAME", ""),
        "model": model,
        "protocol": protocol,
        "data_source": data_source,
        "device": device,
        "clip_weights": clip_weights,
    }
    tags.update({str(k): str(v) for k, v in (extra or {}).items()})
    return tags


def flatten_params(cfg: Any) -> dict[str, str]:
    """Flatten a config dataclass, or a mapping of section name → dataclass / dict, into dotted string params."""
    if cfg is None:
        return {}
    if dataclasses.is_dataclass(cfg):
        flat = to_flat_dict(cfg)
    elif isinstance(cfg, Mapping):
        flat = {}
        for key, value in cfg.items():
            if dataclasses.is_dataclass(value) or isinstance(value, Mapping):
                flat.update(to_flat_dict(value, f"{key}."))
            else:
                flat[str(key)] = value
    else:
        raise TypeError(f"cannot flatten params of type {type(cfg).__name__}")
    out = {}
    for k, v in flat.items():
        text = json.dumps(v) if isinstance(v, (list, tuple, dict)) else str(v)
        out[k] = text if len(text) <= MAX_PARAM_CHARS else text[: MAX_PARAM_CHARS - 3] + "..."
    return out


# ---------------------------------------------------------------------------------------------------------------
# Reachability


def probe(uri: str, timeout: float = PROBE_TIMEOUT_S) -> str | None:
    """Return ``None`` if the store looks usable, else the reason it is not. Fast: one short HTTP request."""
    scheme = urllib.parse.urlsplit(uri).scheme.lower()
    if scheme in ("http", "https"):
        url = uri.rstrip("/") + "/health"
        try:
            with urllib.request.urlopen(url, timeout=timeout) as resp:  # noqa: S310 (http/https only)
                if resp.status != 200:
                    return f"{redact_uri(url)} answered HTTP {resp.status}"
        except (urllib.error.URLError, OSError, ValueError) as exc:
            reason = getattr(exc, "reason", exc)
            return f"{redact_uri(url)} unreachable: {reason}"
        return None
    if scheme == "sqlite":
        path = sqlite_path(uri)
        if path is None:
            return None
        parent = path.parent
        if not parent.is_dir() or not os.access(parent, os.W_OK):
            return f"sqlite store folder {parent} does not exist or is not writable"
        return None
    if scheme in ("", "file"):
        path = Path(urllib.parse.urlsplit(uri).path if scheme == "file" else uri)
        existing = next((p for p in [path, *path.parents] if p.exists()), None)
        if existing is None or not os.access(existing, os.W_OK):
            return f"file store {path} is not writable"
        return None
    return None  # other schemes (databricks, ...): rely on the first call failing cleanly


@contextmanager
def _http_env_defaults() -> Iterator[None]:
    added = [k for k in HTTP_ENV_DEFAULTS if k not in os.environ]
    for k in added:
        os.environ[k] = HTTP_ENV_DEFAULTS[k]
    try:
        yield
    finally:
        for k in added:
            os.environ.pop(k, None)


# ---------------------------------------------------------------------------------------------------------------
# Tracker


class Tracker:
    """MLflow run as a context manager that degrades to a no-op (with a record) when the store is unreachable.

    >>> with Tracker(cfg, "main", run_name("ldp-small"), tags, out_dir="results/x") as t:   # doctest: +SKIP
    ...     t.log_metrics({"loss": 0.1}, step=1)
    """

    def __init__(
        self,
        cfg: Any = None,
        experiment: str = "main",
        run_name: str | None = None,
        tags: Mapping[str, Any] | None = None,
        *,
        uri: str | None = None,
        out_dir: str | Path | None = None,
        enabled: bool = True,
        probe_timeout: float = PROBE_TIMEOUT_S,
        run_id: str | None = None,
    ):
        self.resume_run_id = run_id
        self.params = flatten_params(cfg)
        self.experiment = experiment
        self.run_name = run_name
        self.tags = {str(k): str(v) for k, v in (tags or {}).items()}
        self.uri = uri or default_tracking_uri()
        self.out_dir = Path(out_dir) if out_dir is not None else None
        self.probe_timeout = probe_timeout
        self.rank = int(os.environ.get("RANK", "0") or 0)
        self.enabled = enabled and self.rank == 0
        self.active = False
        self.run_id: str | None = None
        self.experiment_id: str | None = None
        self.reason: str | None = None if self.enabled else ("disabled" if enabled is False else "non-zero rank")
        self.failed_calls = 0
        self.errors: list[str] = []
        self.logged = {"params": 0, "metrics": 0, "artifacts": 0, "models": 0}
        self._warned = False
        self._client = None
        self._env = None
        self._status = "FINISHED"

    # -- lifecycle ---------------------------------------------------------------------------------------------
    def __enter__(self) -> Tracker:
        if not self.enabled:
            return self
        self._env = _http_env_defaults()
        self._env.__enter__()
        reason = probe(self.uri, self.probe_timeout)
        if reason:
            self._fail(reason)
            return self
        try:
            from mlflow.tracking import MlflowClient

            db = sqlite_path(self.uri)
            if db is not None:
                ensure_sqlite_store(db)
            self._client = MlflowClient(tracking_uri=self.uri)
            if self.resume_run_id and self._resume(self.resume_run_id):
                return self
            self.experiment_id = self._experiment_id()
            run = self._client.create_run(self.experiment_id, run_name=self.run_name, tags=self.tags)
            self.run_id = run.info.run_id
            self.active = True
        except Exception as exc:  # noqa: BLE001 - any store failure degrades to "not tracked"
            self._fail(f"{type(exc).__name__}: {exc}")
            return self
        self.log_params(self.params)
        return self

    def _experiment_id(self) -> str:
        """The MLflow experiment's id, created when missing; a process that loses the race to create it (parallel
        training lanes) reads the winner's."""
        from mlflow.exceptions import MlflowException

        exp = self._client.get_experiment_by_name(self.experiment)
        if exp is not None:
            return exp.experiment_id
        try:
            return self._client.create_experiment(
                self.experiment, artifact_location=local_artifact_location(self.uri, self.experiment))
        except MlflowException:
            exp = self._client.get_experiment_by_name(self.experiment)
            if exp is None:
                raise
            return exp.experiment_id

    def _resume(self, run_id: str) -> bool:
        """Continue the run ``run_id`` (a killed or interrupted training): RUNNING again, params kept as logged."""
        from mlflow.exceptions import MlflowException

        try:
            run = self._client.get_run(run_id)
        except MlflowException as exc:
            warnings.warn(f"MLflow run {run_id} cannot be resumed ({exc}); starting a new run", RuntimeWarning,
                          stacklevel=3)
            return False
        self.run_id, self.experiment_id = run.info.run_id, run.info.experiment_id
        self._client.update_run(run_id, status="RUNNING")
        self.active = True
        self.set_tags({**self.tags, "resumed": int(run.data.tags.get("resumed", "0")) + 1})
        return True

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self._status = "KILLED" if issubclass(exc_type, KeyboardInterrupt) else "FAILED"  # SIGINT, SIGTERM
        if self.active:
            self._call(self._client.set_terminated, self.run_id, status=self._status)
        self.active = False
        if self._env is not None:
            self._env.__exit__(None, None, None)
            self._env = None
        self.write_record()

    # -- logging -----------------------------------------------------------------------------------------------
    def log_params(self, params: Mapping[str, Any]) -> None:
        if not self.active or not params:
            return
        from mlflow.entities import Param

        items = [Param(str(k), str(v)[:MAX_PARAM_CHARS]) for k, v in params.items()]
        for i in range(0, len(items), 100):
            if self._call(self._client.log_batch, self.run_id, params=items[i: i + 100]):
                self.logged["params"] += len(items[i: i + 100])

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        if not self.active or not metrics:
            return
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        items = [Metric(str(k), float(v), now, int(step or 0)) for k, v in metrics.items() if v is not None]
        for i in range(0, len(items), 1000):
            if self._call(self._client.log_batch, self.run_id, metrics=items[i: i + 1000]):
                self.logged["metrics"] += len(items[i: i + 1000])

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        if not self.active or not tags:
            return
        from mlflow.entities import RunTag

        self._call(self._client.log_batch, self.run_id, tags=[RunTag(str(k), str(v)) for k, v in tags.items()])

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        if not self.active:
            return
        path = Path(path)
        if not path.exists():
            warnings.warn(f"tracking: artifact {path} does not exist; not logged", RuntimeWarning, stacklevel=2)
            return
        fn = self._client.log_artifacts if path.is_dir() else self._client.log_artifact
        if self._call(fn, self.run_id, str(path), artifact_path):
            self.logged["artifacts"] += 1

    def log_model(self, model, name: str = "model") -> None:
        """Log the final model through ``mlflow.pytorch.log_model`` (pip requirements pinned, no inference)."""
        if not self.active:
            return
        import mlflow
        import torch

        def _log() -> None:
            with using_tracking_uri(self.uri), mlflow.start_run(run_id=self.run_id):
                # "pickle": any model with any input size reloads (MLflow 3's default "pt2" is a graph traced
                # at one input shape). The safe weights-only file is model.pt, logged as an artifact.
                mlflow.pytorch.log_model(model, name=name, serialization_format="pickle",
                                         pip_requirements=[f"torch=={torch.__version__.split('+')[0]}"])

        if self._call(_log):
            self.logged["models"] += 1

    # -- degradation -------------------------------------------------------------------------------------------
    @property
    def tracked(self) -> bool:
        """The run exists in the store and the store answered throughout (call errors are listed separately)."""
        return self.run_id is not None and self.reason is None

    def _call(self, fn, *args, **kwargs) -> bool:
        """Run one MLflow call. A store that stopped answering disables tracking (warned once); any other
        failure (e.g. a model that cannot be serialised) is recorded and warned about, and tracking goes on."""
        try:
            fn(*args, **kwargs)
            return True
        except Exception as exc:  # noqa: BLE001
            what = f"{getattr(fn, '__name__', 'call')}: {type(exc).__name__}: {exc}"
            unreachable = probe(self.uri, self.probe_timeout)
            if unreachable:
                self._fail(f"{unreachable} ({what})")
            else:
                self.failed_calls += 1
                self.errors.append(what[:2000])
                warnings.warn(f"MLflow call failed, continuing: {what}", RuntimeWarning, stacklevel=3)
            return False

    def _fail(self, reason: str) -> None:
        """The store is unreachable: warn once, stop calling MLflow, keep the reason for tracking.json."""
        self.failed_calls += 1
        if self.reason is None:
            self.reason = reason
        self.active = False
        if not self._warned:
            self._warned = True
            warnings.warn(
                f"MLflow tracking at {redact_uri(self.uri)} is unavailable ({reason}); the run goes on untracked "
                f"and its results stay on disk" + (f" (see {self.out_dir / TRACKING_RECORD})" if self.out_dir else ""),
                RuntimeWarning,
                stacklevel=3,
            )

    def record(self) -> dict[str, Any]:
        return {
            "tracked": self.tracked,
            "partial": self.run_id is not None and (not self.tracked or bool(self.errors)),
            "reason": self.reason,
            "tracking_uri": redact_uri(self.uri),
            "experiment": self.experiment,
            "experiment_id": self.experiment_id,
            "run_id": self.run_id,
            "run_name": self.run_name,
            "status": self._status,
            "failed_calls": self.failed_calls,
            "errors": list(self.errors),
            "logged": dict(self.logged),
        }

    def write_record(self) -> Path | None:
        if self.out_dir is None or self.rank != 0:
            return None
        return atomic_write_json(self.out_dir / TRACKING_RECORD, self.record())
