"""Shared test set-up: one torch thread (tiny tensors run far faster without thread hand-offs)."""

import os

import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
torch.set_num_threads(1)
