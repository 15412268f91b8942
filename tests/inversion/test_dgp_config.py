"""``DGPConfig.check`` validates every option before any work (issue 30)."""

from __future__ import annotations

import pytest
import torch

from inversion.dgp import DGPConfig
from inversion.methods import method_config

BAD = {
    "batching": "stacked",
    "lift": "nearest",
    "n_candidates": 0,
    "candidate_batch": 2.5,
    "candidate_bf16": "yes",
    "candidate_seed": "7",
    "init_metric": "lpips",
    "bn_to_in": "yes",
    "stop_mse": -1.0,
    "colorize_output": 1,
    "critic_reduction": "sum",
    "keep": "first",
    "finetune_embedding": None,
    "w_nll": float("nan"),
    "candidate_std": 0.0,
    "candidate_features": 0,
    "variant": "slow",
    "init_latent": [[0.0]],
    "stop_ftr": -0.5,
    "scale": 0,
    "critic_blocks": "all",
    "preset": 3,
    "stages": {"blocks": 1, "iterations": 2},
}


@pytest.mark.parametrize("name", sorted(BAD))
def test_every_option_is_checked_before_any_work(name):
    with pytest.raises(ValueError, match=name):
        method_config("dgp", {name: BAD[name]})


def test_faithful_stages_are_parsed_stage_by_stage():
    with pytest.raises(ValueError, match="stage 1: iterations"):
        DGPConfig().updated({"stages": [{"blocks": 1, "iterations": 2}, {"blocks": 2, "iterations": 0}]})
    ok = DGPConfig().updated({"stages": [{"blocks": 1, "iterations": 2}], "init_latent": torch.zeros(1, 4)})
    assert ok.stages[0]["iterations"] == 2
