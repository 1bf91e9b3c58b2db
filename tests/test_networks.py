import numpy as np
import pytest
import torch
from scipy import stats
from torch import nn

from sklearn_tmnre import Prior, TMNREEstimator
from sklearn_tmnre.networks import (
    BatchedMarginalHeads,
    RatioEnsemble,
    RatioNetwork,
    make_embedding,
    set_layout,
)


def test_batched_heads_equal_a_loop_over_marginals():
    torch.manual_seed(0)
    heads = BatchedMarginalHeads(n_marginals=5, marginal_dim=2, in_features=3,
                                 hidden_features=8, num_blocks=2)
    s = torch.randn(4, 3)
    theta = torch.randn(4, 6, 5, 2)
    out = heads(s, theta)
    assert out.shape == (4, 6, 5)
    relu = torch.relu
    for m in range(5):
        h = theta[:, :, m] @ heads.w_theta[m] + (s @ heads.w_s[m] + heads.b_in[m])[:, None]
        for w1, b1, w2, b2 in zip(heads.w1, heads.b1, heads.w2, heads.b2):
            h = h + relu(relu(h) @ w1[m] + b1[m]) @ w2[m] + b2[m]
        expected = relu(h) @ heads.w_out[m] + heads.b_out[m]
        torch.testing.assert_close(out[:, :, m], expected, rtol=1e-5, atol=1e-5)



@pytest.mark.parametrize("fourier_features", [0, 3])
def test_heads_in_chunks_equal_one_pass_with_the_same_gradients(monkeypatch, fourier_features):
    # Heads run a chunk at a time (networks.head_chunk); the chunking must change nothing.
    import sklearn_tmnre.networks as networks

    torch.manual_seed(0)
    heads = BatchedMarginalHeads(n_marginals=37, marginal_dim=1, in_features=3,
                                 hidden_features=8, num_blocks=2,
                                 fourier_features=fourier_features)
    s, theta = torch.randn(4, 3), torch.randn(4, 3, 37, 1)

    def run():
        heads.zero_grad()
        out = heads(s, theta)
        out.square().sum().backward()
        return out.detach(), [p.grad.clone() for p in heads.parameters()]

    whole, whole_grads = run()
    monkeypatch.setattr(networks, "HEAD_CHUNK_BYTES", 1)  # the smallest chunk: 8 heads
    assert networks.head_chunk(12, 8, 37) == 8
    chunked, chunked_grads = run()
    torch.testing.assert_close(chunked, whole)
    for a, b in zip(chunked_grads, whole_grads):
        torch.testing.assert_close(a, b)

def test_ratio_network_orders_marginals_as_given():
    torch.manual_seed(0)
    emb, n = make_embedding("mlp", (3,), 4)
    marginals = [(0, 1), (2,), (1,), (0, 2)]
    net = RatioNetwork(emb, n, marginals, torch.zeros(3), torch.ones(3), torch.zeros(3),
                       torch.ones(3), hidden_features=8, num_blocks=1)
    x, theta = torch.randn(7, 3), torch.randn(7, 3)
    out = net(x, theta)
    assert out.shape == (7, 4)
    # changing parameter 2 only changes the marginals that contain it
    theta2 = theta.clone()
    theta2[:, 2] += 1.0
    diff = (net(x, theta2) - out).abs().sum(0)
    assert diff[0] == 0 and diff[2] == 0 and diff[1] > 0 and diff[3] > 0


@pytest.mark.parametrize("name, shape, kwargs", [
    ("identity", (5,), {}),
    ("linear", (5,), {}),
    ("mlp", (5,), {"hidden": 16, "layers": 1}),
    ("cnn1d", (32,), {"channels": (4, 8)}),
    ("cnn1d", (2, 32), {"channels": 4}),
    ("cnn2d", (16, 16), {"channels": (4,)}),
    ("cnn2d", (3, 16, 16), {}),
    ("deepset", (4, 2), {"hidden": 8}),
    ("deepset", (8,), {"set_size": 4, "layers": 1}),
    ("deepset", (5,), {}),
])
def test_named_embeddings(name, shape, kwargs):
    module, width = make_embedding(name, shape, 6, **kwargs)
    out = module(torch.randn(3, *shape))
    assert out.shape == (3, width)
    assert width == (5 if name == "identity" else 6)


def test_custom_embedding_class_gets_shape_and_width():
    class Emb(nn.Module):
        def __init__(self, input_shape, out_features, scale=1.0):
            super().__init__()
            self.lin = nn.Linear(input_shape[0], out_features + 1)
            self.scale = scale

        def forward(self, x):
            return self.lin(x) * self.scale

    module, width = make_embedding(Emb, (4,), 3, scale=2.0)
    assert width == 4 and module.scale == 2.0


def test_embedding_errors():
    with pytest.raises(ValueError, match="unknown"):
        make_embedding("resnet", (3,), 4)
    with pytest.raises(ValueError, match="accepts embedding__"):
        make_embedding("mlp", (3,), 4, channels=3)
    with pytest.raises(ValueError, match="cnn2d"):
        make_embedding("cnn2d", (30,), 4)
    with pytest.raises(TypeError, match="torch.nn.Module"):
        make_embedding(42, (3,), 4)


@pytest.mark.parametrize("name, shape, pooling, n_flat", [
    # 2 blocks halve each side twice; 8 channels in the last block.
    ("cnn2d", (16, 16), "flatten", 8 * 4 * 4),
    ("cnn2d", (3, 16, 20), "flatten", 8 * 4 * 5),
    ("cnn2d", (16, 16), "avg", 8),
    ("cnn2d", (16, 16), "adaptive", 8 * 2 * 2),
    ("cnn1d", (32,), "flatten", 8 * 8),
    ("cnn1d", (2, 32), "avg", 8),
    ("cnn1d", (32,), "adaptive", 8 * 2),
])
def test_cnn_pooling_widths(name, shape, pooling, n_flat):
    module, width = make_embedding(name, shape, 6, channels=(4, 8), pooling=pooling,
                                   pooled_size=2)
    assert module.head.in_features == n_flat
    assert width == 6
    assert module(torch.randn(3, *shape)).shape == (3, 6)


@pytest.mark.parametrize("shape, set_size, layout", [
    ((4, 2), None, (4, 2)),
    ((8,), 4, (4, 2)),
    ((8,), None, (8, 1)),
    ((3, 2, 2), None, (3, 4)),
])
def test_set_layout(shape, set_size, layout):
    assert set_layout(shape, set_size) == layout


@pytest.mark.parametrize("set_size", [3, 0, 2.0, "4"])
def test_deepset_rejects_a_set_size_that_does_not_divide_the_event(set_size):
    with pytest.raises(ValueError, match="set_size must be a positive integer dividing the 8"):
        make_embedding("deepset", (8,), 4, set_size=set_size)


def test_deepset_is_blind_to_the_order_of_elements_and_mlp_is_not():
    torch.manual_seed(0)
    x = torch.randn(5, 4, 2)
    shuffled = x[:, [2, 0, 3, 1]]
    deepset, _ = make_embedding("deepset", (8,), 6, set_size=4, hidden=16)
    mlp, _ = make_embedding("mlp", (8,), 6, hidden=16)
    with torch.no_grad():
        torch.testing.assert_close(deepset(x.reshape(5, 8)), deepset(shuffled.reshape(5, 8)))
        assert (mlp(x.reshape(5, 8)) - mlp(shuffled.reshape(5, 8))).abs().max() > 1e-3
        # ... but not to the features within an element.
        swapped = x.flip(-1)
        assert (deepset(x.reshape(5, 8)) - deepset(swapped.reshape(5, 8))).abs().max() > 1e-3


def test_deepset_estimator_is_permutation_invariant_end_to_end():
    # Per-position standardization would differ by sampling noise between positions;
    # the deepset's is pooled over the elements, so the fitted ratio stays invariant.
    rng = np.random.default_rng(0)
    prior = Prior({"mu": stats.uniform(-2, 4)})
    theta = prior.sample(200, random_state=1)
    X = theta.to_numpy()[:, :, None] + rng.normal(size=(200, 3, 2)) * [1.0, 5.0]
    est = TMNREEstimator(prior=prior, embedding="deepset", embedding_dim=4, hidden_features=8,
                         num_blocks=1, embedding__hidden=8, max_epochs=2,
                         random_state=0).fit(X, theta)
    module = est.net_.module_
    # One mean and scale per feature, repeated for every element.
    np.testing.assert_allclose(module.x_mean[0].numpy(), module.x_mean[2].numpy())
    np.testing.assert_allclose(module.x_std[:, 1].numpy(), X[..., 1].std(), rtol=1e-4)
    grid = theta.iloc[:6]
    x_o = np.repeat(X[:1], 6, axis=0)
    np.testing.assert_allclose(est.log_ratio(x_o, grid), est.log_ratio(x_o[:, ::-1], grid),
                               rtol=1e-5, atol=1e-5)


def test_cnn_pooling_errors_name_the_argument():
    with pytest.raises(ValueError, match="pooling must be one of"):
        make_embedding("cnn2d", (16, 16), 4, pooling="max")
    with pytest.raises(ValueError, match="pooled_size must be a positive integer"):
        make_embedding("cnn1d", (16,), 4, pooling="adaptive", pooled_size=0)


def test_flatten_pooling_sees_where_a_blob_is_and_avg_does_not():
    torch.manual_seed(0)
    grid = torch.arange(64.0)
    blob = torch.exp(-((grid[:, None] - 24) ** 2 + (grid[None, :] - 24) ** 2) / 4)
    # A shift by a multiple of 2**blocks keeps the max-pool windows aligned, and the
    # features that see the blob (receptive field 22 pixels) never see the zero
    # padding, so the last feature map is shifted exactly.
    images = torch.stack([blob, torch.roll(blob, shifts=(16, 16), dims=(0, 1))])
    embeddings = {}
    for pooling in ("avg", "flatten", "adaptive"):
        module, _ = make_embedding("cnn2d", (64, 64), 8, channels=(4, 8, 8), pooling=pooling,
                                   pooled_size=2)
        with torch.no_grad():
            embeddings[pooling] = module(images)
    scale = embeddings["avg"].abs().max()
    torch.testing.assert_close(embeddings["avg"][0], embeddings["avg"][1], rtol=0,
                               atol=1e-5 * scale)
    for pooling in ("flatten", "adaptive"):
        gap = (embeddings[pooling][0] - embeddings[pooling][1]).abs().max()
        assert gap > 1e-2 * embeddings[pooling].abs().max()


def test_estimator_routes_embedding_pooling():
    rng = np.random.default_rng(0)
    prior = Prior({"a": stats.uniform(0, 1)})
    X = rng.standard_normal((40, 8, 8)).astype(np.float32)
    theta = prior.sample(40, random_state=0)
    est = TMNREEstimator(prior=prior, embedding="cnn2d", embedding_dim=4, hidden_features=8,
                         num_blocks=1, embedding__channels=(2,), embedding__pooling="avg",
                         max_epochs=1, random_state=0).fit(X, theta)
    assert est.get_params()["embedding__pooling"] == "avg"
    assert est.net_.module_.embedding.head.in_features == 2
    est.set_params(embedding__pooling="flatten").fit(X, theta)
    assert est.net_.module_.embedding.head.in_features == 2 * 4 * 4
    with pytest.raises(ValueError, match="pooling"):
        est.set_params(embedding__pooling="global").fit(X, theta)


def _member(marginals, seed):
    torch.manual_seed(seed)
    emb, n = make_embedding("mlp", (3,), 4)
    return RatioNetwork(emb, n, marginals, torch.zeros(3), torch.ones(3), torch.zeros(3),
                        torch.ones(3), hidden_features=8, num_blocks=1)


def test_ensemble_logit_is_the_mean_of_its_members():
    marginals = [(0,), (1, 2), (2,)]
    members = [_member(marginals, seed) for seed in range(3)]
    ensemble = RatioEnsemble(members)
    x, theta = torch.randn(7, 3), torch.randn(7, 3)
    each = torch.stack([m(x, theta) for m in members])
    assert not torch.allclose(each[0], each[1])  # members start from different weights
    torch.testing.assert_close(ensemble(x, theta), each.mean(0))
    # For training, every member's logits side by side.
    s = ensemble.embed(x)
    assert s.shape == (7, 3 * 4)
    side = ensemble.logits_from_embedding(s, theta[:, None], members=True)[:, 0]
    torch.testing.assert_close(side, torch.cat(list(each), dim=-1))
    # The cached-embedding path of the grids gives the same mean.
    part = ensemble.embed_part(s, 2)
    grid = ensemble.group_logits(s, theta[:, None, None, 1:], 2, s_part=part)[:, 0, 0]
    torch.testing.assert_close(grid, each.mean(0)[:, 1])


def test_ensemble_needs_a_member():
    with pytest.raises(ValueError, match="at least one member"):
        RatioEnsemble([])
