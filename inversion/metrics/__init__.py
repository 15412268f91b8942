"""Restoration metrics: per-image MSE / PSNR / SSIM (also inside a mask), measurement residuals,
colorization scores after restoring the target's luminance, LPIPS (local weights only) and offline
feature distances that are NOT comparable with published LPIPS / FID values.
"""

from inversion.metrics.image import (
    colorization_psnr,
    colorization_ssim,
    masked_mse,
    masked_psnr,
    masked_ssim,
    measurement_residual,
    mse,
    psnr,
    restore_luminance,
    ssim,
)
from inversion.metrics.perceptual import (
    LPIPS,
    LPIPS_BACKBONE_FILES,
    EfficientNetLite0Features,
    FeatureDistance,
    FeatureMSE,
    FrechetFeatureDistance,
    LPIPSDistance,
    OfflinePerceptualDistance,
    VGG16Features,
    feature_metric,
    frechet_distance,
    perceptual_distance,
)

__all__ = [
    "mse",
    "psnr",
    "ssim",
    "masked_mse",
    "masked_psnr",
    "masked_ssim",
    "measurement_residual",
    "restore_luminance",
    "colorization_psnr",
    "colorization_ssim",
    "LPIPS",
    "LPIPS_BACKBONE_FILES",
    "EfficientNetLite0Features",
    "OfflinePerceptualDistance",
    "FrechetFeatureDistance",
    "frechet_distance",
    "FeatureDistance",
    "FeatureMSE",
    "LPIPSDistance",
    "VGG16Features",
    "feature_metric",
    "perceptual_distance",
]
