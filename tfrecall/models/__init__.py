"""Towers and the two-tower model."""

from tfrecall.models.tower import Tower
from tfrecall.models.two_tower import TwoTowerModel

__all__ = ["Tower", "TwoTowerModel"]
