"""Lightning callbacks for the inversion engine (stopping, image logging)."""

from callbacks.images import ImageGridLogger
from callbacks.stopping import MSEThresholdStop

__all__ = ["ImageGridLogger", "MSEThresholdStop"]
