"""The gradient-field figure (Fig. 1 / 2 of Sun et al. for any loss) is a real PNG drawn from its panels."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from pairsim.report import GradientPanel, gradient_field_plot


def _panel(margin: float = 0.2, boundary: bool = True, title: str = "triplet") -> GradientPanel:
    """A triplet-like field written out by hand: L = [s_n - s_p + margin]_+ on an 11 x 11 grid."""
    s_n, s_p = np.meshgrid(np.linspace(-1, 1, 11), np.linspace(-1, 1, 11))  # (11, 11) each
    arg = s_n - s_p + margin
    active = (arg > 0).astype(float)
    return GradientPanel(
        title=title,
        subtitle=f"margin={margin}",
        s_n=s_n,
        s_p=s_p,
        loss=np.maximum(arg, 0.0),
        descent_s_n=-active,
        descent_s_p=active,
        boundary=arg if boundary else None,
    )


def as_image(png: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(png))
    image.load()
    return image


def test_plot_is_a_png_that_depends_on_its_data() -> None:
    a = gradient_field_plot([_panel(0.2)])
    assert as_image(a).format == "PNG"
    assert a != gradient_field_plot([_panel(0.5)])
    assert a != gradient_field_plot([_panel(0.2, boundary=False)])


def test_one_subplot_per_panel_side_by_side() -> None:
    one = as_image(gradient_field_plot([_panel()]))
    three = as_image(gradient_field_plot([_panel(), _panel(0.4, title="b"), _panel(0.6, boundary=False, title="c")]))
    assert three.width > 2.5 * one.width
    assert abs(three.height - one.height) < 0.1 * one.height


def test_degenerate_panels_still_draw() -> None:
    flat = _panel()
    zero = GradientPanel("flat", "", flat.s_n, flat.s_p, np.zeros((11, 11)), np.zeros((11, 11)), np.zeros((11, 11)))
    # No contour levels, no arrows, and a boundary margin that never changes sign.
    never = GradientPanel(
        "never", "", flat.s_n, flat.s_p, flat.loss, flat.descent_s_n, flat.descent_s_p, np.ones((11, 11))
    )
    assert as_image(gradient_field_plot([zero, never])).format == "PNG"


def test_bad_panels_raise() -> None:
    p = _panel()
    with pytest.raises(ValueError, match="loss has shape"):
        GradientPanel("x", "", p.s_n, p.s_p, p.loss[:3], p.descent_s_n, p.descent_s_p)
    with pytest.raises(ValueError, match="2-D grid"):
        GradientPanel("x", "", p.s_n[0], p.s_p[0], p.loss[0], p.descent_s_n[0], p.descent_s_p[0])
    with pytest.raises(ValueError, match="at least one panel"):
        gradient_field_plot([])
