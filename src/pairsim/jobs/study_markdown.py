"""A study's results as a Markdown table, as the Reality Check's Tables 4-6."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

METRICS = (("precision_at_1", "P@1"), ("r_precision", "R-Prec"), ("map_at_r", "MAP@R"))


def _cell(metric: Mapping[str, Any]) -> str:
    ci = metric["ci95"]
    spread = f" ± {(ci[1] - ci[0]) / 2:.4f}" if ci is not None else ""
    return f"{metric['mean']:.4f}{spread}"


def results_markdown(results: Mapping[str, Any]) -> str:
    """The table of a study: per loss the test metrics' means with their 95% half-intervals over seeds.

    Example:
        >>> loss = {"paradigm": "pair-wise", "trials": 3, "pruned": 1, "failed": 0, "best_params": {"m": 0.3},
        ...         "validation": {"map_at_r": 0.5}, "trial_seconds": 60.0,
        ...         "test": {k: {"mean": 0.4, "ci95": [0.3, 0.5], "values": [0.3, 0.5]}
        ...                  for k in ("precision_at_1", "r_precision", "map_at_r")},
        ...         "test_concatenated": {"map_at_r": 0.45}}
        >>> table = results_markdown({"study": "s", "data": {"name": "d"}, "losses": {"circle": loss},
        ...                           "budget": {"trials_per_loss": 3, "steps_per_trial": 10}})
        >>> "| circle | pair-wise | 0.4000 ± 0.1000 |" in table
        True
    """
    budget = results["budget"]
    lines = [
        f"### {results['study']}: {results['data']['name']}, test classes "
        "(mean ± half-width of the 95% t-interval over seeds)",
        "",
        f"Budget per loss: {budget['trials_per_loss']} trials of {budget['steps_per_trial']} steps "
        "(all folds); best parameters chosen on validation folds, then retrained and tested once.",
        "",
        "| loss | paradigm | "
        + " | ".join(label for _, label in METRICS)
        + " | MAP@R concatenated | validation | best parameters | trials (pruned, failed) | trial time |",
        "|---|---|" + "---:|" * len(METRICS) + "---:|---:|---|---:|---:|",
    ]
    for name, loss in results["losses"].items():
        params = ", ".join(f"{k.rsplit('.', 1)[-1]}={_short(v)}" for k, v in loss["best_params"].items())
        validation = next(iter(loss["validation"].values()))
        concatenated = loss.get("test_concatenated", {}).get("map_at_r")
        cells = [_cell(loss["test"][key]) for key, _ in METRICS]
        cells += ["n/a" if concatenated is None else f"{concatenated:.4f}", f"{validation:.4f}", params]
        cells += [f"{loss['trials']} ({loss['pruned']}, {loss['failed']})", f"{loss['trial_seconds'] / 60:.1f} min"]
        lines.append(f"| {name} | {loss['paradigm']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _short(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)
