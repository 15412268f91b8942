"""``python -m benchmarks.claims --smoke``: every claim row end to end, cached and resumable; its priors
found, waited for and trained from the signals the training leaves."""

import json
import time
from pathlib import Path

import pytest

from benchmarks.claims import CLAIMS, Claim, judge, main
from benchmarks.claims.priors import PRIOR_DATA, shared_checkpoint, training_finished, wait_for
from inversion.cli.report import mean_ci as interval  # the one Student-t interval, used by the claims' judge

FASHION = Path("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz")
EMOJI_FONT = Path("/usr/share/fonts/truetype/noto/NotoColorEmoji.ttf")


def test_interval_and_judge_pairs():
    m, h = interval([1.0, 2.0, 3.0])
    assert m == pytest.approx(2.0) and h == pytest.approx(2.4842, rel=1e-3)  # t(0.975, 2) * 1 / sqrt(3)
    c = Claim("k", "t", "psnr", True, ["A", "B"], {}, "src")
    s = judge(c, {"A": [2.0, 3.0, 4.0], "B": [1.0, 2.0, 3.5]})
    assert s["holds"] is True and s["pairs"][0]["diff"] == pytest.approx(2.5 / 3)
    lower = Claim("k", "t", "feature", False, ["A", "B"], {}, "src")
    assert judge(lower, {"A": [2.0, 3.0], "B": [1.0, 2.0]})["holds"] is False


def _status(folder: Path, done: bool) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "training.json").write_text(json.dumps({"global_step": 4, "max_steps": 4, "done": done}))


def test_a_prior_is_finished_by_its_done_marker_or_its_training_json(tmp_path):
    assert not training_finished(tmp_path, "glo")  # nothing there
    _status(tmp_path / "glo" / "version_0", False)  # stopped early (max_time): not finished
    assert not training_finished(tmp_path, "glo")
    time.sleep(0.01)
    _status(tmp_path / "glo" / "version_1", True)  # the resumed run reached max_steps: the newest counts
    assert training_finished(tmp_path, "glo")
    (tmp_path / "DONE-lcm").touch()  # a training job's marker
    assert training_finished(tmp_path, "lcm")


def test_shared_checkpoints_are_used_once_finished_where_the_folder_uses_markers(tmp_path):
    plain, marked = tmp_path / "plain", tmp_path / "marked"
    for d in (plain, marked):
        (d / "glo" / "checkpoints").mkdir(parents=True)
        (d / "glo" / "checkpoints" / "last.ckpt").touch()
    assert shared_checkpoint([plain], "glo") == plain / "glo" / "checkpoints" / "last.ckpt"  # no markers
    (marked / "DONE-wgangp").touch()
    assert shared_checkpoint([marked], "glo") is None  # its jobs leave markers, glo's is missing
    assert shared_checkpoint([marked, plain], "glo") == plain / "glo" / "checkpoints" / "last.ckpt"
    _status(marked / "glo", True)
    assert shared_checkpoint([marked, plain], "glo") == marked / "glo" / "checkpoints" / "last.ckpt"


def test_wait_blocks_while_the_prior_trains_and_reads_no_scripts(tmp_path):
    import threading

    (tmp_path / "train.sh").write_text("python -m lcm fit -c configs/lcm/glo.yaml  # glo\n")
    t0 = time.perf_counter()
    wait_for([tmp_path], "glo", poll=5.0)  # no glo/ folder: nothing trains it here, no wait
    assert time.perf_counter() - t0 < 1.0
    (tmp_path / "glo").mkdir()  # training started
    finish = threading.Timer(0.3, _status, (tmp_path / "glo" / "version_0", True))
    finish.start()
    t0 = time.perf_counter()
    wait_for([tmp_path], "glo", poll=0.05)
    assert time.perf_counter() - t0 >= 0.25 and training_finished(tmp_path, "glo")
    finish.join()


@pytest.mark.slow
@pytest.mark.skipif(not (FASHION.exists() and EMOJI_FONT.exists()), reason="needs Fashion-MNIST and emoji")
def test_smoke_runs_every_claim_and_resumes(tmp_path):
    out = tmp_path / "claims"
    t0 = time.perf_counter()
    main(["--smoke", "--output", str(out)])
    first = time.perf_counter() - t0
    data = json.loads((out / "claims.json").read_text())
    assert set(data["claims"]) == {c.key for c in CLAIMS}
    for c in CLAIMS:
        ours = data["claims"][c.key]["ours"]
        assert set(c.order) | set(c.extra) == set(ours), c.key
        expect = data["meta"]["eglass_images"] if c.key.startswith("eglass") else 2
        assert all(v["n"] == expect for v in ours.values()), c.key
    md = (out / "claims.md").read_text()
    assert md.count("\n### ") == len(CLAIMS)  # one detail table per claim
    assert all(f"| {c.title} |" in md for c in CLAIMS)  # and one summary line each
    t0 = time.perf_counter()
    main(["--smoke", "--output", str(out)])  # everything cached: no training, no fitting
    assert time.perf_counter() - t0 < 0.5 * first
    again = json.loads((out / "claims.json").read_text())
    assert again["claims"] == data["claims"]
    assert set(again["meta"]["priors"]) == set(PRIOR_DATA) == set(data["meta"]["priors"])  # cached rows too


def test_unknown_rows_are_refused_with_the_keys(tmp_path):
    from benchmarks.claims.measure import measure
    from benchmarks.claims.runner import Runner

    r = Runner(tmp_path, 2, True, [], 0.01)
    with pytest.raises(ValueError, match="dgp_t5"):  # the message lists the valid keys
        measure(r, ["dgp_t55"])
    with pytest.raises(SystemExit):  # argparse refuses it before anything runs
        main(["--smoke", "--output", str(tmp_path), "--rows", "nope"])
    assert not (tmp_path / "priors").exists()


@pytest.mark.skipif(not FASHION.exists(), reason="needs Fashion-MNIST")
def test_rows_measure_only_their_runs_and_keep_the_full_table(tmp_path):
    out = tmp_path / "claims"
    out.mkdir()
    (out / "claims.md").write_text("the full table\n")  # an earlier full run's table
    main(["--smoke", "--output", str(out), "--rows", "tv"])
    data = json.loads((out / "claims-tv.json").read_text())
    assert list(data["claims"]) == ["tv"] and data["meta"]["rows"] == ["tv"]
    assert set(data["claims"]["tv"]["ours"]) == {"TV", "IAGAN", "CSGM"}
    assert list(data["meta"]["priors"]) == ["wgangp"]  # only the prior the row needs
    assert [p.name for p in (out / "priors").iterdir()] == ["wgangp"]  # nothing else was trained
    runs = sorted(p.name.split("-")[0] for p in (out / "cache").glob("*.json"))
    assert runs == ["inpaint_csgm", "inpaint_iagan", "inpaint_tv"]
    assert (out / "claims.md").read_text() == "the full table\n" and not (out / "report.html").exists()


def test_a_prior_stopped_by_its_safety_stop_is_resumed_not_marked_done(tmp_path, monkeypatch):
    """``max_time`` ended the first run early: the claims must not use that prior as if finished."""
    import lcm.cli
    from benchmarks.claims.priors import train_prior

    folder = tmp_path / "glo"
    calls = []

    def fake_fit(args):  # the run writes last.ckpt and training.json as `lcm fit` does
        calls.append(args)
        folder.mkdir(exist_ok=True)
        (folder / "last.ckpt").write_bytes(b"x")
        reached = 2000 if len(calls) > 1 else 1234
        status = {"global_step": reached, "max_steps": 2000, "done": reached == 2000}
        (folder / "training.json").write_text(json.dumps(status))

    monkeypatch.setattr(lcm.cli, "cli_main", fake_fit)
    assert train_prior("glo", folder) == folder / "last.ckpt"
    assert len(calls) == 2 and "--ckpt_path" not in calls[0]
    assert calls[1][-3:] == ["--ckpt_path", str(folder / "last.ckpt"), "--trainer.max_time=null"]
    assert (folder / "DONE").exists()
    assert train_prior("glo", folder) == folder / "last.ckpt" and len(calls) == 2  # finished: not retrained

    stuck = tmp_path / "ae"

    def never_done(args):
        calls.append(args)
        stuck.mkdir(exist_ok=True)
        (stuck / "last.ckpt").write_bytes(b"x")
        (stuck / "training.json").write_text(json.dumps({"global_step": 5, "max_steps": 2000, "done": False}))

    monkeypatch.setattr(lcm.cli, "cli_main", never_done)
    with pytest.raises(RuntimeError, match="stopped before max_steps"):
        train_prior("ae", stuck)
    assert not (stuck / "DONE").exists()


def test_prior_loading_is_outside_the_method_clock_and_cached_rows_still_name_their_prior(tmp_path):
    from benchmarks.claims.runner import Runner

    def compute(lo, hi):
        return {"v": [1.0] * (hi - lo)}

    r = Runner(tmp_path, 2, True, [], 0.01)
    r.prior = lambda name: time.sleep(0.5)  # waiting for / training the prior: not the method's seconds
    vals = r.cached("k", {}, 2, compute, ("wgangp",))
    assert vals["v"] == [1.0, 1.0] and max(vals["seconds_per_image"]) < 0.25

    again = Runner(tmp_path, 2, True, [], 0.01)

    def no_load(name):
        raise AssertionError("a cached run loads no prior")

    again.prior = no_load
    assert again.cached("k", {}, 2, compute, ("wgangp",))["v"] == [1.0, 1.0]
    assert again.used_priors() == {"wgangp": str(tmp_path / "priors" / "wgangp" / "last.ckpt")}
