"""Sources of normal pairs: synthetic shape scenes (exact ground truth) and on-disk / hub image-QA datasets.

    >>> from data_builders.config import load_config
    >>> from data_builders.sources import open_source
    >>> source = open_source(load_config(None))        # SyntheticSource; source: disk gives a DiskSource
"""

from __future__ import annotations

from data_builders.config import DataConfig
from data_builders.sources.base import BadRow, Item, NotApplicable, Source

__all__ = ["BadRow", "Item", "NotApplicable", "Source", "open_source"]


def open_source(cfg: DataConfig) -> Source:
    """The source the config names (``source: synthetic | disk``)."""
    if cfg.source == "synthetic":
        from data_builders.sources.synthetic import SyntheticSource

        return SyntheticSource(cfg)
    from data_builders.sources.disk import DiskSource

    return DiskSource(cfg)
