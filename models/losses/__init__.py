"""Losses, one per file, named after their class."""

from models.losses.angular_triplet_neighbor import AngularTripletNeighborLoss
from models.losses.label_free_style import LabelFreeStyleLoss
from models.losses.ordinal_circle import OrdinalCircleLoss

__all__ = ["AngularTripletNeighborLoss", "LabelFreeStyleLoss", "OrdinalCircleLoss"]
