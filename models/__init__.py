"""ATNL: semantics-guided latent representations in pure PyTorch.

from models import load_checkpoint
m = load_checkpoint(DIR)   # eval-mode torch.nn.Module
z = m.encode(x)            # (N, C, H, W) in [0, 1] -> (N, d) unit vectors
x = m.decode(z)            # (N, d) -> (N, C, H, W) in [0, 1]
"""

from models.checkpoint import CheckpointError, load_checkpoint, read_meta, save_checkpoint
from models.data import DatasetError, ImageSet, load_dataset, split_indices
from models.geometry import angular_distance, interpolate, lerp, normalize, slerp
from models.networks import ModelConfig, SemanticAutoencoder
from models.training import TrainConfig, TrainingStopped, TrainResult, train

__all__ = [
    "CheckpointError",
    "DatasetError",
    "ImageSet",
    "ModelConfig",
    "SemanticAutoencoder",
    "TrainConfig",
    "TrainResult",
    "TrainingStopped",
    "angular_distance",
    "interpolate",
    "lerp",
    "load_checkpoint",
    "load_dataset",
    "normalize",
    "read_meta",
    "save_checkpoint",
    "slerp",
    "split_indices",
    "train",
]
