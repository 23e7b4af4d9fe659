"""The report's figures are real PNGs drawn from the data given, and the page embeds them."""

from __future__ import annotations

import base64
import io
from pathlib import Path

import numpy as np
from PIL import Image

from pairsim.report import (
    Figure,
    RetrievalExample,
    decision_scatter_plot,
    loss_and_precision_plot,
    metrics_table,
    retrieval_grid_plot,
    similarity_plot,
    write_report,
)

TRAIN = [
    {"step": s, "loss": 10.0 / s, "sp_mean": 0.1 + s / 40, "sp_q10": 0.0, "sp_q90": 0.9, "sn_mean": 0.05}
    | {"sn_q10": -0.1, "sn_q90": 0.2, "outside_circle": 1.0 - s / 20}
    for s in range(1, 21)
]
EVALS = [{"step": 10, "precision_at_1": 0.5}, {"step": 20, "precision_at_1": 0.7}]


def as_image(png: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(png))
    image.load()
    return image


def test_plots_are_pngs_that_depend_on_their_data() -> None:
    for png in (
        loss_and_precision_plot(TRAIN, EVALS),
        similarity_plot(TRAIN),
        decision_scatter_plot([("train", np.array([0.1, 0.2]), np.array([0.9, 0.8]))], m=0.25),
    ):
        assert as_image(png).format == "PNG"
    a = decision_scatter_plot([("train", np.array([0.1]), np.array([0.9]))], m=0.25)
    b = decision_scatter_plot([("train", np.array([0.1]), np.array([0.9]))], m=0.4)
    assert a != b


def test_retrieval_grid_has_one_row_per_query() -> None:
    tile = np.zeros((1, 8, 8), np.uint8)
    examples = [
        RetrievalExample(tile, key, np.stack([tile] * 3), (key, "x", key), np.array([0.9, 0.8, 0.7]))
        for key in ("가", "b")
    ]
    assert examples[0].correct == [True, False, True]
    one = as_image(retrieval_grid_plot(examples[:1]))
    two = as_image(retrieval_grid_plot(examples))
    assert two.height > 1.5 * one.height


def test_report_embeds_figures_and_escapes_text(tmp_path: Path) -> None:
    png = similarity_plot(TRAIN)
    table = metrics_table({"trained <b>": {"precision_at_1": 0.25}}, ["precision_at_1"])
    path = write_report(tmp_path / "r.html", "t", "s & s", table, {"k": "<v>"}, [Figure("f", png, "c")])
    page = path.read_text()
    assert base64.b64encode(png).decode() in page
    assert "&lt;v&gt;" in page and "trained &lt;b&gt;" in page and "s &amp; s" in page
    assert "<td>0.250</td>" in page
