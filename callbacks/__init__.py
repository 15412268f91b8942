"""Lightning callbacks: for the inversion engine (stopping, image logging, progressive unfreezing, BN->IN,
stage marks; they implement ``inversion.stages.StageCallback`` structurally and never import
``inversion``) and for prior training (sample grids, the training report).
"""

from callbacks.finetuning import GroupLearningRates, ProgressiveUnfreezing
from callbacks.images import ImageGridLogger
from callbacks.marks import StageMarks
from callbacks.normalization import BatchNormToInstanceNorm, swap_batchnorm_for_instancenorm
from callbacks.report import PriorReport
from callbacks.samples import SampleGrids
from callbacks.stopping import MSEThresholdStop, TermThresholdStop

__all__ = [
    "BatchNormToInstanceNorm",
    "GroupLearningRates",
    "ImageGridLogger",
    "MSEThresholdStop",
    "PriorReport",
    "ProgressiveUnfreezing",
    "SampleGrids",
    "StageMarks",
    "TermThresholdStop",
    "swap_batchnorm_for_instancenorm",
]
