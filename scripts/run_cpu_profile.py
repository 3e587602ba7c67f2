#!/usr/bin/env python
"""The CPU profile (profiles/cpu.yaml) from one command: `make cpu`.

    python scripts/run_cpu_profile.py --work .cpu-profile            (what `make cpu` runs)
    python scripts/run_cpu_profile.py --work .cpu-profile --stage train    (only up to the training stages)

It writes ``<work>/repo``, a work copy of the project whose params.yaml is profiles/cpu.yaml resolved (the real
sets' roots made absolute), and runs `dvc repro` there; a second call re-syncs the code and re-runs only what
changed. Then it copies what a reader needs (tables, report, figures, training curves, the evaluations' metrics)
into ``--publish`` (default results/cpu/), replacing it in one step, with ``run.json``: the wall time, this
machine's CPU and threads, the git revision. Without ../shared/realdp the real sets are dropped and run.json says so.

Before it starts, it times a few NAFNet-DP training steps (PROBE) in fp32 and, when the profile trains in bf16, in
bf16 autocast: bf16 is kept only where it is at least BF16_MIN_SPEEDUP faster (else fp32, noted in run.json). It
prints the profile's estimated time on this machine, scaled from the reference run of that precision (REFERENCES);
``--estimate`` prints only that.

The training stages run in parallel lanes, one per ``train.cpu_threads`` threads of this machine's cores (the profile
sets 1 thread: two lanes on 2 cores), each a `dvc --wait-for-lock repro --single-item train@<row>` once the data and
blur maps are made; the final `dvc repro` then finds them done. run.json gives each training stage's wall time.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts"))
sys.path.insert(0, str(REPO))

from workspace import BIN, find_shared, init_repo, run, sync_code, workspace_env, write_params  # noqa: E402

PROFILE = REPO / "profiles" / "cpu.yaml"
REALDP = "realdp"
HISTORY = "run-history.jsonl"
# What is published: (folder under results/, file patterns kept in it).
PUBLISHED = (("tables", ("*",)), ("report", ("*",)), ("figures", ("*",)), ("real", ("*.json", "*.csv", "*.md")),
             ("training", ("*.json", "*.csv")), ("eval", ("metrics.json", "scores.json", "per_image.csv")))
# The reference runs the estimate scales from (docs/reproducing.md, "The CPU profile"), one per training precision:
# the whole profile's `dvc repro` on a fresh clone and the speed probe's seconds per step in that precision, on the
# same machine. A precision without its own reference scales the fp32 one by its probe.
REFERENCES = {
    "fp32": {"dvc_repro_minutes": 104.0, "probe_seconds_per_step": 2.60, "lanes": 2,
             "measured": "2026-12-03, AMD EPYC (AVX2, no AVX-512), 2 cores, commit 138a240"},
}
PROBE = {"model": "nafnet-dp", "patch": 128, "batch": 8, "threads": 2}
# bf16 autocast trains only where the probe measures it at least this much faster than fp32 (docs/reproducing.md).
BF16_MIN_SPEEDUP = 1.15
TARGET_MINUTES = 120


def resolved_params(profile: Path, shared: Path | None) -> tuple[dict, list[str]]:
    """The profile resolved, each real set's root absolute; sets whose data is absent are dropped (noted)."""
    from ldp.config import load_params

    params = dict(load_params(profile))
    notes, sets = [], {}
    for name, entry in (params.get("real_sets") or {}).items():
        root = Path(entry["root"])
        if not root.is_absolute():
            rel = Path(*root.parts[2:]) if root.parts[:2] == ("..", "shared") else None
            root = (shared / rel) if (shared is not None and rel is not None) else (REPO / root)
        if root.is_dir():
            sets[name] = {**entry, "root": str(root.resolve())}
        else:
            notes.append(f"real set {name!r} dropped: {root} not found")
    params["real_sets"] = sets
    return params, notes


def machine() -> dict:
    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version()}


def estimate(precision: str = "fp32") -> dict:
    """This machine's probe step time in fp32 (and in bf16 when the profile asks for it), the precision the profile
    trains in here (bf16 only where measured at least BF16_MIN_SPEEDUP faster) and the profile's time scaled from
    that precision's reference run: an estimate, labelled so."""
    from ldp.speed import seconds_per_step

    probes = {p: round(seconds_per_step(PROBE["model"], PROBE["patch"], PROBE["batch"], PROBE["threads"], p,
                                        steps=3, warmup=1), 3)
              for p in dict.fromkeys(("fp32", precision))}
    chosen = precision
    if precision == "bf16" and probes["bf16"] * BF16_MIN_SPEEDUP > probes["fp32"]:
        chosen = "fp32"
    ref = REFERENCES.get(chosen, REFERENCES["fp32"])
    minutes = ref["dvc_repro_minutes"] * probes[chosen] / ref["probe_seconds_per_step"]
    return {"probe": PROBE, "probe_seconds_per_step": probes, "precision": chosen,
            "estimated_minutes": round(minutes, 1), "reference": ref,
            "note": "scaled linearly from the reference run of the same precision (fresh clone, training lanes) by "
                    "the probe's step time" + ("" if chosen in REFERENCES else
                                               "; no reference run in this precision: the fp32 one is scaled")}


def print_estimate(est: dict) -> None:
    over = est["estimated_minutes"] > TARGET_MINUTES
    ref = est["reference"]
    limit = TARGET_MINUTES * ref["probe_seconds_per_step"] / ref["dvc_repro_minutes"]
    probes = ", ".join(f"{p} {s:.2f} s" for p, s in est["probe_seconds_per_step"].items())
    print(f"speed probe, {PROBE['model']} step: {probes}; training in {est['precision']}; estimated "
          f"{est['estimated_minutes']:.0f} min for the whole profile (reference {ref['probe_seconds_per_step']:.2f} "
          f"s, {ref['measured']})"
          + (f": over the {TARGET_MINUTES}-min target on this machine (it holds at <= {limit:.2f} s per step; "
             "other jobs on the cores slow it too)" if over else ""), flush=True)


def precision_sections(params: dict) -> dict[str, dict]:
    """The params sections that may set a training precision, by params key: ``train`` and each recipe setting one."""
    sections = {"train.precision": params["train"]}
    for name, recipe in (params.get("recipes") or {}).items():
        if recipe and "precision" in recipe:
            sections[f"recipes.{name}.precision"] = recipe
    return sections


def precision_settings(params: dict) -> dict[str, str]:
    """Every training precision the params set, by params key (``train`` unset: auto)."""
    return {key: section.get("precision", "auto") for key, section in precision_sections(params).items()}


def choose_precision(params: dict, est: dict) -> list[str]:
    """Where the profile asks for bf16 and the probe chose fp32, sets fp32 (train and recipes); returns notes."""
    if est["precision"] == "bf16":
        return []
    notes = []
    for key, section in precision_sections(params).items():
        if section.get("precision") == "bf16":
            section["precision"] = "fp32"
            notes.append(f"{key} bf16 -> fp32: the probe measured bf16 less than {BF16_MIN_SPEEDUP}x faster than "
                         f"fp32 on this machine ({est['probe_seconds_per_step']})")
    return notes


def training_stages(repo: Path, env: dict) -> list[tuple[str, int]]:
    """The profile's `train@<row>` stages with their work (patch pixels trained on: iterations x batch x patch²),
    most first (so the lanes end close together)."""
    from ldp.config import load_params
    from ldp.experiments import resolve

    listed = subprocess.run([str(BIN / "dvc"), "stage", "list", "--name-only"], cwd=repo, env=env, check=True,
                            capture_output=True, text=True).stdout.split()
    params = load_params(repo / "params.yaml")
    stages = []
    for name in listed:
        if name.startswith("train@"):
            train = resolve(params, name.split("@", 1)[1]).train
            stages.append((name, train.iters * train.batch_size * train.patch_size ** 2))
    return sorted(stages, key=lambda item: -item[1])


def train_in_lanes(repo: Path, env: dict, work: Path, lanes: int) -> dict[str, float]:
    """Every training stage, ``lanes`` at a time (the data and blur maps first, in one `dvc repro`); each stage's
    output goes to <work>/logs/<stage>.log. Returns each stage's wall seconds; a failed stage stops new ones from
    starting and exits with its log's tail once the running ones end."""
    log = work / "cpu-profile.log"
    run([str(BIN / "dvc"), "repro", "data", "blurmaps"], repo, env, log, echo=True)
    queue = training_stages(repo, env)
    (work / "logs").mkdir(exist_ok=True)
    lanes = max(1, min(lanes, len(queue)))
    print(f"training {len(queue)} rows in {lanes} lane(s): {', '.join(name for name, _ in queue)}", flush=True)
    seconds: dict[str, float] = {}
    failed: list[str] = []
    lock = threading.Lock()

    def lane() -> None:
        while True:
            with lock:
                if failed or not queue:
                    return
                name, _ = queue.pop(0)
            stage_log = work / "logs" / f"{name}.log"
            print(f"  start  {name}", flush=True)
            t0 = time.perf_counter()
            with open(stage_log, "w") as fh:
                code = subprocess.run([str(BIN / "dvc"), "--wait-for-lock", "repro", "--single-item", name],
                                      cwd=repo, env=env, stdout=fh, stderr=subprocess.STDOUT).returncode
            with lock:
                seconds[name] = round(time.perf_counter() - t0, 1)
                if code:
                    failed.append(name)
            print(f"  {'FAILED' if code else 'done  '} {name} in {seconds[name] / 60:.1f} min", flush=True)

    threads = [threading.Thread(target=lane) for _ in range(lanes)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if failed:
        tails = "\n".join(f"--- {name} ({work / 'logs' / f'{name}.log'}):\n"
                          + (work / "logs" / f"{name}.log").read_text()[-3000:] for name in failed)
        raise SystemExit(f"training failed: {', '.join(failed)}\n{tails}")
    return seconds


def publish(results: Path, dest: Path, record: dict) -> None:
    from ldp.fsutil import atomic_dir

    with atomic_dir(dest) as tmp:
        for folder, patterns in PUBLISHED:
            src = results / folder
            if not src.is_dir():
                continue
            for pattern in patterns:
                for path in src.rglob(pattern):
                    if path.is_file() and "samples" not in path.relative_to(src).parts and path.suffix != ".npz":
                        out = tmp / folder / path.relative_to(src)
                        out.parent.mkdir(parents=True, exist_ok=True)
                        shutil.copy2(path, out)
        if (results / "complexity.md").is_file():
            shutil.copy2(results / "complexity.md", tmp / "complexity.md")
        (tmp / "run.json").write_text(json.dumps(record, indent=2) + "\n")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--work", type=Path, default=REPO / ".cpu-profile", help="work folder (created, then reused)")
    ap.add_argument("--publish", type=Path, default=REPO / "results" / "cpu", help="where the results are copied")
    ap.add_argument("--stage", default="", help="`dvc repro` only this stage and what it needs (e.g. train)")
    ap.add_argument("--profile", type=Path, default=PROFILE, help="the params profile (default profiles/cpu.yaml)")
    ap.add_argument("--estimate", action="store_true", help="only time the speed probe and print the estimate")
    args = ap.parse_args(argv)
    shared = find_shared(REALDP)
    params, notes = resolved_params(args.profile.resolve(), shared)
    for note in notes:
        print(f"note: {note}")
    est = estimate("bf16" if "bf16" in precision_settings(params).values() else "fp32")
    print_estimate(est)
    if args.estimate:
        return 0
    for note in choose_precision(params, est):
        print(f"note: {note}")
        notes.append(note)
    work = args.work.resolve()
    repo = work / "repo"
    repo.mkdir(parents=True, exist_ok=True)
    log = work / "cpu-profile.log"
    sync_code(repo)
    write_params(repo, params, f"{args.profile} resolved by scripts/run_cpu_profile.py")
    env = workspace_env(repo)
    init_repo(repo, env, log, "cpu-profile")
    t0 = time.perf_counter()
    threads = int(params["train"].get("cpu_threads") or 0) or (os.cpu_count() or 1)
    lanes = max(1, (os.cpu_count() or 1) // threads)
    stage_seconds = train_in_lanes(repo, env, work, lanes) if args.stage in ("", "train") else {}
    run([str(BIN / "dvc"), "repro", *([args.stage] if args.stage else [])], repo, env, log, echo=True)
    seconds = time.perf_counter() - t0
    rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True).stdout
    record = {"profile": str(args.profile), "git_revision": rev.strip(), "stage": args.stage or "all",
              "dvc_repro_seconds": round(seconds, 1), "finished": datetime.now(timezone.utc).isoformat(),
              "machine": machine(), "estimate": est, "notes": notes, "real_sets": sorted(params["real_sets"]),
              "training": {"lanes": lanes, "threads_per_lane": threads, "stage_seconds": stage_seconds},
              "caveat": "a second call re-runs only the stages whose code or params changed: dvc_repro_seconds is "
                        "this call's time, not the whole profile's unless the work folder was new"}
    with open(work / HISTORY, "a") as fh:  # every call, so a profile run in several calls can be totalled
        fh.write(json.dumps(record) + "\n")
    record["history"] = [json.loads(line) for line in (work / HISTORY).read_text().splitlines() if line.strip()]
    (work / "run.json").write_text(json.dumps(record, indent=2) + "\n")
    if not args.stage:
        publish(repo / "results", args.publish.resolve(), record)
        print(f"published to {args.publish}; report: {args.publish / 'report' / 'index.html'}")
    print(f"dvc repro took {seconds / 60:.1f} min")
    return 0


if __name__ == "__main__":
    sys.exit(main())
