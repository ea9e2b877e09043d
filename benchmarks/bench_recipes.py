"""The recipe study: meta-training candidates at the same wall-clock budget, scored on held-out data.

Each candidate meta-trains (one at a time; several processes with --train-only may share a --workroot
for disjoint candidates) for `--budget` seconds of this process's CPU time
(all threads, compilation included; less sensitive to other load than wall-clock time) on glyphs only (no evaluation dataset), then its final θ is scored by the evaluation
suite (its best-validated θ when the recipe validates): 10-shot ridge accuracy on held-out digits 5–9 and Fashion-MNIST 14×14 after 100 and
1,000 inner steps, `--seeds` seeds, mean ± SE. Baselines (random init, raw input, Hebbian) are
scored once with the same seeds. Writes `--out` (markdown) and a JSON of every figure.

    python benchmarks/bench_recipes.py --workroot /tmp/recipes --budget 1200 --out docs/recipes.md
    python benchmarks/bench_recipes.py --workroot /tmp/speed --budget 900 --train-only \
        --candidates metz2019,metz2019-small           # θ-steps per CPU-hour side by side, no scoring

Workdirs are kept under --workroot: a rerun resumes a candidate's meta-training to its budget and
reuses every evaluation cell already computed.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import resource
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]

# name -> (config file, overrides, what it tests)
CANDIDATES = {
    "simple_local": ("experiments/train/glyphs.py:glyphs_v2", [],
                     "today's glyphs recipe: simple_local, lockstep phases, truncated backprop, lr 1e-3"),
    "simple_local+independent": ("experiments/train/glyphs.py:glyphs_v2", ["--config.schedule.phases=independent"],
                                 "independent task phases"),
    "simple_local+independent+nres": ("experiments/train/glyphs.py:glyphs_v2",
                                      ["--config.schedule.phases=independent", "--config.gradient_estimator=nres",
                                       "--config.gradient_estimator_config.num_pairs=2"],
                                      "NRES over the whole horizon instead of truncated backprop"),
    "metz2019": ("experiments/train/glyphs.py:metz2019", [],
                 "today's glyphs:metz2019 recipe: lockstep phases, lr 3e-4"),
    "metz2019+fast_start+independent": ("experiments/train/glyphs.py:metz2019",
                                        ["--config.update_rule_config.mix_init=1.0",
                                         "--config.optimizer.learning_rate=1e-3",
                                         "--config.schedule.phases=independent"],
                                        "a 10x larger learned share at the start, lr 1e-3, independent phases"),
}
# The winner of the first rows, and variations of it (horizon, augmentation targets, meta-training seed).
WINNER = CANDIDATES["simple_local+independent+nres"][1]
AUGMENT = ["--config.task_family_config.max_shift=0.1", "--config.task_family_config.max_rotation=15.0",
           "--config.task_family_config.max_noise=0.1"]
# metz2019 at shapes where a θ-step costs ~10 CPU-seconds instead of ~100 (batch 32, 1-2 × 32-64 units, 14×14)
METZ_SMALL = ["--config.batch_size=32", "--config.architecture.widths=(32,64)", "--config.architecture.depths=(1,2)",
              "--config.task_family_config.image_size=14", "--config.update_rule_config.mix_init=1.0",
              "--config.optimizer.learning_rate=1e-3", "--config.schedule.phases=independent"]
CANDIDATES.update({
    "simple_local@seed1": ("experiments/train/glyphs.py:glyphs_v2", ["--config.seed=1"],
                           "today's recipe, another meta-training seed"),
    "simple_local+independent+nres@seed1": ("experiments/train/glyphs.py:glyphs_v2", WINNER + ["--config.seed=1"],
                                            "the winner, another meta-training seed"),
    "simple_local+independent+nres+horizon3000": ("experiments/train/glyphs.py:glyphs_v2",
                                                  WINNER + ["--config.schedule.horizon=(50,3000)"],
                                                  "the winner with horizons up to 3,000 inner steps"),
    "simple_local+independent+nres+augment": ("experiments/train/glyphs.py:glyphs_v2", WINNER + AUGMENT,
                                              "shift/rotation/noise augmentation, its coefficients as targets"),
    "simple_local+independent+nres+augment+weight0.3": (
        "experiments/train/glyphs.py:glyphs_v2",
        WINNER + AUGMENT + ["--config.task_family_config.regression_weight=0.3",
                            "--config.meta_objective_config.target_centring=global"],
        "augmentation targets at 0.3 of the labels' weight, the reference's global target centring"),
    "metz2019-small": ("experiments/train/glyphs.py:metz2019", METZ_SMALL,
                       "metz2019 at small shapes, fast start, independent phases (width-agnostic top-down net)"),
    "metz2019-small+dense_top": ("experiments/train/glyphs.py:metz2019",
                                 METZ_SMALL + ["--config.update_rule_config.top_mixing=dense"],
                                 "the same with the reference's dense top-down mixing (top width 32)"),
})
# The hand-designed-prior recipe (experiments/train/glyphs.py:genome): metz2019 starting at the hebbian rule,
# its genome by CMA-ES on whole runs; the objective over log-spaced points or at the last point only; the
# networks from the genome ("{workroot}" is the study's --workroot).
LAST_POINT = ["--config.genome.objective_points=(1000,)"]
CANDIDATES.update({
    "genome": ("experiments/train/glyphs.py:genome", [],
               "genome stage: CMA-ES on whole runs, meta-objective averaged after 10/30/100/300/1,000 steps"),
    "genome@seed1": ("experiments/train/glyphs.py:genome", ["--config.seed=1"], "the same, meta-training seed 1"),
    "genome_last_point": ("experiments/train/glyphs.py:genome", LAST_POINT,
                          "genome stage, meta-objective after 1,000 steps only"),
    "genome_last_point@seed1": ("experiments/train/glyphs.py:genome", LAST_POINT + ["--config.seed=1"],
                                "the same, meta-training seed 1"),
    "nets_from_genome": ("experiments/train/glyphs.py:nets", ["--config.init_theta={workroot}/genome/best"],
                         "stage two: the networks unfrozen from the genome candidate's best-validated θ"),
})
DATASETS = ("digits_5_9", "fashion_14")
BASELINES = ("random_init", "raw_input", "hebbian")


def study_overrides(seeds: int, steps: tuple[int, ...]) -> list[str]:
    return [f"--config.seeds={seeds}", f"--config.steps={tuple(steps)}", "--config.shots=(10,)",
            "--config.main_shots=10", "--config.readouts=('ridge',)"]


def eval_study(methods: dict, rule_checkpoint: str, seeds: int, steps):
    import ml_collections

    from metaplastic.core.evaluation import resolve_study
    from metaplastic.core import config as config_lib

    base = config_lib.load_config_file(str(ROOT / "experiments/eval/datasets.py"))
    base.methods = ml_collections.ConfigDict(methods)
    base.datasets = ml_collections.ConfigDict({k: v for k, v in base.datasets.items() if k in DATASETS})
    base.filters_dataset = "fashion_14"
    overrides = study_overrides(seeds, steps) + [f"--config.rule_checkpoint={rule_checkpoint}"]
    return resolve_study(base, config_lib.parse_overrides(overrides))


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def train(name: str, workroot: pathlib.Path, budget: float, log) -> dict:
    from metaplastic.core import config as config_lib
    from metaplastic.core.genome import trainer_class

    spec, overrides, _ = CANDIDATES[name]
    overrides = [o.replace("{workroot}", str(workroot)) for o in overrides]
    workdir = workroot / name
    ledger_path = workdir / "recipe_budget.json"
    ledger = json.loads(ledger_path.read_text()) if ledger_path.exists() else {"wall": 0.0, "cpu": 0.0}
    remaining = budget - ledger["cpu"]
    config = config_lib.resolve(config_lib.load_config_file(str(ROOT / spec)), config_lib.parse_overrides(
        overrides + ["--config.checkpoint_every=25", "--config.num_steps=1000000"]))
    if remaining > 1:
        load_before = os.getloadavg()[0]
        wall, cpu = time.perf_counter(), cpu_seconds()
        trainer = trainer_class(config)(config, workdir)
        trainer.run(progress=False, max_cpu_seconds=remaining)
        ledger = {"wall": ledger["wall"] + time.perf_counter() - wall, "cpu": ledger["cpu"] + cpu_seconds() - cpu,
                  "steps": trainer.step, "skipped": trainer.skipped,
                  "load": [load_before, os.getloadavg()[0]]}
        workdir.mkdir(parents=True, exist_ok=True)
        ledger_path.write_text(json.dumps(ledger))
        log(f"{name}: {trainer.step} θ-steps in {ledger['wall']:.0f} s wall, {ledger['cpu']:.0f} s CPU")
    return ledger


def steps_per_cpu_hour(ledger: dict) -> float:
    return ledger.get("steps", 0) / max(ledger["cpu"], 1e-9) * 3600


def summarise(results: dict) -> dict:
    """(dataset, steps) -> (mean, se) of the ridge accuracy of the study's methods."""
    out = {}
    for row in results["summary"]:
        if row["readout"] == "ridge":
            out[f"{row['method']}|{row['dataset']}|{row['steps']}"] = (row["mean"], row["se"], row["n"])
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workroot", required=True, help="folder for the runs (outside the checkout)")
    parser.add_argument("--budget", type=float, default=1200.0, help="CPU seconds of meta-training each")
    parser.add_argument("--candidates", default=",".join(CANDIDATES))
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--steps", default="100,1000")
    parser.add_argument("--out", default="")
    parser.add_argument("--train-only", action="store_true",
                        help="meta-train each candidate to the budget and print θ-steps per CPU-hour; no scoring")
    args = parser.parse_args(argv)
    from metaplastic.core.evaluation import run_study

    workroot = pathlib.Path(args.workroot).absolute()
    workroot.mkdir(parents=True, exist_ok=True)
    steps = tuple(int(s) for s in args.steps.split(","))
    names = [n for n in args.candidates.split(",") if n]
    unknown = [n for n in names if n not in CANDIDATES]
    if unknown:
        print(f"bench_recipes: unknown candidates {unknown} (known: {', '.join(CANDIDATES)})", file=sys.stderr)
        return 2
    log = lambda line: print(f"[{time.strftime('%H:%M:%S')}] {line}", flush=True)
    figures = {"budget_seconds": args.budget, "seeds": args.seeds, "steps": steps, "candidates": {}}
    if args.train_only:
        print("| candidate | θ-steps | CPU seconds | θ-steps / CPU-hour | wall seconds | load at start, end |")
        print("|---|---|---|---|---|---|")
        for name in names:
            ledger = train(name, workroot, args.budget, log)
            print(f"| {name} | {ledger.get('steps', 0)} | {ledger['cpu']:.0f} | "
                  f"{steps_per_cpu_hour(ledger):.1f} | {ledger['wall']:.0f} | "
                  f"{', '.join(f'{v:.1f}' for v in ledger.get('load', []))} |", flush=True)
        return 0
    for name in names:
        ledger = train(name, workroot, args.budget, log)
        best = workroot / name / "best"  # the best-validated θ when the recipe validates, else the last
        checkpoint = best if (best / "rule.json").exists() else workroot / name
        study = eval_study({"learned": {"method": "update_rule"}}, str(checkpoint), args.seeds, steps)
        scores = summarise(run_study(study, workroot / f"{name}.eval", progress=False, log=log))
        figures["candidates"][name] = {"ledger": ledger, "scores": scores}
        log(f"{name}: " + ", ".join(f"{k.split('|', 1)[1]}={v[0]:.3f}±{v[1]:.3f}" for k, v in scores.items()))
    methods = {b: ({"method": "update_rule", "rule": "hebbian"} if b == "hebbian" else {"method": b})
               for b in BASELINES}
    methods["learned"] = {"method": "random_init"}  # the study's primary slot; a duplicate of random_init
    study = eval_study(methods, "", args.seeds, steps)
    figures["baselines"] = summarise(run_study(study, workroot / "baselines.eval", progress=False, log=log))
    (workroot / "recipes.json").write_text(json.dumps(figures, indent=1))
    if args.out:
        pathlib.Path(args.out).write_text(markdown(figures, args))
    print(markdown(figures, args))
    return 0


def cell(scores: dict, method: str, dataset: str, steps: int) -> str:
    value = scores.get(f"{method}|{dataset}|{steps}")
    return f"{value[0]:.3f} ± {value[1]:.3f}" if value else "—"


def markdown(figures: dict, args) -> str:
    steps = figures["steps"]
    columns = [(d, s) for d in DATASETS for s in steps]
    head = "| candidate | θ-steps | θ-steps / CPU-hour | " + " | ".join(f"{d} @{s}" for d, s in columns) + " |"
    lines = [head, "|" + "---|" * (3 + len(columns))]
    for name, entry in figures["candidates"].items():
        ledger = entry["ledger"]
        lines.append(f"| {name} | {ledger.get('steps', 0)} | {steps_per_cpu_hour(ledger):.0f} | "
                     + " | ".join(cell(entry["scores"], "learned", d, s) for d, s in columns) + " |")
    for baseline in BASELINES:
        lines.append(f"| *{baseline}* | | | " + " | ".join(cell(figures["baselines"], baseline, d, s)
                                                       for d, s in columns) + " |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
