"""DGP's class pick as a start of the method registry (``register_method(..., start="dgp_class_pick")``):
unknown classes of a class-conditional prior are picked as DGP does (appendix B; :func:`sample_labels`)
before the method runs; known classes are kept."""

from __future__ import annotations

from inversion.methods.registry import register_start

__all__ = ["dgp_class_pick"]


def dgp_class_pick(prior, operator, y, seeds, labels, cfg):
    """The labels a method registered with ``start="dgp_class_pick"`` gets (see module docstring)."""
    unknown = labels is None or bool((labels < 0).any())
    if prior is None or not prior.num_classes or not unknown:
        return labels
    from inversion.dgp.init import sample_labels

    return sample_labels(prior, operator, y, seeds, labels, cfg.label_candidates, batch_size="auto")


register_start("dgp_class_pick", dgp_class_pick, needs=("label_candidates",))
