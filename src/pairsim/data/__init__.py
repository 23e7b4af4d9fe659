"""Data sets, class-disjoint splits, samplers and transforms.

``load_dataset(name, split, root, image_size=..., max_classes=..., seed=...)`` builds a data set
once (deterministically, cached under ``root``) and returns one split as an :class:`ImageSet`;
``list_datasets()`` names the registered ones: ``hangul-fonts`` (the default), ``emoji``,
``fashion-mnist`` and ``folder`` (the user's images). New data sets register a builder with
``@register_dataset("name")``.
"""

from pairsim.data.base import ImageSet
from pairsim.data.registry import BuildContext, list_datasets, load_dataset, register_dataset
from pairsim.data.splits import split_classes

__all__ = ["BuildContext", "ImageSet", "list_datasets", "load_dataset", "register_dataset", "split_classes"]
