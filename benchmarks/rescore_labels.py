"""Re-score the quality suite's saved probabilities with other ``to_labels`` options (no training).

``bench_quality.py --save-probs DIR`` keeps each run's probabilities; this script labels them
again with each variant (keyword arguments of ``to_labels`` on top of the model's
``label_options``) and prints object F1 at IoU 0.5 per image (mean over the saved seeds) and
the mean and worst image per group::

    python benchmarks/bench_quality.py --seconds 60 --seeds 0,1 --it-per-s 6.38 --save-probs probs
    python benchmarks/rescore_labels.py probs --variant "fill_holes=False" --variant "fill_holes=True" \\
        --variant "fill_holes='uncertain'"
"""

from __future__ import annotations

import argparse
import ast
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import quality_suite  # noqa: E402


def parse_variant(text: str) -> dict:
    """``"fill_holes=False, split_h=2"`` -> ``{"fill_holes": False, "split_h": 2}`` ("" -> {})."""
    out = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        key, _, value = part.partition("=")
        out[key.strip()] = ast.literal_eval(value.strip())
    return out


def rescore(folder: Path, variants: list[str], pattern: str = "*.npz") -> dict:
    """``{(kind, image): {variant: [F1 per saved run]}}``."""
    from napari_unet.labels.metrics import match_instances
    from napari_unet.labels.instances import to_labels

    suite = quality_suite.suite()
    names = {name.replace(" ", "_"): (name, kind) for name, kind, _, _ in suite}
    truth = {name: inst for name, _, _, inst in suite}
    rows: dict = {}
    for path in sorted(folder.glob(pattern)):
        key = path.stem.rsplit("_", 3)[0]
        name, kind = names[key]
        with np.load(path) as saved:
            probabilities = saved["probabilities"].astype(np.float32)
            options = json.loads(str(saved["options"]))
        for variant in variants:
            labels = to_labels(probabilities, **{**options, **parse_variant(variant)})
            rows.setdefault((kind, name), {}).setdefault(variant, []).append(match_instances(truth[name], labels)["f1"])
    return rows


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path, help="the --save-probs folder of bench_quality.py")
    parser.add_argument("--variant", action="append", default=[], metavar="KEY=VALUE,...",
                        help='to_labels keywords, e.g. "fill_holes=False" ("" = the defaults)')
    parser.add_argument("--pattern", default="*.npz", help="which saved runs, e.g. '*_a_s0_60.npz'")
    args = parser.parse_args(argv)
    variants = args.variant or [""]
    rows = rescore(args.folder, variants, args.pattern)
    width = max(12, *(len(v) + 2 for v in variants))
    print(f"{'image':<26}{'runs':>5}" + "".join(f"{v or 'defaults':>{width}}" for v in variants))
    groups: dict = {}
    for (kind, name), scores in sorted(rows.items()):
        print(f"{name:<26}{len(scores[variants[0]]):>5}" + "".join(f"{np.mean(scores[v]):>{width}.3f}" for v in variants))
        for v in variants:
            groups.setdefault(kind, {}).setdefault(v, []).append(float(np.mean(scores[v])))
    for kind, scores in groups.items():
        print(f"{'mean ' + kind:<31}" + "".join(f"{np.mean(scores[v]):>{width}.3f}" for v in variants))
        print(f"{'worst ' + kind:<31}" + "".join(f"{np.min(scores[v]):>{width}.3f}" for v in variants))


if __name__ == "__main__":
    main()
