"""Losses, one per file, named after their class."""

from models.losses.angular_triplet_neighbor import AngularTripletNeighborLoss
from models.losses.ordinal_circle import OrdinalCircleLoss

__all__ = ["AngularTripletNeighborLoss", "OrdinalCircleLoss"]
