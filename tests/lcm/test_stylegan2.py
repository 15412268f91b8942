"""StyleGAN2-ADA: the safe snapshot loader, outputs vs NVIDIA's reference fixtures, released configs."""

from __future__ import annotations

import json
import pickle
import sys
import types
from pathlib import Path

import pytest
import torch

import lcm
from lcm.architectures import stylegan2 as sg2
from lcm.architectures.snapshot import (
    UnsafeSnapshotError,
    load_snapshot,
    load_state_dict_file,
    read_snapshot,
)

DATA = Path(__file__).resolve().parents[1] / "data"
FIXTURES = {
    "stylegan2ada_tiny": ("ws_truncated_0.7", 0.7),
    "stylegan2ada_cond64_tiny": ("ws_truncated_0.5", 0.5),
}


def _expected(name):
    return torch.load(DATA / f"{name}_expected.pt", weights_only=True)


@pytest.mark.parametrize("name", sorted(FIXTURES))
def test_snapshot_reproduces_reference_outputs(name):
    exp = _expected(name)
    g, d = load_snapshot(DATA / f"{name}.pkl")
    key, psi = FIXTURES[name]
    c = exp.get("c")
    with torch.no_grad():
        if "ws" in exp:
            assert (g.mapping(exp["z"], c) - exp["ws"]).abs().max() <= 1e-4
        ws_t = g.mapping(exp["z"], c, truncation_psi=psi)
        assert (ws_t - exp[key]).abs().max() <= 1e-4
        # the image of the expected file is synthesis(ws) at the fixture's untruncated / truncated codes
        ws_img = exp["ws"] if "ws" in exp else exp[key]
        img = g.synthesis(ws_img, noise_mode="const")
        assert img.shape == exp["image"].shape
        assert (img - exp["image"]).abs().max() <= 1e-4
        assert (d(exp["image"], c) - exp["d_logits"]).abs().max() <= 1e-4
    if "G_ema" in exp:  # the snapshot's tensors are the reference state dicts, key for key
        for net, ref in ((g, exp["G_ema"]), (d, exp["D"])):
            sd = net.state_dict()
            assert sorted(sd) == sorted(ref)
            assert all(torch.equal(sd[k], ref[k]) for k in sd)


def test_truncation_moves_codes_towards_w_avg():
    exp = _expected("stylegan2ada_tiny")
    g, _ = load_snapshot(DATA / "stylegan2ada_tiny.pkl")
    with torch.no_grad():
        w = g.mapping(exp["z"], None)
        w0 = g.mapping(exp["z"], None, truncation_psi=0.0)
    assert torch.allclose(w0, g.mapping.w_avg.expand_as(w0))
    assert not torch.allclose(w, w0)


@pytest.mark.parametrize("res", [1024, 256])
def test_meta_networks_match_released_ffhq_keys_and_shapes(res):
    man = json.loads((DATA / "stylegan2ada_manifest.json").read_text())
    cfg = man[f"config_ffhq{res}"]
    syn = {k: cfg[k] for k in ("channel_base", "channel_max", "num_fp16_res", "conv_clamp")}
    with torch.device("meta"):
        g = sg2.Generator(
            cfg["z_dim"],
            cfg["c_dim"],
            cfg["w_dim"],
            cfg["img_resolution"],
            cfg["img_channels"],
            mapping_kwargs={"num_layers": cfg["mapping_layers"]},
            synthesis_kwargs=syn,
        )
        d = sg2.Discriminator(cfg["c_dim"], cfg["img_resolution"], cfg["img_channels"], **syn)
    assert g.num_ws == cfg["num_ws"]
    for net, key in ((g, f"G_ffhq{res}"), (d, f"D_ffhq{res}")):
        got = {k: list(v.shape) for k, v in net.state_dict().items()}
        assert got == man[key]


def snapshot_pickle(path: Path, state: dict, **entries) -> Path:
    """A StyleGAN2-ADA-format pickle ``{"G_ema": <persistence record with state>, **entries}`` at ``path``,
    made with a stand-in ``torch_utils.persistence`` module (never needed to read it back)."""
    mod = types.ModuleType("torch_utils.persistence")

    def _reconstruct_persistent_obj(meta):  # pragma: no cover - never called by the safe loader
        return meta

    _reconstruct_persistent_obj.__module__ = "torch_utils.persistence"
    _reconstruct_persistent_obj.__qualname__ = "_reconstruct_persistent_obj"
    mod._reconstruct_persistent_obj = _reconstruct_persistent_obj
    pkg = types.ModuleType("torch_utils")
    pkg.persistence = mod

    class Record:
        def __reduce__(self):
            meta = dict(type="class", version=6, module_src="", class_name="Generator", state=state)
            return (_reconstruct_persistent_obj, (meta,))

    saved = {k: sys.modules.get(k) for k in ("torch_utils", "torch_utils.persistence")}
    sys.modules["torch_utils"], sys.modules["torch_utils.persistence"] = pkg, mod
    try:
        data = pickle.dumps({"G_ema": Record(), **entries}, protocol=4)
    finally:
        for k, v in saved.items():
            if v is None:
                sys.modules.pop(k, None)
            else:
                sys.modules[k] = v
    path.write_bytes(data)
    return path


def _fake_persistence_pickle(payload, tmp_path: Path) -> Path:
    """A snapshot-format pickle (a persistence record for G_ema) whose state carries ``payload``."""
    state = {"_parameters": {}, "_buffers": {}, "_modules": {}, "evil": payload}
    return snapshot_pickle(tmp_path / "network-snapshot-000000.pkl", state, D=None)


@pytest.mark.parametrize("kind", ["os.system", "builtins.eval"])
def test_snapshot_with_foreign_global_is_refused_and_nothing_runs(tmp_path, kind):
    marker = tmp_path / "ran"
    if kind == "os.system":
        import os

        class Payload:
            def __reduce__(self):
                return (os.system, (f"touch {marker}",))

        names = ("posix.system", "nt.system", "os.system")
    else:

        class Payload:
            def __reduce__(self):
                return (eval, (f"open({str(marker)!r}, 'w').write('x')",))

        names = ("builtins.eval",)
    path = _fake_persistence_pickle(Payload(), tmp_path)
    for load in (read_snapshot, lcm.load_prior):
        with pytest.raises(UnsafeSnapshotError) as err:
            load(path)
        assert any(n in str(err.value) for n in names)
        assert not marker.exists()


def test_embedded_module_source_is_never_executed(tmp_path, monkeypatch):
    """The fixture with its placeholder source swapped for code that would leave a marker file."""
    placeholder = b"# module source omitted from this fixture\n"
    code = b"import os;os.system('touch RAN')#"
    code = code + b" " * (len(placeholder) - len(code) - 1) + b"\n"
    raw = (DATA / "stylegan2ada_tiny.pkl").read_bytes()
    assert len(code) == len(placeholder) and raw.count(placeholder) >= 1
    path = tmp_path / "snap.pkl"
    path.write_bytes(raw.replace(placeholder, code))
    monkeypatch.chdir(tmp_path)
    snap = read_snapshot(path)
    assert snap["G_ema"].module_src == code.decode()
    prior = lcm.load_prior(path)
    assert prior.kind == "stylegan2" and not (tmp_path / "RAN").exists()


def test_state_dict_file_with_config(tmp_path):
    exp = _expected("stylegan2ada_tiny")
    g, _ = load_snapshot(DATA / "stylegan2ada_tiny.pkl")
    snap = read_snapshot(DATA / "stylegan2ada_tiny.pkl")
    cfg = snap["G_ema"].init_kwargs
    path = tmp_path / "G_ema.pt"
    torch.save(g.state_dict(), path)
    with pytest.raises(ValueError, match="config"):
        load_state_dict_file(path)
    g2, d2 = load_state_dict_file(path, cfg)
    assert d2 is None
    with torch.no_grad():
        assert torch.equal(g2.synthesis(exp["ws"]), g.synthesis(exp["ws"]))
    bad = dict(cfg, w_dim=32)
    with pytest.raises(ValueError, match="does not match"):
        load_state_dict_file(path, bad)
    prior = lcm.load_prior(path, config=cfg)
    assert prior.critic is None and prior.latent_shape == (64,)


def test_load_prior_interface():
    exp = _expected("stylegan2ada_cond64_tiny")
    prior = lcm.load_prior(DATA / "stylegan2ada_cond64_tiny.pkl", truncation_psi=0.5)
    g, d = load_snapshot(DATA / "stylegan2ada_cond64_tiny.pkl")
    labels = exp["c"].argmax(1)
    with torch.no_grad():
        w = prior.code(exp["z"], labels)
        assert w.shape == (2, 32)
        assert (w.unsqueeze(1).expand(-1, 10, -1) - exp["ws_truncated_0.5"]).abs().max() <= 1e-4
        x_wplus = prior.synthesize(exp["ws_truncated_0.5"], labels)
        x_w = prior.synthesize(w, labels)
        assert (x_wplus - (exp["image"] + 1) / 2).abs().max() <= 1e-4
        assert (x_w - x_wplus).abs().max() <= 1e-5
        assert (prior.critic(x_wplus, labels) - d(x_wplus * 2 - 1, exp["c"])).abs().max() <= 1e-5
        feats = prior.critic.features(x_wplus)
    assert [f.shape[-1] for f in feats] == [32, 16, 8, 4]
    assert prior.num_classes == 4 and prior.image_shape == (3, 64, 64) and len(prior.generator.blocks) == 5
    assert prior.generator.num_ws == 10
    with pytest.raises(ValueError, match="class-conditional"):
        prior.code(exp["z"], None)
    with pytest.raises(ValueError, match="match"):
        lcm.load_prior(DATA / "stylegan2ada_cond64_tiny.pkl", image_shape=(3, 32, 32))


def test_truncated_and_corrupt_snapshot(tmp_path):
    bad = tmp_path / "cut.pkl"
    bad.write_bytes((DATA / "stylegan2ada_tiny.pkl").read_bytes()[:5000])
    with pytest.raises(ValueError, match="not a readable snapshot"):
        lcm.load_prior(bad)
    with pytest.raises(FileNotFoundError):
        lcm.load_prior(tmp_path / "missing.pkl")
    other = tmp_path / "list.pkl"
    other.write_bytes(pickle.dumps([1, 2]))
    with pytest.raises(ValueError, match="not a StyleGAN2-ADA snapshot"):
        lcm.load_prior(other)


def test_truncation_enters_the_prior_fingerprint():
    from inversion.cri import prior_fingerprint

    a = lcm.load_prior(DATA / "stylegan2ada_tiny.pkl")
    b = lcm.load_prior(DATA / "stylegan2ada_tiny.pkl", truncation_psi=0.5)
    assert prior_fingerprint(a) != prior_fingerprint(b)
    z = a.sample_latent(2, torch.Generator().manual_seed(0))
    with torch.no_grad():
        w_avg = a.mapping.net.w_avg
        assert torch.allclose(b.code(z) - w_avg, 0.5 * (a.code(z) - w_avg), atol=1e-6)
    with pytest.raises(ValueError, match="truncation_psi"):
        lcm.load_prior(DATA / "stylegan2ada_tiny.pkl", truncation_psi=1.5)


def test_state_dict_bundle_with_both_networks(tmp_path):
    exp = _expected("stylegan2ada_tiny")
    snap = read_snapshot(DATA / "stylegan2ada_tiny.pkl")
    g, d = load_snapshot(DATA / "stylegan2ada_tiny.pkl")
    cfg = {"G": snap["G_ema"].init_kwargs, "D": snap["D"].init_kwargs}
    path = tmp_path / "bundle.pt"
    torch.save({"G": g.state_dict(), "D": d.state_dict(), "config": cfg}, path)
    g2, d2 = load_state_dict_file(path)
    with torch.no_grad():
        assert (d2(exp["image"]) - exp["d_logits"]).abs().max() <= 1e-4
        assert (g2.synthesis(exp["ws"]) - exp["image"]).abs().max() <= 1e-4


def test_orig_discriminator_has_no_skip_path():
    d = sg2.Discriminator(0, 16, 3, architecture="orig", channel_base=64, channel_max=8)
    assert not any(".skip." in k for k in d.state_dict())
    assert d(torch.zeros(2, 3, 16, 16)).shape == (2, 1)
    with pytest.raises(ValueError, match="architecture"):
        sg2.Discriminator(0, 16, 3, architecture="skip", channel_base=64, channel_max=8)
