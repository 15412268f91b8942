"""Class inference for class-conditional priors (CRI Sec. "Robustness on Out-of-domain Images": DeiT
gives the class c of eq. 2 when the input's label is unknown).

A timm model trained FROM SCRATCH (``pretrained=False``; nothing is downloaded) on the prior's
training data. The default is a tiny DeiT (``deit_tiny_patch16_224`` re-sized to 32 px inputs with
4 px patches, 4 blocks of width 96: CPU-sized); any timm model name works. Training images are
randomly degraded (holes, down-up sampling) so that the classifier sees inputs like CRI's degraded ones.

Train: ``python -m inversion.cri.classifier fit -c configs/inversion/cri/classifier.yaml``.
Use: ``restore(..., method="cri", classifier="runs/cri_classifier/checkpoints/last.ckpt")``.
"""

from __future__ import annotations

import os
import pickle
import zipfile
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
import torch.nn.functional as F

from lcm.checkpoints import read_torch_file

__all__ = ["CRIClassifier", "cli_main", "infer_labels", "load_classifier", "save_classifier"]

CHECKPOINT_MARK = "genprior_cri_classifier"
_LOADED: dict[tuple[str, float], CRIClassifier] = {}


class CRIClassifier(pl.LightningModule):
    """A timm image classifier (default: tiny DeiT, CRI's classifier family) on images in [0, 1].

    Args:
        channels, resolution, num_classes: data shape (linked from the datamodule by the CLI).
        model_name: timm model name (``timm.list_models()``); always built with ``pretrained=False``.
        model_kwargs: extra ``timm.create_model`` arguments (DeiT: ``patch_size``, ``embed_dim``,
            ``depth``, ``num_heads``; ``img_size`` is set from ``resolution`` for ViT/DeiT models).
        lr, weight_decay: AdamW (DeiT's optimiser; DeiT lr 5e-4 x batch/512, here 1e-3 for small batches).
        augment: randomly degrade training images (a box hole or x2/x4 down-up sampling, each with
            probability 1/3) so that the classifier works on degraded inputs.

    Shape:
        - x: ``(B, channels, resolution, resolution)`` in [0, 1]; output logits ``(B, num_classes)``.
    """

    def __init__(
        self,
        channels: int = 1,
        resolution: int = 32,
        num_classes: int = 10,
        model_name: str = "deit_tiny_patch16_224",
        model_kwargs: dict[str, Any] | None = None,
        lr: float = 1e-3,
        weight_decay: float = 0.05,
        augment: bool = True,
    ):
        super().__init__()
        if num_classes < 2:
            raise ValueError(f"num_classes must be >= 2 (a classifier needs classes), got {num_classes}")
        if channels < 1 or resolution < 4:
            raise ValueError(f"channels must be >= 1 and resolution >= 4, got {channels}, {resolution}")
        self.save_hyperparameters()
        import timm

        kwargs = dict(model_kwargs if model_kwargs is not None else _DEFAULT_DEIT)
        if any(k in model_name for k in ("vit", "deit")):
            kwargs.setdefault("img_size", int(resolution))
        try:
            self.net = timm.create_model(
                model_name, pretrained=False, in_chans=channels, num_classes=num_classes, **kwargs
            )
        except RuntimeError as err:  # timm raises RuntimeError for unknown names
            raise ValueError(
                f"timm model {model_name!r} cannot be built ({err}); see timm.list_models()"
            ) from err
        self.channels, self.resolution, self.num_classes = int(channels), int(resolution), int(num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or tuple(x.shape[1:]) != (self.channels, self.resolution, self.resolution):
            raise ValueError(
                f"classifier expects images (B, {self.channels}, {self.resolution}, {self.resolution}), "
                f"got {tuple(x.shape)}: resize the input to the prior's image size"
            )
        return self.net((x - 0.5) / 0.5)

    def _degrade(self, x: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.shape
        kind = torch.randint(0, 3, (b,), device=x.device)
        out = x.clone()
        # a box hole of 25-50% of the side
        side = (torch.rand(b, device=x.device) * 0.25 + 0.25) * h
        cy, cx = torch.rand(b, device=x.device) * h, torch.rand(b, device=x.device) * w
        yy = torch.arange(h, device=x.device).view(1, h, 1)
        xx = torch.arange(w, device=x.device).view(1, 1, w)
        hole = ((yy - cy.view(-1, 1, 1)).abs() < side.view(-1, 1, 1) / 2) & (
            (xx - cx.view(-1, 1, 1)).abs() < side.view(-1, 1, 1) / 2
        )
        out = torch.where((kind == 1).view(-1, 1, 1, 1) & hole.unsqueeze(1), torch.zeros_like(out), out)
        # down-up sampling by 2 or 4
        f = 2 if torch.rand(()) < 0.5 else 4
        low = F.interpolate(F.avg_pool2d(x, f), size=(h, w), mode="bilinear", align_corners=False)
        return torch.where((kind == 2).view(-1, 1, 1, 1), low, out)

    def _step(self, batch: dict[str, torch.Tensor], stage: str) -> torch.Tensor:
        x, y = batch["image"], batch["label"]
        if (y < 0).any():
            raise ValueError("the classifier needs a labelled dataset (labels >= 0)")
        if stage == "train" and self.hparams.augment:
            x = self._degrade(x)
        logits = self(x)
        loss = F.cross_entropy(logits, y)
        acc = (logits.argmax(1) == y).float().mean()
        self.log_dict({f"{stage}/loss": loss, f"{stage}/acc": acc}, prog_bar=True)
        return loss

    def training_step(self, batch, batch_idx):
        return self._step(batch, "train")

    def validation_step(self, batch, batch_idx):
        self._step(batch, "val")

    def test_step(self, batch, batch_idx):
        self._step(batch, "test")

    def configure_optimizers(self):
        hp = self.hparams
        return torch.optim.AdamW(self.parameters(), lr=hp.lr, weight_decay=hp.weight_decay)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint[CHECKPOINT_MARK] = 1


_DEFAULT_DEIT = {"patch_size": 4, "embed_dim": 96, "depth": 4, "num_heads": 3}


def load_classifier(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> CRIClassifier:
    """Load a :class:`CRIClassifier` checkpoint with ``torch.load(weights_only=True)`` (strict keys).

    Raises:
        FileNotFoundError: no file at ``path``.
        ValueError: unreadable file or a checkpoint of another model.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"classifier checkpoint {str(path)!r} does not exist: train one with "
            "python -m inversion.cri.classifier fit -c configs/inversion/cri/classifier.yaml"
        )
    try:
        ckpt = read_torch_file(path, "classifier checkpoint", map_location)  # CRCs, bounded views
    except (pickle.UnpicklingError, RuntimeError, EOFError, zipfile.BadZipFile, OSError) as err:
        raise ValueError(f"{str(path)!r} is not a readable classifier checkpoint: {err}") from err
    if not isinstance(ckpt, dict) or CHECKPOINT_MARK not in ckpt:
        raise ValueError(
            f"{str(path)!r} is not a CRI classifier checkpoint (no {CHECKPOINT_MARK!r} entry); "
            "train one with python -m inversion.cri.classifier fit"
        )
    # LightningCLI adds private entries such as "_instantiator": not constructor arguments
    hparams = {k: v for k, v in ckpt.get("hyper_parameters", {}).items() if not k.startswith("_")}
    module = CRIClassifier(**hparams)
    module.load_state_dict(ckpt["state_dict"], strict=True)
    return module.to(map_location).eval().requires_grad_(False)


def save_classifier(module: CRIClassifier, path: str | os.PathLike) -> Path:
    """Write ``module`` as a checkpoint that :func:`load_classifier` reads (weights, constructor arguments,
    the classifier mark), atomically; for classifiers trained outside the CLI (e.g.
    :func:`inversion.dgp.defence.train_classifier`). Returns the path."""
    from datamodules.io.atomic import atomic_write

    if not isinstance(module, CRIClassifier):
        raise TypeError(f"save_classifier needs a CRIClassifier, got {type(module).__name__}")
    ckpt = {"state_dict": module.state_dict(), "hyper_parameters": dict(module.hparams), CHECKPOINT_MARK: 1}
    return atomic_write(path, lambda f: torch.save(ckpt, f))


@torch.no_grad()
def infer_labels(
    classifier: str | os.PathLike | CRIClassifier, images: torch.Tensor, num_classes: int | None = None
) -> torch.Tensor:
    """Predicted class of each image (argmax of the classifier's logits).

    Args:
        classifier: a :class:`CRIClassifier` or its checkpoint path (loaded once, then cached).
        images: ``(B, C, H, W)`` in [0, 1].
        num_classes: the prior's class count; a mismatch raises ValueError.

    Shape:
        - images: ``(B, C, H, W)``; output ``(B,)`` int64.
    """
    if not isinstance(classifier, CRIClassifier):
        path = Path(classifier)
        key = (str(path.resolve()), path.stat().st_mtime if path.is_file() else -1.0)
        if key not in _LOADED:
            _LOADED[key] = load_classifier(path)
        classifier = _LOADED[key]
    if num_classes is not None and classifier.num_classes != num_classes:
        raise ValueError(
            f"the classifier knows {classifier.num_classes} classes, the prior {num_classes}: "
            "train the classifier on the prior's dataset"
        )
    classifier = classifier.to(images.device).eval()
    return classifier(images.to(next(classifier.parameters()).dtype)).argmax(1)


def cli_main(args: list[str] | None = None, run: bool = True):
    """``python -m inversion.cri.classifier {fit,validate,test} -c configs/inversion/cri/classifier.yaml``."""
    from pytorch_lightning.callbacks import ModelCheckpoint
    from pytorch_lightning.cli import LightningArgumentParser, LightningCLI

    class ClassifierCLI(LightningCLI):
        def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
            parser.add_lightning_class_args(ModelCheckpoint, "checkpoint")
            parser.set_defaults({"checkpoint.save_last": True})
            for name in ("channels", "resolution", "num_classes"):
                parser.link_arguments(f"data.{name}", f"model.{name}", apply_on="instantiate")

    return ClassifierCLI(
        CRIClassifier,
        pl.LightningDataModule,
        subclass_mode_data=True,
        save_config_kwargs={"overwrite": True},
        args=args,
        run=run,
    )


if __name__ == "__main__":  # pragma: no cover
    cli_main()
