"""Each paper's claims: the methods measured under one metric, the ordering the paper claims, its figures."""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["CLAIMS", "Claim"]


@dataclass
class Claim:
    """One row group: methods measured under one metric and the ordering the paper claims.

    ``order`` lists labels best first (``>`` chains); ``higher`` says whether larger is better;
    ``paper`` is the paper's figure for each label (text).
    """

    key: str
    title: str
    metric: str
    higher: bool
    order: list[str]
    paper: dict[str, str]
    source: str
    extra: list[str] = field(default_factory=list)  # labels shown but outside the ordering


CLAIMS = [
    Claim(
        "iagan_t2",
        "IAGAN Table 2: SR x4 (bicubic), PSNR dB",
        "psnr",
        True,
        ["IAGAN", "CSGM"],
        {"CSGM": "20.51", "CSGM-BP": "26.44", "IAGAN": "27.16", "IAGAN-BP": "27.14"},
        "IAGAN Table 2, CelebA SR x4",
        ["CSGM-BP", "IAGAN-BP"],
    ),
    Claim(
        "iagan_bp",
        "IAGAN Table 2: back-projection's effect on CSGM, PSNR dB",
        "psnr",
        True,
        ["CSGM-BP", "CSGM"],
        {"CSGM": "20.51", "CSGM-BP": "26.44"},
        "IAGAN Table 2, CelebA SR x4",
    ),
    Claim(
        "dgp_t4",
        "DGP Table 4: loss / fine-tuning ablation, SR x4 (Lanczos), PSNR dB",
        "psnr",
        True,
        ["D + progressive", "D", "MSE", "perceptual"],
        {"MSE": "21.24", "perceptual": "20.30", "D": "21.58", "D + progressive": "22.00"},
        "DGP Table 4, ImageNet SR x4",
    ),
    Claim(
        "dgp_t2",
        "DGP Table 2: centre-hole inpainting, PSNR inside the hole dB",
        "masked_psnr",
        True,
        ["DGP", "IAGAN", "CSGM"],
        {"DGP": "16.97", "DIP": "14.58", "CSGM": "13.70 (Zhu et al.)", "IAGAN": "15.01 (Bau et al.)"},
        "DGP Table 2, ImageNet; GAN-inversion baselines stand in for CSGM / IAGAN",
        ["DIP", "TV"],
    ),
    Claim(
        "dgp_t5",
        "DGP Table 5: adversarial defence, top-1 accuracy %",
        "correct",
        True,
        ["DGP", "CSGM"],
        {"clean": "74.9", "attacked": "1.4", "CSGM": "0.2 (DefenseGAN)", "DGP": "41.3", "DIP": "37.5"},
        "DGP Table 5, ImageNet ResNet50; CSGM = DefenseGAN-style latent-only",
        ["clean", "attacked", "smoothing"],
    ),
    Claim(
        "lcm_s3",
        "LCM Sec. 3 (Fig. 3): inpainting, feature distance inside the hole (lower is better)",
        "feature",
        False,
        ["LCM", "GLO (1024-d)", "WGAN-GP"],
        {
            "LCM": "best (Fig. 3, bars)",
            "GLO (1024-d)": "2nd",
            "WGAN-GP": "worse",
            "AE": "worse",
            "DIP": "worse",
        },
        "LCM Fig. 3, CelebA inpainting (values only as bars)",
        ["AE", "DIP", "GLO (64-d)"],
    ),
    Claim(
        "lcm_s3_ae",
        "LCM Sec. 3: GLO (1024-d) better than AE (feature distance in the hole)",
        "feature",
        False,
        ["GLO (1024-d)", "AE"],
        {"GLO (1024-d)": "better", "AE": "worse"},
        "LCM Sec. 3 text and Fig. 3",
    ),
    Claim(
        "lcm_s3_dip",
        "LCM Sec. 3: GLO (1024-d) better than DIP on CelebA (feature distance in the hole)",
        "feature",
        False,
        ["GLO (1024-d)", "DIP"],
        {"GLO (1024-d)": "better", "DIP": "worse on CelebA"},
        "LCM Sec. 3 text and Fig. 3",
    ),
    Claim(
        "cri_f5",
        "CRI Fig. 5: number of clusters, emoji colorization, offline perceptual distance (lower is better)",
        "perceptual",
        False,
        ["10 clusters", "5 clusters", "1 cluster"],
        {"1 cluster": "worst", "5 clusters": "between", "10 clusters": "best (of 1, 5, 10, 15)"},
        "CRI Fig. 5, ImageNet colorization (values only as a plot)",
    ),
    Claim(
        "cri_t4",
        "CRI Table 4: offset regularizer, emoji colorization, offline perceptual distance (lower is better)",
        "perceptual",
        False,
        ["L2", "L1", "none"],
        {"none": "0.1996", "L1": "0.1694", "L2": "0.1560"},
        "CRI Table 4, CelebA-HQ colorization, LPIPS",
    ),
    Claim(
        "eglass",
        "e-GLASS: seconds per distinct feasible solution (10 asked), SR x4 (lower is better)",
        "seconds_per_solution",
        False,
        ["e-GLASS", "restarts"],
        {"e-GLASS": "370 (3.7e3 s for 10)", "restarts": "3500 (3.5e4 s for 10)"},
        "e-GLASS Table 1, BigGAN SR",
    ),
    Claim(
        "eglass_div",
        "e-GLASS: diversity of the feasible solutions (mean pairwise offline perceptual distance)",
        "diversity",
        True,
        [],
        {"e-GLASS": "significant perceptual change", "restarts": "-"},
        "e-GLASS Sec. 4 (no ordering claimed against restarts)",
        ["e-GLASS", "restarts"],
    ),
    Claim(
        "tv",
        "Classical baseline: TV-regularised reconstruction, centre-hole inpainting, PSNR dB",
        "psnr",
        True,
        ["TV", "IAGAN", "CSGM"],
        {"TV": "22.2", "IAGAN": "19.9", "CSGM": "19.2"},
        "issue 15: 8 Fashion-MNIST images, 1500-step WGAN-GP",
    ),
]
