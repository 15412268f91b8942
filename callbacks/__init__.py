"""Lightning callbacks for the inversion engine (stopping, image logging, progressive unfreezing, BN->IN)."""

from callbacks.finetuning import ProgressiveUnfreezing, schedule_to_stages
from callbacks.images import ImageGridLogger
from callbacks.marks import StageMarks
from callbacks.normalization import BatchNormToInstanceNorm, swap_batchnorm_for_instancenorm
from callbacks.stopping import MSEThresholdStop

__all__ = [
    "BatchNormToInstanceNorm",
    "ImageGridLogger",
    "MSEThresholdStop",
    "ProgressiveUnfreezing",
    "StageMarks",
    "schedule_to_stages",
    "swap_batchnorm_for_instancenorm",
]
