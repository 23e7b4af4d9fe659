"""BatchNorm folded into the convolution before it, for inference.

In eval mode ``BN(conv(x)) = conv'(x)`` with ``W' = W * g`` and ``b' = (b - mean) * g + beta``,
``g = gamma / sqrt(var + eps)`` per output channel, so one pass over the activations disappears per
convolution. Which BatchNorm follows which convolution is read from one traced forward pass (a
BatchNorm whose input is the very tensor a convolution returned), so any backbone works, whatever
its ``forward`` looks like; a model whose folded output differs from the original is left unfolded.
The arithmetic is torch's :func:`torch.nn.utils.fusion.fuse_conv_bn_eval`.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable

import torch
from torch import Tensor, nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

log = logging.getLogger(__name__)

#: How far the folded model's output may move (relative to its norm) before folding is refused.
FOLD_TOLERANCE = 1e-4


def conv_bn_pairs(model: nn.Module, example: Tensor) -> list[tuple[str, str]]:
    """``(convolution name, BatchNorm name)`` of every BatchNorm fed directly by a convolution's output.

    Args:
        model: in eval mode.
        example: an input ``model`` accepts, e.g. ``(1, C, H, W)``.
    """
    # id of a convolution's output -> (that convolution's name, the output); holding the output keeps its id
    # from being reused by a later tensor during the pass.
    producers: dict[int, tuple[str, Tensor]] = {}
    pairs: list[tuple[str, str]] = []
    calls: dict[str, int] = {}
    handles = []
    for name, module in model.named_modules():
        if isinstance(module, nn.Conv2d):
            handles.append(module.register_forward_hook(_record_output(name, producers, calls)))
        elif isinstance(module, nn.BatchNorm2d):
            handles.append(module.register_forward_pre_hook(_record_input(name, producers, pairs, calls)))
    try:
        with torch.no_grad():
            model(example)
    finally:
        for handle in handles:
            handle.remove()
    # A module called twice (shared weights) cannot be folded for one of its uses only.
    return [(c, b) for c, b in pairs if calls[c] == 1 and calls[b] == 1]


Producers = dict[int, tuple[str, Tensor]]


def _record_output(name: str, producers: Producers, calls: dict[str, int]) -> Callable[..., None]:
    def hook(module: nn.Module, inputs: tuple[Tensor, ...], output: Tensor) -> None:
        calls[name] = calls.get(name, 0) + 1
        producers[id(output)] = (name, output)

    return hook


def _record_input(
    name: str, producers: Producers, pairs: list[tuple[str, str]], calls: dict[str, int]
) -> Callable[..., None]:
    def hook(module: nn.Module, inputs: tuple[Tensor, ...]) -> None:
        calls[name] = calls.get(name, 0) + 1
        producer = producers.get(id(inputs[0]))
        if producer is not None and producer[1] is inputs[0]:
            pairs.append((producer[0], name))

    return hook


def fold_batchnorm(model: nn.Module, example: Tensor) -> nn.Module:
    """A copy of ``model`` in eval mode with each BatchNorm that follows a convolution folded into it.

    The copy's output on ``example`` is checked against the original's; if it moved by more than
    :data:`FOLD_TOLERANCE` (a convolution's output also used elsewhere, which folding would change),
    the unfolded copy is returned and a warning logged.

    Example:
        >>> net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU()).eval()
        >>> folded = fold_batchnorm(net, torch.rand(2, 1, 8, 8))
        >>> type(folded[1]).__name__
        'Identity'
    """
    original = copy.deepcopy(model).eval()
    folded = copy.deepcopy(original)
    modules = dict(folded.named_modules())
    pairs = conv_bn_pairs(folded, example)
    for conv_name, bn_name in pairs:
        conv, bn = modules[conv_name], modules[bn_name]
        assert isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d)
        _replace(folded, conv_name, fuse_conv_bn_eval(conv, bn))
        _replace(folded, bn_name, nn.Identity())
    with torch.no_grad():
        want, got = original(example), folded(example)
    moved = float((got - want).norm() / want.norm().clamp_min(1e-12))
    if moved > FOLD_TOLERANCE:
        log.warning("BatchNorm folding moved the output by %.2g (relative): kept unfolded", moved)
        return original
    return folded


def _replace(root: nn.Module, dotted: str, module: nn.Module) -> None:
    parent_name, _, child = dotted.rpartition(".")
    parent = root.get_submodule(parent_name) if parent_name else root
    setattr(parent, child, module)
