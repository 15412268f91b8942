"""Run reports (inversion.cli.report): atomic, complete on resume, every image and failure; compare."""

from __future__ import annotations

import base64
import html.parser
import io
import json

import pytest
import torch
from PIL import Image

from inversion import cli
from inversion.cli import report


@pytest.fixture()
def folder(make_task_folder):
    op = "  class_path: inversion.operators.SuperResolution\n  init_args: {factor: 2, kernel: box}\n"
    return make_task_folder(3, 9, op, "{csgm_steps: 5, restarts: 2, iagan_steps: 3}", task="sr2")


CSGM_OPTIONS = "{csgm_steps: 5, restarts: 2}"  # the task's options are IAGAN's; CSGM's config has no iagan_*


def _run(src, cfg, out, method="iagan", *extra):
    if method == "csgm":
        extra = ("--options", CSGM_OPTIONS, *extra)
    args = [
        "--config", str(cfg), "--prior", "lcm.toy:tiny_prior", "--input", str(src),
        "--output", str(out), "--method", method, "--progress", "false", "--num_threads", "1", *extra,
    ]  # fmt: skip
    return cli.main(args)


class _Images(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.srcs, self.alts = [], []

    def handle_starttag(self, tag, attrs):
        if tag == "img":
            a = dict(attrs)
            self.srcs.append(a["src"])
            self.alts.append(a.get("alt", ""))


def _images(path):
    p = _Images()
    p.feed(path.read_text())
    out = []
    for src in p.srcs:
        assert src.startswith("data:image/png;base64,")  # embedded: no file or server needed
        with Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1]))) as im:
            im.load()
            out.append(im.size)
    return out, p.alts


def test_report_has_every_image_failure_curve_and_config(folder, tmp_path):
    src, cfg = folder
    out = tmp_path / "out"
    _run(src, cfg, out)
    page = (out / "report.html").read_text()
    sizes, alts = _images(out / "report.html")
    assert "loss curves" in alts and any(a.startswith("restorations") for a in alts)
    grid_w, grid_h = sizes[alts.index("restorations 0-7")]
    assert grid_w >= 4 * 96 and grid_h >= 3 * 96  # 4 columns, a row per image, tiles upscaled to 96 px
    for name in ("img0.png", "img1.png", "img2.png"):
        assert name in page  # per-image table
    assert "broken.png" in page and "cannot read image" in page  # the failure, with its reason
    assert "A†y" in page and "± " in page  # column legend, mean ± 95% interval
    run = json.loads((out / "run.json").read_text())
    assert run["config"]["iagan_steps"] == 3 and run["config"]["iagan_generator_lr"] == 1e-3  # effective
    row = json.loads((out / "rows" / "img0.json").read_text())
    assert len(row["history"]) > 5 + 3 and row["stage_starts"][0] == 0 and len(row["stage_starts"]) == 2
    assert row["stage_starts"][1] == 6  # IAGAN's joint stage starts after CSGM's 5 steps + its final row
    for sub in ("truth", "adjoint"):
        assert sorted(p.name for p in (out / sub).iterdir()) == ["img0.png", "img1.png", "img2.png"]


def test_report_is_rebuilt_whole_on_resume_and_written_atomically(folder, tmp_path, monkeypatch):
    src, cfg = folder
    out = tmp_path / "out"
    _run(src, cfg, out, "csgm", "--limit", "3")  # broken.png, img0.png, img1.png
    first = (out / "report.html").read_text()
    assert "img1.png" in first and "img2.png" not in first
    _run(src, cfg, out, "csgm")  # resumed with more images: the report holds old and new ones
    page = (out / "report.html").read_text()
    assert all(f"img{i}.png" in page for i in range(3)) and "broken.png" in page
    before = (out / "report.html").read_bytes()

    def boom(*a, **k):
        raise RuntimeError("disk full")

    monkeypatch.setattr(report, "_failures", boom)  # rendering dies half-way: old report stays whole
    with pytest.raises(RuntimeError, match="disk full"):
        report.write_report(out)
    assert (out / "report.html").read_bytes() == before
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]


def test_compare_side_by_side_and_refuses_different_images(folder, tmp_path, capsys):
    src, cfg = folder
    a, b = _run(src, cfg, tmp_path / "a", "csgm"), _run(src, cfg, tmp_path / "b", "iagan")
    path = cli.main(["compare", str(a), str(b), "--output", str(tmp_path / "cmp")])
    page = path.read_text()
    assert "Paired differences" in page and "csgm (a)" in page and "iagan (b)" in page
    sizes, alts = _images(path)
    w, h = sizes[alts.index("comparison 0-7")]
    assert w >= 4 * 96 and h >= 3 * 96  # truth | degraded | csgm | iagan, a row per image

    c = _run(src, cfg, tmp_path / "c", "csgm", "--limit", "2")
    with pytest.raises(ValueError, match="different images.*only in the first: \\['img1.png', 'img2.png'\\]"):
        report.compare([a, c], tmp_path / "cmp2")
    with pytest.raises(SystemExit):
        cli.main(["compare", str(a), str(c)])
    assert "restored different images" in capsys.readouterr().err
    with pytest.raises(ValueError, match="at least two"):
        report.compare([a], tmp_path / "cmp3")
    with pytest.raises(FileNotFoundError, match="no run.json"):
        report.compare([a, tmp_path], tmp_path / "cmp4")


def test_mean_ci_matches_student_t():
    m, h = report.mean_ci([1.0, 2.0, 3.0, 4.0])
    assert m == pytest.approx(2.5) and h == pytest.approx(3.182446 * 1.290994 / 2, rel=1e-5)
    d, hd, wins = report.paired_diff([1.0, 2.0, 3.0], [2.0, 2.5, 2.0])
    assert d == pytest.approx(0.5 / 3) and wins == 2 and hd > 0


def test_prior_training_report_samples_per_checkpoint_and_honest_done(tmp_path, capsys):
    import yaml

    from lcm.cli import cli_main

    config = tmp_path / "tiny.yaml"
    model = {"class_path": "lcm.WGANGP", "init_args": {"latent_dim": 4, "width": 4, "critic_width": 4}}
    model["init_args"].update(n_critic=2, sample_every_n_steps=0)
    trainer = {"max_steps": 10, "max_epochs": 1, "accelerator": "cpu", "enable_progress_bar": False}
    trainer.update(default_root_dir=str(tmp_path), logger=False, log_every_n_steps=1)
    config.write_text(
        yaml.safe_dump(
            {
                "seed_everything": 0,
                "model": model,
                "data": {"class_path": "test_lcm_modules.TinyData", "init_args": {"n": 16}},
                "trainer": trainer,
                "checkpoint": {"dirpath": str(tmp_path / "ck"), "every_n_train_steps": 2},
                "report": {"every_n_steps": 1},
            }
        )
    )
    cli_main(["fit", "-c", str(config)])  # one epoch of 4 batches = 4 critic + 2 generator steps
    status = json.loads((tmp_path / "training.json").read_text())
    assert status == {"global_step": 6, "max_steps": 10, "done": False}
    assert "stopped at step 6 of max_steps 10 (not finished)" in capsys.readouterr().err
    assert len(list((tmp_path / "samples").glob("samples_step*.png"))) >= 2  # one per checkpoint save
    cli_main(["fit", "-c", str(config), "--trainer.max_epochs=3", "--ckpt_path=last"])
    assert json.loads((tmp_path / "training.json").read_text())["done"] is True
    sizes, alts = _images(tmp_path / "report.html")
    assert "training losses" in alts and "samples at step 10" in alts
    page = (tmp_path / "report.html").read_text()
    assert "stopped at step 10 of max_steps 10" in page and "train/loss_critic" in page
    ckpt = torch.load(tmp_path / "ck" / "last.ckpt", weights_only=True)
    (state,) = [v for k, v in ckpt["callbacks"].items() if k.startswith("PriorReport")]
    steps = [s for s, _ in state["curves"]["train/loss_critic"]]
    assert min(steps) < 6 <= max(steps)  # curves of the first session survived the resume


def test_eglass_benchmark_writes_its_report(tmp_path):
    from benchmarks import eglass as benchmark

    out = tmp_path / "eg"
    args = ["--tiny-prior", "--tiny-steps", "5", "--tiny-latent", "4", "--num-images", "1"]
    args += ["--num-solutions", "2", "--z-steps", "5", "--finetune-steps", "5", "--num-k", "2"]
    args += ["--etas", "1", "2", "--max-rounds", "1", "--init-tries", "1"]
    benchmark.main([*args, "--restart-batch", "2", "--threads", "1", "--out", str(out)])
    sizes, alts = _images(out / "report.html")
    assert all(w > 0 and h > 0 for w, h in sizes)
    page = (out / "report.html").read_text()
    assert "Mean over images" in page and "free part" in page and "e-GLASS exploration" in page


def test_markdown_report_of_a_benchmark_has_its_tables_and_figures(tmp_path):
    from datamodules.io.images import save_png

    out = tmp_path / "bench"
    out.mkdir()
    md = "# Bench\n\nnote <b>\n\n| method | PSNR |\n|---|---|\n| CSGM | 21.5 |\n| IAGAN | 24.9 |\n"
    (out / "results.md").write_text(md)
    save_png(torch.rand(1, 8, 8), out / "grid.png")
    page = report.markdown_report(out, title="t").read_text()
    assert "<h2>Bench</h2>" in page and "&lt;b&gt;" in page  # text escaped
    assert page.count("<tr>") == 3 and "24.9" in page and "---" not in page  # rule row dropped
    sizes, alts = _images(out / "report.html")
    assert alts == ["grid.png"] and all(w > 0 and h > 0 for w, h in sizes)


def test_json_report_of_a_speed_benchmark_lists_every_number(tmp_path):
    from datamodules.io.html import json_report

    data = {"dgp_step_s": {"ours": 2.7, "published": 3.13}, "rows": [{"space": "w+", "s": 1.26}]}
    page = json_report(tmp_path, "speed", data).read_text()
    for key, value in (("dgp_step_s.ours", "2.7"), ("dgp_step_s.published", "3.13"), ("rows[0].s", "1.26")):
        assert f">{key}</td>" in page and f">{value}</td>" in page
