"""Losses, one per file: a class per file named after it, or a function named as its file."""

from models.losses.angular_triplet_neighbor import AngularTripletNeighborLoss
from models.losses.euclidean_triplet import euclidean_triplet_loss
from models.losses.label_free_style import LabelFreeStyleLoss
from models.losses.ordinal_circle import OrdinalCircleLoss
from models.losses.reconstruction import reconstruction_loss
from models.losses.restyled_label_consistency import restyled_label_consistency
from models.losses.style_class_share import style_class_share

__all__ = [
    "AngularTripletNeighborLoss",
    "LabelFreeStyleLoss",
    "OrdinalCircleLoss",
    "euclidean_triplet_loss",
    "reconstruction_loss",
    "restyled_label_consistency",
    "style_class_share",
]
