"""Stage `real_data`: the real DP test sets of params `real_sets` as prepared datasets under `paths.real`, each with
the blur maps of every `blurmaps` id an experiment uses, and `index.json` (docs/data-real.md).

    <paths.real>/index.json
    <paths.real>/<set>/dataset/           manifest.csv + source.json (ldp.data.real.prepare_real_set)
    <paths.real>/<set>/blurmaps/<id>/     ldp.blurmap.estimate, as the blurmaps stage writes them

Every config and root is checked before anything is written; the whole folder is built beside `paths.real` and
swapped in at the end (a sibling of the same depth, so the in-place manifests' relative paths stay valid).
"""

from ldp.blurmap.estimate import BlurMapConfig, estimate_table
from ldp.config import ConfigError, section, subsection, where_of
from ldp.data.manifest import load_manifest
from ldp.data.real import INDEX_JSON, check_root, load_real_sets, prepare_real_set
from ldp.experiments import load_experiments
from ldp.fsutil import atomic_dir, atomic_write_json
from ldp.runs import layout_of
from pipelines.common import no_args, run_stage

# Why a blur-map estimator cannot run on real data (no synthetic ground truth there).
UNAVAILABLE = {"oracle": "no ground-truth defocus map on real data (the oracle estimator needs one)"}


def configure(params, argv):
    no_args(argv, "real_data")
    sets = load_real_sets(params)
    defined = subsection(params, "blurmaps")
    maps = {}
    for name, exp in load_experiments(params).items():
        if exp.blurmap not in defined:
            raise ConfigError(f"{where_of(params)}:experiments.{name}.blurmap: {exp.blurmap!r} is not defined "
                              "under blurmaps")
        if exp.blurmap not in maps:
            maps[exp.blurmap] = section(params, f"blurmaps.{exp.blurmap}", BlurMapConfig)
    return sets, maps, layout_of(params), where_of(params)


def run(job) -> None:
    sets, maps, layout, where = job
    for name, cfg in sets.items():  # every root before anything is written
        check_root(name, cfg, where)
    index = {}
    with atomic_dir(layout.real, "build") as build:
        for name, cfg in sets.items():
            print(f"real_data: {name} ({cfg.source}, {cfg.root})", flush=True)
            dataset = prepare_real_set(name, cfg, build / name / "dataset", where)
            table = load_manifest(dataset)
            sizes = sorted({(int(h), int(w)) for h, w in zip(table["height"], table["width"], strict=True)})
            status = {}
            for map_id, map_cfg in maps.items():
                if map_cfg.estimator in UNAVAILABLE:
                    status[map_id] = f"unavailable: {UNAVAILABLE[map_cfg.estimator]}"
                    continue
                print(f"real_data: {name}: blur maps {map_id}", flush=True)
                # meta.json names the dataset where it will live, not the build folder.
                estimate_table(map_cfg, dataset, load_manifest(dataset, map_cfg.split), build / name / "blurmaps" /
                               map_id, progress=False, extra={"dataset": str(layout.real / name / "dataset")})
                status[map_id] = "ok"
            index[name] = {"label": cfg.display_label, "source": cfg.source, "root": cfg.root,
                           "n_scenes": len(table), "size": list(sizes[0]) if len(sizes) == 1 else None,
                           "blurmaps": status}
            print(f"real_data: {name}: {len(table)} scenes, {' '.join(f'{h}x{w}' for h, w in sizes)}", flush=True)
        atomic_write_json(build / INDEX_JSON, {"sets": index})


if __name__ == "__main__":
    run_stage(configure, run)
