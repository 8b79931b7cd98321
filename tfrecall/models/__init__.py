"""Towers, the two-tower model and its optimizer for large tables."""

from tfrecall.models.optimizers import LazyAdam
from tfrecall.models.tower import Tower
from tfrecall.models.two_tower import TwoTowerModel

__all__ = ["LazyAdam", "Tower", "TwoTowerModel"]
