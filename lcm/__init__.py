"""Learned image priors: networks, prior-training LightningModules (WGAN-GP, GLO, LCM), losses."""

from lcm.prior import Prior, from_unit, to_unit

__all__ = ["Prior", "from_unit", "to_unit"]
