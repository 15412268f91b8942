"""Pixel-wise operators: denoising (identity), inpainting (mask), colorization (channel weights)."""

from __future__ import annotations

from typing import Literal

import torch

from inversion.operators import functional as Fn
from inversion.operators import masks
from inversion.operators.base import LinearOperator

__all__ = ["Denoising", "Inpainting", "Colorization"]


class Denoising(LinearOperator):
    """``y = x + sigma * n``: the identity with Gaussian noise.

    Args:
        sigma: noise standard deviation for images in [0, 1] (e.g. 25/255).
    """

    def __init__(self, sigma: float) -> None:
        super().__init__(sigma=sigma)

    def _forward_op(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def _adjoint(self, y: torch.Tensor) -> torch.Tensor:
        return y

    def _dagger(self, y: torch.Tensor) -> torch.Tensor:
        return y


MaskKind = Literal["center", "boxes", "strokes", "file"]


class Inpainting(LinearOperator):
    """``y = x * mask`` with a binary mask (1 = observed, 0 = hole); DGP eq. for inpainting, LCM tasks.

    Masks are created LAZILY for the size of the input the first time an image of that size is seen
    (and cached), so one operator serves any resolution. They are a deterministic function of
    (``mask_kind``, sizes, ``seed``, batch position), so they are not stored in checkpoints.

    * ``center``: one centred box of ``box_size`` (LCM: 50x50 of 128x128 -> default 50/128).
    * ``boxes``: ``num_boxes`` boxes of ``box_size`` at random positions.
    * ``strokes``: ``num_strokes`` free-form brush strokes ``stroke_width`` wide.
    * ``file``: a mask image at ``mask_path`` (white = hole), resized (nearest) to the input size.

    With ``per_image=True`` the image at batch position ``b`` gets the mask drawn from seed ``seed + b``
    (the same for every call, whatever the batch size); otherwise the whole batch shares the mask of
    seed ``seed``. :meth:`set_mask` fixes a given tensor instead (shape (H, W), (1, 1, H, W) or
    (B, 1, H, W)).

    Args:
        mask_kind: "center", "boxes", "strokes" or "file".
        box_size: hole size, a fraction in (0, 1] of the side, int pixels, or [h, w].
        num_boxes: number of boxes for ``boxes``.
        num_strokes: number of strokes for ``strokes``.
        stroke_width: stroke thickness, fraction of the longer side (float) or pixels (int).
        mask_path: mask image for ``file``.
        per_image: a different mask per batch position.
        seed: base seed of the random masks.
        sigma: measurement noise standard deviation.
    """

    def __init__(
        self,
        mask_kind: MaskKind = "center",
        box_size: float | int | list[float | int] = 50 / 128,
        num_boxes: int = 3,
        num_strokes: int = 4,
        stroke_width: float | int = 0.06,
        mask_path: str | None = None,
        per_image: bool = False,
        seed: int = 0,
        sigma: float = 0.0,
    ) -> None:
        super().__init__(sigma=sigma)
        if mask_kind not in ("center", "boxes", "strokes", "file"):
            raise ValueError(f"`mask_kind` must be center, boxes, strokes or file; got {mask_kind!r}")
        if mask_kind == "file" and not mask_path:
            raise ValueError("`mask_path` is required when mask_kind='file'")
        if num_boxes < 1 or num_strokes < 1:
            raise ValueError("`num_boxes` and `num_strokes` must be >= 1")
        masks.box_extent(box_size, 10**9, 10**9)  # validates type and fraction range early
        self.mask_kind = mask_kind
        self.box_size = box_size
        self.num_boxes = int(num_boxes)
        self.num_strokes = int(num_strokes)
        self.stroke_width = stroke_width
        self.mask_path = mask_path
        self.per_image = bool(per_image)
        self.seed = int(seed)
        self._given: torch.Tensor | None = None
        self._cache: dict[tuple[int, int, int], torch.Tensor] = {}
        self._ready: dict[tuple, tuple[torch.Tensor, torch.Tensor]] = {}  # cast masks (see _masks)
        self.rows_repeat = 1  # > 1: row j uses the mask of image j // rows_repeat (see repeated())

    # -------------------------------------------------------------------------------------- masks
    def set_mask(self, mask: torch.Tensor | None) -> None:
        """Use ``mask`` (1 = observed) for every call; ``None`` returns to generated masks."""
        self._ready = {}
        if mask is None:
            self._given = None
            return
        if mask.ndim == 2:
            mask = mask[None, None]
        if mask.ndim != 4 or mask.shape[1] != 1:
            raise ValueError(
                f"`mask` must have shape (H, W), (1, 1, H, W) or (B, 1, H, W); got {tuple(mask.shape)}"
            )
        if torch.isnan(mask).any():
            raise ValueError("`mask` contains NaN values")
        self._given = mask.detach()

    def _own_row_dependence(self) -> bool:
        return self.per_image or (self._given is not None and self._given.shape[0] > 1)

    def _set_index(self, index: int) -> None:
        if self.per_image:
            self.per_image, self.seed = False, self.seed + index
            self._cache, self._ready = {}, {}

    def _set_repeat(self, r: int) -> None:
        self.rows_repeat, self._ready = r, {}

    def _generate(self, index: int, height: int, width: int) -> torch.Tensor:
        g = torch.Generator().manual_seed(self.seed + index)
        if self.mask_kind == "center":
            return masks.center_box_mask(height, width, masks.box_extent(self.box_size, height, width))
        if self.mask_kind == "boxes":
            box = masks.box_extent(self.box_size, height, width)
            return masks.random_boxes_mask(height, width, box, self.num_boxes, g)
        if self.mask_kind == "strokes":
            w = self.stroke_width
            px = w * max(height, width) if isinstance(w, float) else float(w)
            return masks.strokes_mask(height, width, self.num_strokes, px, g)
        return masks.load_mask_image(self.mask_path, height, width)

    def mask_for(self, x: torch.Tensor) -> torch.Tensor:
        """The mask applied to ``x``. Shape: (B or 1, 1, H, W), dtype/device of ``x``."""
        return self._masks(x)[0]

    def _masks(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(mask, its element-wise pseudo-inverse) for ``x``, cached per size, repeat, dtype and device."""
        b, _, h, w = x.shape
        r = self.rows_repeat
        if b % r:
            raise ValueError(f"input of {b} rows cannot be {r} repeats of each image (see Operator.repeated)")
        b //= r
        if self._given is not None:
            m = self._given
            if m.shape[-2:] != (h, w) or m.shape[0] not in (1, b):
                raise ValueError(
                    f"`mask` of shape {tuple(m.shape)} does not fit input of shape {tuple(x.shape)}; "
                    "give (1 or B, 1, H, W)"
                )
            key = ("given", id(m), m.shape[0], r, x.dtype, x.device)
        else:
            n = b if self.per_image else 1
            key = (n, h, w, r, x.dtype, x.device)
        hit = self._ready.get(key)
        if hit is not None:
            return hit
        if self._given is None:
            if (n, h, w) not in self._cache:
                self._cache[(n, h, w)] = torch.stack([self._generate(i, h, w) for i in range(n)])[:, None]
            m = self._cache[(n, h, w)]
        if r > 1 and m.shape[0] > 1:
            m = m.repeat_interleave(r, dim=0)
        m = m.to(dtype=x.dtype, device=x.device)
        # diag(m)^+ = diag(1/m on m != 0): for a 0/1 mask the mask itself (an orthogonal projection)
        inv = torch.where(m != 0, 1.0 / torch.where(m != 0, m, torch.ones_like(m)), torch.zeros_like(m))
        if len(self._ready) > 16:
            self._ready.clear()
        self._ready[key] = (m, inv)
        return m, inv

    # ------------------------------------------------------------------------------------ operator
    def _forward_op(self, x: torch.Tensor) -> torch.Tensor:
        return x * self._masks(x)[0]

    def _adjoint(self, y: torch.Tensor) -> torch.Tensor:
        return y * self._masks(y)[0]

    def _dagger(self, y: torch.Tensor) -> torch.Tensor:
        return y * self._masks(y)[1]

    def extra_repr(self) -> str:
        kind = f"mask_kind={self.mask_kind!r}, per_image={self.per_image}, seed={self.seed}"
        return f"{kind}, {super().extra_repr()}"


class Colorization(LinearOperator):
    """``y = sum_c w_c x_c``: RGB to one gray channel.

    Args:
        weights: "mean" (LCM: average of the three channels), "luma601" (ITU-R BT.601 luminance, the
            gray used by DGP), or a list of three floats.
        sigma: measurement noise standard deviation.

    Shape:
        x: (B, 3, H, W) -> y: (B, 1, H, W)
    """

    in_channels = 3

    def __init__(
        self, weights: Literal["mean", "luma601"] | list[float] = "luma601", sigma: float = 0.0
    ) -> None:
        super().__init__(sigma=sigma)
        self.weights = weights
        self.register_buffer("w", Fn.channel_weights(weights), persistent=False)

    def _forward_op(self, x: torch.Tensor) -> torch.Tensor:
        return Fn.gray(x, self.w)

    def _adjoint(self, y: torch.Tensor) -> torch.Tensor:
        return Fn.gray_adjoint(y, self.w)

    def _dagger(self, y: torch.Tensor) -> torch.Tensor:
        return Fn.gray_adjoint(y, self.w) / (self.w**2).sum().to(y.dtype)

    def extra_repr(self) -> str:
        return f"weights={self.weights!r}, {super().extra_repr()}"
