"""Export θ of a meta-training workdir as a shipped rule folder (rule.json, theta.npz, curve, provenance).

    python scripts/export_rule.py --workdir runs/glyphs --name glyphs-v2 [--out plugins/pretrained]
"""

import argparse
import csv
import datetime
import json
import pathlib
import shutil

from metaplastic.core.rules import load_rule, save_rule


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--workdir", required=True)
    parser.add_argument("--name", required=True)
    parser.add_argument("--out", default=str(pathlib.Path(__file__).parents[1] / "plugins" / "pretrained"))
    args = parser.parse_args()
    workdir, target = pathlib.Path(args.workdir), pathlib.Path(args.out) / args.name
    learned = load_rule(workdir)
    config = json.loads((workdir / "config.json").read_text())
    with (workdir / "metrics.csv").open() as f:
        rows = [row for row in csv.DictReader(f) if int(row["step"]) <= learned.description["step"]]
    seconds = sum(float(row["seconds"]) for row in rows)
    save_rule(target, config, learned.theta, extra={
        "meta_training_steps": learned.description["step"],
        "meta_training_seconds": round(seconds),
        "exported": datetime.date.today().isoformat()})
    with (target / "meta_training_curve.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["step", "meta_loss", "skipped", "horizon", "depth"],
                                extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    shutil.copy(workdir / "config.json", target / "meta_training_config.json")
    print(f"exported step {learned.description['step']} ({seconds / 3600:.2f} h of meta-training) to {target}")


if __name__ == "__main__":
    main()
