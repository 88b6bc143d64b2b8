"""How often the default alert raises a false alarm (A/A) and catches a plant (A/B), estimated by resampling
the per-process values of two `fitbench calibrate --json` documents: many processes of the base commit and
many of a planted commit (per-process values of one commit are exchangeable: docs/alerts.md).

    python scripts/alert_rates.py BASE.json [PLANTED.json] --processes 8 --trials 2000 --out rates.json
"""

from __future__ import annotations

import argparse
import json
import sys

from fitbench.regress.alert import AlertSettings
from fitbench.regress.calibration import Calibration, planted_ratio, resampled_rates


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("base")
    parser.add_argument("planted", nargs="?")
    parser.add_argument("--processes", type=int, nargs="+", default=[8])
    parser.add_argument("--trials", type=int, default=2000)
    parser.add_argument("--threshold", type=float, default=AlertSettings.threshold)
    parser.add_argument("--min-change", type=float, default=AlertSettings.min_change)
    parser.add_argument("--alpha", type=float, default=AlertSettings.alpha)
    parser.add_argument("--calibrated", action="store_true",
                        help="use the base document's spread for the detectable change, as an alert with that "
                             "calibration on the machine would")
    parser.add_argument("--out")
    args = parser.parse_args()
    settings = AlertSettings(alpha=args.alpha, threshold=args.threshold, min_change=args.min_change).check()
    base = Calibration.from_dict(json.load(open(args.base)))
    base_values = {c.key: c.values for c in base.cells}
    planted_values = None
    doc = {"base": args.base, "planted": args.planted, "settings": vars(args), "results": []}
    if args.planted:
        planted = Calibration.from_dict(json.load(open(args.planted)))
        planted_values = {c.key: c.values for c in planted.cells}
        doc["planted_ratio"] = {k: planted_ratio(base_values[k], planted_values[k]) for k in base_values
                                if k in planted_values}
        for k, r in doc["planted_ratio"].items():
            print(f"plant's effect {k}: {r:.3f}x "
                  f"(median of {len(planted_values[k])} vs {len(base_values[k])} processes)")
        base_values = {k: v for k, v in base_values.items() if k in planted_values}
    calibrated = base.log_sds() if args.calibrated else None
    for n in args.processes:
        kinds = [("A/A", None)] + ([("A/B", planted_values)] if planted_values else [])
        for kind, head in kinds:
            result = resampled_rates(base_values, head, n, args.trials, settings, calibrated)
            doc["results"].append(result)
            print(f"{kind} with {n} processes per commit, {args.trials} trials: any cell worse in "
                  f"{100 * result['any_worse_rate']:.1f} % of alerts")
            for cell, shares in result["cells"].items():
                print(f"    {cell}: " + ", ".join(f"{k} {100 * v:.1f} %" for k, v in shares.items()))
    if args.out:
        with open(args.out, "w") as f:
            json.dump(doc, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
