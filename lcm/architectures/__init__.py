"""Published generator architectures, one module each (weights are loaded by the user, never downloaded)."""
