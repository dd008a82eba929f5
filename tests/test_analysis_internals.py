"""analysis.internals against references: forward hooks, F.conv2d, brute force, numpy SVD, raw checkpoints."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from safetensors import safe_open

from analysis import internals
from model import runs
from model.net import Net, NetConfig

SHAPES = {"input": (1, 28, 28), "conv1": (32, 26, 26), "relu1": (32, 26, 26), "pool1": (32, 13, 13),
          "conv2": (64, 11, 11), "relu2": (64, 11, 11), "pool2": (64, 5, 5), "fc1": (4608,), "relu3": (4608,),
          "fc2": (10,), "logits": (10,), "softmax": (10,)}


def make_net(seed: int = 0, **config) -> Net:
    torch.manual_seed(seed)
    return Net(NetConfig(**config)).eval()


def image(seed: int = 0) -> torch.Tensor:
    return torch.rand(1, 1, 28, 28, generator=torch.Generator().manual_seed(seed))   # (1,1,28,28)


def hooked_outputs(model: Net, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """Reference: every module's output captured by forward hooks while model(x) runs."""
    out, handles = {}, []
    for name in ("conv1", "bn1", "relu1", "pool1", "conv2", "bn2", "relu2", "pool2", "fc1", "relu3", "fc2"):
        module = getattr(model, name)
        handles.append(module.register_forward_hook(lambda m, i, o, name=name: out.__setitem__(name, o.detach()[0])))
    with torch.no_grad():
        model(x)
    for h in handles:
        h.remove()
    return out


def checkpoint_tensor(run_dir, epoch: int, name: str) -> np.ndarray:
    """Reference: a tensor read straight from the safetensors file."""
    with safe_open(str(runs.checkpoint_path(run_dir, epoch)), framework="np") as f:
        return f.get_tensor(name)


# ----------------------------------------------------------------------------- activations

def test_activations_stages_shapes_and_exact_logits():
    model, x = make_net(), image()
    acts = internals.activations(model, x)
    assert list(acts) == list(internals.STAGES)
    assert {k: tuple(v.shape) for k, v in acts.items()} == SHAPES
    with torch.no_grad():
        logits = model(x)[0]
    assert torch.equal(acts["logits"], logits)                       # bit for bit, not approximately
    torch.testing.assert_close(acts["softmax"], torch.softmax(logits, 0))
    ref = hooked_outputs(model, x)
    for stage in ("conv1", "relu1", "pool1", "conv2", "relu2", "pool2", "fc1", "relu3", "fc2"):
        assert torch.equal(acts[stage], ref[stage]), stage
    assert torch.equal(acts["input"], x[0])
    assert (acts["relu3"] >= 0).all() and (acts["fc1"] < 0).any()    # fc1 before ReLU, relu3 after


@pytest.mark.parametrize("config", [dict(normalize=True), dict(batch_norm=True), dict(fc1_units=128)])
def test_activations_match_model_for_variants(config):
    model = make_net(1, **config)
    if config.get("batch_norm"):   # non-trivial running statistics, so BatchNorm really changes values
        for bn in (model.bn1, model.bn2):
            bn.running_mean.uniform_(-0.5, 0.5)
            bn.running_var.uniform_(0.5, 2.0)
    x = image(1)
    acts = internals.activations(model, x)
    with torch.no_grad():
        assert torch.equal(acts["logits"], model(x)[0])
    ref = hooked_outputs(model, x)
    assert torch.equal(acts["conv1"], ref["conv1"])
    if config.get("batch_norm"):
        assert torch.equal(acts["bn1"], ref["bn1"]) and torch.equal(acts["bn2"], ref["bn2"])
    if config.get("normalize"):     # conv1 sees (x - mean) / std
        expected = F.conv2d((x - 0.1307) / 0.3081, model.conv1.weight, model.conv1.bias)[0]
        torch.testing.assert_close(acts["conv1"], expected)


def test_activations_leave_a_training_model_alone():
    model = make_net(2, dropout=0.5).train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x = image(2)
    acts = internals.activations(model, x)
    assert model.training                                             # mode untouched
    with torch.no_grad():
        expected = model.eval()(x)[0]                                  # dropout off: deterministic
    assert torch.equal(acts["logits"], expected)
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())


# ----------------------------------------------------------------------------- conv1 window

@pytest.mark.parametrize("row,col,channel", [(0, 0, 0), (12, 7, 5), (25, 25, 31), (3, 20, 17)])
def test_conv1_window_equals_conv2d(row, col, channel):
    model, x = make_net(), image(3)
    w, b = model.conv1.weight[channel].detach(), model.conv1.bias[channel].item()
    out = internals.conv1_window(x, w, b, row, col)
    ref = F.conv2d(x, model.conv1.weight, model.conv1.bias)[0, channel, row, col].item()
    assert out["output"] == pytest.approx(ref, abs=1e-5)
    assert out["output"] == pytest.approx(out["sum"] + b)
    xn = x[0, 0].double().numpy()
    np.testing.assert_allclose(out["window"], xn[row:row + 3, col:col + 3])
    np.testing.assert_allclose(out["products"], xn[row:row + 3, col:col + 3] * w[0].double().numpy())
    # the same pixel as the dashboard's activation map
    assert out["output"] == pytest.approx(internals.activations(model, x)["conv1"][channel, row, col].item(), abs=1e-5)


def test_conv1_window_of_a_normalizing_model():
    model, x = make_net(3, normalize=True), image(4)
    seen = internals.conv1_input(model, x)
    np.testing.assert_allclose(seen, ((x[0, 0] - 0.1307) / 0.3081).numpy(), rtol=1e-6)
    out = internals.conv1_window(seen, model.conv1.weight[2].detach(), model.conv1.bias[2].item(), 9, 14)
    assert out["output"] == pytest.approx(internals.activations(model, x)["conv1"][2, 9, 14].item(), abs=1e-5)


def test_conv1_window_rejects_pixels_outside_the_output():
    with pytest.raises(ValueError):
        internals.conv1_window(np.zeros((28, 28)), np.ones((3, 3)), 0.0, 26, 0)
    with pytest.raises(ValueError):
        internals.conv1_window(np.zeros((28, 28)), np.ones((3, 3)), 0.0, 0, -1)


@pytest.mark.parametrize("normalize, channel, row, col", [(False, 3, 16, 11), (False, 0, 0, 25), (True, 7, 9, 14)])
def test_conv1_at_equals_torch_conv2d_of_the_model(normalize, channel, row, col):
    model = make_net(1, normalize=normalize)
    img = (image(5)[0, 0] * 255).round().to(torch.uint8).numpy()           # the dashboard passes uint8 (28,28)
    x = torch.from_numpy(img.astype(np.float32) / 255.0)[None, None]
    x = (x - 0.1307) / 0.3081 if normalize else x                        # what conv1 sees, by hand
    ref = F.conv2d(x, model.conv1.weight, model.conv1.bias)[0, channel, row, col].item()
    out = internals.conv1_at(model, img, channel, row, col)
    assert out["output"] == pytest.approx(ref, abs=1e-5)
    np.testing.assert_allclose(out["seen"], x[0, 0].numpy(), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(out["kernel"], model.conv1.weight[channel, 0].detach().double().numpy())
    assert out["bias"] == pytest.approx(model.conv1.bias[channel].item())


def test_strongest_position_and_active_units_hand_checked():
    m = np.array([[0.0, 2.0, 1.0], [2.0, -1.0, 0.5]])
    assert internals.strongest_position(m) == (0, 1)                     # ties: first in reading order
    assert internals.strongest_position(-m) == (1, 1)
    assert internals.active_units(np.array([0.0, 0.3, -2.0, 1e-9, 0.0])) == 2


# ----------------------------------------------------------------------------- what excites a unit

def brute_force_scores(model: Net, images: np.ndarray, layer: str, channel: int) -> np.ndarray:
    """Reference: one image at a time with torch.nn.functional, no analysis code."""
    scores = []
    with torch.no_grad():
        for img in images:
            x = torch.tensor(img, dtype=torch.float32)[None, None] / 255.0
            h = F.relu(F.conv2d(x, model.conv1.weight, model.conv1.bias))
            if layer == "conv2":
                h = F.relu(F.conv2d(F.max_pool2d(h, 2), model.conv2.weight, model.conv2.bias))
            scores.append(h[0, channel].max().item())
    return np.array(scores)


@pytest.mark.parametrize("layer,channel", [("conv2", 7), ("conv1", 3)])
def test_top_activating_agrees_with_brute_force(layer, channel):
    model = make_net(4)
    images = np.random.default_rng(0).integers(0, 256, size=(13, 28, 28), dtype=np.uint8)
    images[5] = 0                                                     # one dull image
    idx, scores = internals.top_activating(model, images, layer, channel, k=4, batch_size=5)
    ref = brute_force_scores(model, images, layer, channel)
    np.testing.assert_array_equal(idx, np.argsort(-ref)[:4])
    np.testing.assert_allclose(scores, np.sort(ref)[::-1][:4], rtol=1e-5)


def test_top_activating_fc1_unit_is_its_post_relu_value():
    model = make_net(5, fc1_units=128)
    images = np.random.default_rng(1).integers(0, 256, size=(9, 28, 28), dtype=np.uint8)
    idx, scores = internals.top_activating(model, images, "fc1", 11, k=3)
    with torch.no_grad():
        ref = np.array([hooked_outputs(model, torch.tensor(i, dtype=torch.float32)[None, None] / 255)["relu3"][11]
                        .item() for i in images])
    np.testing.assert_array_equal(idx, np.argsort(-ref, kind="stable")[:3])


def test_activation_maximization_of_a_linear_model_finds_its_template():
    # logit c = w_c . x + b_c: on [0,1] the maximizer is 1 where w_c > 0 and 0 where w_c < 0
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 10)).eval()
    w = model[1].weight[4].detach().reshape(28, 28).numpy()
    result = internals.activation_maximization(model, ("class", 4), steps=60, l2=1e-4, blur_every=0)
    clear = np.abs(w) > 0.01                                          # pixels with a clear gradient sign
    assert clear.mean() > 0.3
    np.testing.assert_array_equal(result[clear] > 0.5, w[clear] > 0)
    assert np.abs(result[clear] - (w[clear] > 0)).max() < 0.05


def test_activation_maximization_raises_the_target_logit(fixture_run):
    model = runs.load_model(fixture_run, 3)

    def logit(img: np.ndarray, c: int) -> float:
        with torch.no_grad():
            return model(torch.tensor(img)[None, None])[0, c].item()

    start = internals.activation_maximization(model, ("class", 3), steps=0, seed=0)
    result = internals.activation_maximization(model, ("class", 3), steps=30, seed=0)
    assert result.shape == (28, 28) and result.dtype == np.float32
    assert 0.0 <= result.min() and result.max() <= 1.0
    assert logit(result, 3) > logit(start, 3)
    assert logit(result, 3) > logit(np.full((28, 28), 0.5, np.float32), 3)


def test_activation_maximization_is_deterministic_and_mutates_nothing():
    model = make_net(6, fc1_units=128)
    params = {k: v.clone() for k, v in model.state_dict().items()}
    result = internals.activation_maximization(model, ("class", 3), steps=20, seed=0)
    np.testing.assert_array_equal(result, internals.activation_maximization(model, ("class", 3), steps=20, seed=0))
    assert not np.array_equal(result, internals.activation_maximization(model, ("class", 3), steps=20, seed=1))
    assert all(torch.equal(v, params[k]) for k, v in model.state_dict().items())
    assert all(p.grad is None for p in model.parameters())


def test_activation_maximization_of_a_conv2_channel():
    model = make_net(7, fc1_units=128)

    def channel_mean(img: np.ndarray) -> float:
        x = torch.tensor(img)[None, None]
        with torch.no_grad():
            return F.conv2d(F.max_pool2d(F.relu(model.conv1(x)), 2), model.conv2.weight,
                            model.conv2.bias)[0, 9].mean().item()

    start = internals.activation_maximization(model, ("conv2", 9), steps=0)
    result = internals.activation_maximization(model, ("conv2", 9), steps=30)
    assert channel_mean(result) > channel_mean(start)


def test_activation_maximization_of_the_centre_unit_stays_in_its_receptive_field():
    """where="center": conv2's middle unit (5,5) sees input rows/cols 8..15 only (3x3 conv, pool 2, 3x3 conv)."""
    model = make_net(7, fc1_units=128)

    def centre(img: np.ndarray) -> float:
        x = torch.tensor(img)[None, None]
        with torch.no_grad():
            return F.conv2d(F.max_pool2d(F.relu(model.conv1(x)), 2), model.conv2.weight,
                            model.conv2.bias)[0, 9, 5, 5].item()

    start = internals.activation_maximization(model, ("conv2", 9), steps=0, where="center")
    result = internals.activation_maximization(model, ("conv2", 9), steps=40, l2=1e-2, blur_every=0,
                                               where="center")
    outside = np.ones((28, 28), bool)
    outside[8:16, 8:16] = False
    assert centre(result) > centre(start)
    assert result[outside].mean() < start[outside].mean() - 0.05   # unseen pixels only feel the L2 pull


# ----------------------------------------------------------------------------- embeddings

def test_embeddings_are_fc1_after_relu():
    model = make_net(8, fc1_units=64)
    images = np.random.default_rng(2).integers(0, 256, size=(7, 28, 28), dtype=np.uint8)
    emb = internals.embeddings(model, images, batch_size=3)
    assert emb.shape == (7, 64)
    for i in (0, 6):
        ref = hooked_outputs(model, torch.tensor(images[i], dtype=torch.float32)[None, None] / 255)["relu3"]
        np.testing.assert_allclose(emb[i], ref.numpy(), rtol=1e-5, atol=1e-6)


def test_pca_projection_matches_svd_up_to_sign():
    f = np.random.default_rng(3).normal(size=(12, 5)) * np.array([5.0, 3.0, 1.0, 0.5, 0.1])
    xy = internals.project_2d(f, "pca")
    centred = f - f.mean(0)
    u, s, _ = np.linalg.svd(centred, full_matrices=False)
    ref = u[:, :2] * s[:2]                                            # principal component scores
    for j in range(2):
        sign = np.sign(xy[:, j] @ ref[:, j])
        np.testing.assert_allclose(xy[:, j] * sign, ref[:, j], rtol=1e-4, atol=1e-4)


def test_tsne_projection_shape_and_seed():
    f = np.random.default_rng(4).normal(size=(30, 8)).astype(np.float32)
    a, b = internals.project_2d(f, "tsne", seed=0), internals.project_2d(f, "tsne", seed=0)
    assert a.shape == (30, 2)
    np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError):
        internals.project_2d(f, "umap")


# ----------------------------------------------------------------------------- run-level: checkpoints

def test_conv_kernels_equal_checkpoint_tensors(fixture_run):
    k1 = internals.conv_kernels(fixture_run, 2, "conv1")
    k2 = internals.conv_kernels(fixture_run, 2, "conv2")
    assert k1.shape == (32, 3, 3) and k2.shape == (64, 32, 3, 3)
    np.testing.assert_array_equal(k1, checkpoint_tensor(fixture_run, 2, "conv1.weight")[:, 0])
    np.testing.assert_array_equal(k2, checkpoint_tensor(fixture_run, 2, "conv2.weight"))
    with pytest.raises(ValueError):
        internals.conv_kernels(fixture_run, 2, "fc1")


def test_named_conv_kernels_are_read_from_the_checkpoint_without_building_the_model(fixture_run, monkeypatch):
    """One path per number: a page that holds the model reads kernels without a second load_model."""
    monkeypatch.setattr(runs, "load_model", lambda *a, **k: pytest.fail("conv_kernels loaded the model"))
    np.testing.assert_array_equal(internals.conv_kernels(fixture_run, 1, "conv2"),
                                  checkpoint_tensor(fixture_run, 1, "conv2.weight"))


def test_weight_norms_hand_checked(fixture_run):
    df = internals.weight_norms(fixture_run)
    assert sorted(df["layer"].unique()) == ["conv1", "conv2", "fc1", "fc2"]
    assert sorted(df["epoch"].unique()) == [1, 2, 3]
    for epoch in (1, 3):
        w = checkpoint_tensor(fixture_run, epoch, "conv2.weight").astype(np.float64)
        row = df[(df.epoch == epoch) & (df.layer == "conv2")]
        assert row["norm"].item() == pytest.approx(np.sqrt((w ** 2).sum()), rel=1e-9)


def test_kernel_drift_hand_checked(fixture_run):
    df = internals.kernel_drift(fixture_run, "conv1")
    assert len(df) == 3 * 32
    k = {e: checkpoint_tensor(fixture_run, e, "conv1.weight").astype(np.float64) for e in (1, 2, 3)}
    r = df.set_index(["epoch", "kernel"])
    assert np.isnan(r.loc[(1, 0), "from_previous"]) and r.loc[(1, 0), "from_first"] == 0
    assert r.loc[(2, 4), "from_previous"] == pytest.approx(np.sqrt(((k[2][4] - k[1][4]) ** 2).sum()))
    assert r.loc[(3, 4), "from_previous"] == pytest.approx(np.sqrt(((k[3][4] - k[2][4]) ** 2).sum()))
    assert r.loc[(3, 31), "from_first"] == pytest.approx(np.sqrt(((k[3][31] - k[1][31]) ** 2).sum()))
    assert (df["from_first"][df.epoch == 3] > 0).mean() > 0.5         # training moved most kernels
    assert internals.kernel_drift(fixture_run, "conv2").shape == (3 * 64, 4)


def test_mean_drift_hand_checked():
    import pandas as pd
    drift = pd.DataFrame({"epoch": [1, 1, 2, 2, 3, 3], "kernel": [0, 1] * 3,
                          "from_previous": [np.nan, np.nan, 1.0, 3.0, 0.5, 0.0],
                          "from_first": [0.0, 0.0, 1.0, 3.0, 2.0, 4.0]})
    prev = internals.mean_drift(drift, "from_previous")
    assert list(prev.index) == [2, 3] and list(prev.values) == [2.0, 0.25]
    assert list(internals.mean_drift(drift, "from_first").values) == [0.0, 2.0, 3.0]


# ----------------------------------------------------------------------------- cached wrappers

def test_cached_wrappers_store_and_reuse(copy_run, mnist_root):
    from data.mnist import load_raw
    run = copy_run("cached")
    images = load_raw(mnist_root)["t10k-images-idx3-ubyte"]
    model = runs.load_model(run, 3)

    out = internals.embedding_2d_cached(run, 3, "pca", n=60)
    assert out["xy"].shape == (60, 2) and list(out["index"][:3]) == [0, 1, 2]
    files = sorted(p.name for p in (run / "cache").iterdir())
    assert len(files) == 1 and "embedding2d" in files[0]
    ref = internals.project_2d(internals.embeddings(model, images[:60]), "pca")
    np.testing.assert_allclose(np.abs(out["xy"]), np.abs(ref), rtol=1e-4, atol=1e-4)
    np.testing.assert_array_equal(internals.embedding_2d_cached(run, 3, "pca", n=60)["xy"], out["xy"])

    idx, scores = internals.top_activating_cached(run, 3, "conv2", channel=5, k=4, n=120)
    ref_idx, ref_scores = internals.top_activating(model, images[:120], "conv2", 5, k=4)
    np.testing.assert_array_equal(idx, ref_idx)
    np.testing.assert_allclose(scores, ref_scores)
    idx7, _ = internals.top_activating_cached(run, 3, "conv2", channel=7, k=4, n=120)   # same cache file
    np.testing.assert_array_equal(idx7, internals.top_activating(model, images[:120], "conv2", 7, k=4)[0])
    assert len(list((run / "cache").iterdir())) == 2

    img = internals.activation_maximization_cached(run, 3, ("class", 1), steps=3)
    np.testing.assert_array_equal(img, internals.activation_maximization(model, ("class", 1), steps=3))
