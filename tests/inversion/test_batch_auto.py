"""``--batch_size auto`` (``inversion.cli.batch``): the batch fits half the free memory given the model's
size and the method (a fine-tuned generator copy per image costs more), within [1, MAX_BATCH]; the CLI
accepts it, says what it picked and restores with it. Free memory is a fake figure here."""

from __future__ import annotations

from inversion import cli
from inversion.cli.batch import MAX_BATCH, auto_batch_size, per_image_bytes
from lcm.toy import tiny_prior


def test_auto_batch_fits_the_free_memory():
    prior = tiny_prior()
    per = per_image_bytes(prior, "csgm")
    assert auto_batch_size(prior, "csgm", "cpu", free=2 * 5 * per + 1)[0] == 5
    assert auto_batch_size(prior, "csgm", "cpu", free=1)[0] == 1  # at least one image
    assert auto_batch_size(prior, "csgm", "cpu", free=10**15)[0] == MAX_BATCH
    # IAGAN fine-tunes a copy of the generator per image: weights, gradients and Adam's moments on top
    gen_bytes = sum(p.numel() * p.element_size() for p in prior.generator.parameters())
    assert per_image_bytes(prior, "iagan") == per + 4 * gen_bytes == per_image_bytes(prior, "iagan_bp")
    free = 2 * 5 * per + 1
    assert auto_batch_size(prior, "iagan", "cpu", free=free)[0] < 5
    batch, why = auto_batch_size(prior, "iagan", "cpu", free=free)
    assert f"--batch_size auto: {batch} " in why and "iagan" in why


def test_cli_batch_size_auto_says_what_it_picked(make_task_folder, tmp_path, monkeypatch, capsys):
    op = "  class_path: inversion.operators.SuperResolution\n  init_args: {factor: 2, kernel: box}\n"
    src, cfg = make_task_folder(3, 4, op, "{csgm_steps: 4, restarts: 1}")
    free = 2 * 2 * per_image_bytes(tiny_prior(), "csgm")
    monkeypatch.setattr("lcm.runtime.free_memory", lambda device="cpu": free)
    out = tmp_path / "out"
    cli.main([
        "--config", str(cfg), "--prior", "lcm.toy:tiny_prior", "--input", str(src), "--output", str(out),
        "--progress", "false", "--num_threads", "1", "--batch_size", "auto",
    ])  # fmt: skip
    assert "--batch_size auto: 2 (free memory on cpu" in capsys.readouterr().err
    assert len(list((out / "rows").iterdir())) == 3
