"""A study's tables and page: ``results.md`` (as the Reality Check's Tables 4-6) and ``report.html``.

The page shows, per loss, Optuna's optimisation history, the objective against each parameter (how robust
the loss is to its settings, as the Circle Loss paper's Fig. 3) and parameter importances, the validation
score of each loss's best trial against its test score, and the losses' gradient fields on the (s_n, s_p)
plane at their best parameters (the paper's Fig. 1-2).
"""

from __future__ import annotations

import html
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from pairsim._optional import require
from pairsim.jobs.study import loss_study, open_storage
from pairsim.jobs.study_config import StudyConfig
from pairsim.jobs.study_markdown import results_markdown
from pairsim.losses import create_loss, get_loss_class
from pairsim.losses.geometry import decision_boundary_margin, gradient_field, plane_grid
from pairsim.report import Figure, GradientPanel, figure_png, gradient_field_plot, pyplot, write_report


def _optuna_png(plot: Any, study: Any) -> bytes:
    pyplot()  # the project's matplotlib settings (Agg, fonts) before Optuna draws
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "experimental" plots, and importances of too few trials
        axes = plot(study)
    figure = axes.figure if hasattr(axes, "figure") else axes.flat[0].figure
    figure.set_size_inches(6.5, 3.6)
    return figure_png(figure)


def _validation_test_png(results: Mapping[str, Any]) -> bytes:
    fig, ax = pyplot().subplots(figsize=(5.5, 4.0))
    for name, loss in results["losses"].items():
        x = next(iter(loss["validation"].values()))
        y = loss["test"]["map_at_r"]
        ci = y["ci95"] or [y["mean"], y["mean"]]
        ax.errorbar([x], [y["mean"]], yerr=[[y["mean"] - ci[0]], [ci[1] - y["mean"]]], fmt="o", capsize=3)
        ax.annotate(name, (x, y["mean"]), textcoords="offset points", xytext=(5, 5), fontsize=8)
    ax.set_xlabel("validation MAP@R of the best trial (mean over folds)")
    ax.set_ylabel("test MAP@R (mean, 95% interval over seeds)")
    ax.grid(alpha=0.3)
    return figure_png(fig)


def gradient_panels(results: Mapping[str, Any]) -> list[GradientPanel]:
    """Each loss at its best parameters on the (s_n, s_p) plane (its ``loss.params`` only)."""
    panels = []
    s_n, s_p = plane_grid(31)
    for tag, loss in results["losses"].items():
        name = tag.partition("@")[0]
        params = {
            k.removeprefix("loss.params."): v for k, v in loss["best_params"].items() if k.startswith("loss.params.")
        }
        cls = get_loss_class(name)
        extra = {} if cls.supports_pair_wise else {"num_classes": 2, "embedding_dim": 2}
        module = create_loss(name, **params, **extra)
        field = gradient_field(module, s_n, s_p)
        margin = decision_boundary_margin(module, s_n, s_p)
        panels.append(
            GradientPanel(
                title=tag,
                subtitle=", ".join(f"{k}={v:.3g}" for k, v in params.items()),
                s_n=s_n.numpy(),
                s_p=s_p.numpy(),
                loss=field.loss.numpy(),
                descent_s_n=field.descent_s_n.numpy(),
                descent_s_p=field.descent_s_p.numpy(),
                boundary=None if margin is None else margin.detach().to(torch.float64).numpy(),
            )
        )
    return panels


def write_study_report(config: StudyConfig, results: Mapping[str, Any], storage_url: str | None = None) -> Path:
    """Write ``results.md`` and ``report.html`` into the study directory; returns the page's path."""
    figures = [
        Figure(
            "Validation against test",
            _validation_test_png(results),
            "Each loss's best trial: its validation score (what was tuned) and its test score over seeds.",
        ),
        Figure(
            "Gradient fields at the best parameters (paper Fig. 1-2)",
            gradient_field_plot(gradient_panels(results)),
            "The direction optimisation moves a pair (s_n, s_p) under each loss, with its loss contours.",
        ),
        *optuna_figures(config, storage_url),
    ]
    table = "<pre>" + html.escape(results_markdown(results)) + "</pre>"
    data = results["data"]
    facts = {
        "study": str(results["study"]),
        "data set": str(data["name"]),
        "classes": f"{len(data['train_classes'])} training (in {results['protocol']['folds']} folds), "
        f"{len(data['test_classes'])} test",
        "final stage": f"{results['protocol']['seeds']} seeds per loss",
    }
    summary = (
        "Every loss was tuned with the same budget on validation folds of the training classes; its best "
        "parameters were retrained with several seeds and evaluated once on unseen test classes."
    )
    title = f"pairsim study {config.name}"
    return write_report(config.directory / "report.html", title, summary, table, facts, figures)


def optuna_figures(config: StudyConfig, storage_url: str | None) -> list[Figure]:
    """Per loss, Optuna's optimisation history, the objective against each parameter, and (with two or more
    complete trials) parameter importances."""
    visualization = require("optuna.visualization.matplotlib", "the study report")
    storage = open_storage(config, storage_url)
    figures = []
    for entry in config.entries:
        study = loss_study(config, entry, storage)
        history = _optuna_png(visualization.plot_optimization_history, study)
        figures.append(Figure(f"{entry.tag}: optimisation history", history, "Validation objective of every trial."))
        complete = [t for t in study.trials if t.state.name == "COMPLETE"]
        if complete and complete[0].params:
            robustness = _optuna_png(visualization.plot_slice, study)
            caption = "Robustness: the validation objective of every trial against each parameter (cf. paper Fig. 3)."
            figures.append(Figure(f"{entry.tag}: objective against each parameter", robustness, caption))
        if len(complete) >= 2 and complete[0].params:
            importance = _optuna_png(visualization.plot_param_importances, study)
            caption = "Optuna's importance of each searched parameter for the validation objective."
            figures.append(Figure(f"{entry.tag}: parameter importance", importance, caption))
    return figures
