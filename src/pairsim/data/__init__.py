"""Data sets, class-disjoint splits, samplers and transforms.

``load_dataset(name, split, root, image_size=..., max_classes=..., seed=..., test_ratio=..., folds=...,
fold=...)`` builds a data set once (deterministically, cached under ``root``) and returns one split
(``train``, ``val``, ``trainval``, ``test``, ``all``; see :mod:`pairsim.data.splits`) as an :class:`ImageSet`;
``list_datasets()`` names the registered ones: ``hangul-fonts`` (the default), ``emoji``,
``fashion-mnist`` and ``folder`` (the user's images). New data sets register a builder with
``@register_dataset("name")``.
"""

from pairsim.data.base import ImageSet
from pairsim.data.registry import BuildContext, describe_split, list_datasets, load_dataset, register_dataset
from pairsim.data.splits import SplitSpec, class_folds, split_classes

__all__ = [
    "BuildContext",
    "ImageSet",
    "SplitSpec",
    "class_folds",
    "describe_split",
    "list_datasets",
    "load_dataset",
    "register_dataset",
    "split_classes",
]
