import json
import math

import numpy as np
import pytest

from deepncheap import bo
from deepncheap.space import SearchSpace


def channel_kernel(a, b, *, reference=False):
    space = SearchSpace.create("cnn")
    terms = space.kernel("core", reference=reference)
    configs = [space.default_config(depth=len(c), widths=c) for c in (a, b)]
    features = space.encode("core", configs)
    return bo.kernel_matrix(features, features, terms)[0, 1]


def test_channel_kernel_same_depth_uses_per_layer_bounds_and_roots():
    # layer 2: |32-48| / (128-16), root 2 -> d = 3 * (16/112)^(1/2)
    d2 = 3 * math.sqrt(16 / 112)
    assert channel_kernel([16, 32], [16, 48]) == pytest.approx((1 + math.exp(-(d2**2) / 2)) / 2)
    assert channel_kernel([16, 32], [16, 48]) == pytest.approx(0.762894, abs=1e-6)


def test_channel_kernel_different_depths_counts_missing_layers_at_distance_omega():
    expected = (1 + 1 + math.exp(-(3.0**2) / 2)) / 3  # averaged over the longer network's 3 layers
    assert channel_kernel([16, 32], [16, 32, 64]) == pytest.approx(expected)
    assert channel_kernel([16, 32, 64], [16, 32]) == pytest.approx(expected)


def test_reference_mode_keeps_the_references_first_layer_normalization():
    d2 = 3 * math.sqrt(16 / 48)  # every layer normalized by 16..64
    assert channel_kernel([16, 32], [16, 48], reference=True) == pytest.approx((1 + math.exp(-(d2**2) / 2)) / 2)


def test_training_kernel_is_log_scale_with_zero_weight_decay_at_the_lower_bound():
    space = SearchSpace.create("mlp")
    base = space.default_config(depth=1, widths=[50])
    a = dict(base, lr=1e-3, weight_decay=0.0, batch_size=64)
    b = dict(base, lr=1e-2, weight_decay=1e-4, batch_size=64)
    features = space.encode("training", [a, b])
    value = bo.kernel_matrix(features, features, space.kernel("training"))[0, 1]
    lr = math.exp(-((3 * 1 / 4) ** 2) / 2)  # one decade of four
    wd = math.exp(-((3 * 2 / 3) ** 2) / 2)  # 0 -> 1e-6, then two decades of three
    assert value == pytest.approx((lr + wd + 1) / 3)


def test_mlp_kernel_is_mean_of_total_nodes_and_layer_count():
    space = SearchSpace.create("mlp")
    configs = [space.default_config(depth=1, widths=[100]), space.default_config(depth=2, widths=[50, 50])]
    features = space.encode("core", configs)
    value = bo.kernel_matrix(features, features, space.kernel("core"))[0, 1]
    assert value == pytest.approx(0.5 * (1 + math.exp(-((3 * 1 / 2) ** 2) / 2)))


@pytest.mark.parametrize(("network", "stage"), [("cnn", "core"), ("mlp", "core"), ("cnn", "training")])
@pytest.mark.parametrize("reference", [False, True])
def test_kernel_matrices_are_symmetric_positive_semidefinite(network, stage, reference):
    space = SearchSpace.create(network)
    base = space.default_config(depth=4, widths=[32, 64, 64, 128]) if network == "cnn" else None
    configs = space.sample(150, method="random", seed=2, stage=stage, base=base)
    features = space.encode(stage, configs)
    matrix = bo.kernel_matrix(features, features, space.kernel(stage, reference=reference))
    assert np.allclose(matrix, matrix.T)
    assert np.allclose(np.diag(matrix), 1.0)  # identical configs have covariance 1
    assert np.linalg.eigvalsh(matrix).min() > -1e-9


def random_problem(seed=0, n=12):
    space = SearchSpace.create("mlp")
    base = space.default_config(depth=1, widths=[50])
    observed = space.sample(n, method="sobol", seed=seed, stage="training", base=base)
    candidates = space.sample(200, method="random", seed=seed + 1, stage="training", base=base)
    y = np.random.default_rng(seed).normal(-1.0, 0.3, size=n)
    return space, observed, candidates, y


def test_gp_posterior_mean_matches_observations_at_observed_points():
    space, observed, _, y = random_problem()
    terms = space.kernel("training")
    features = space.encode("training", observed)
    k = bo.kernel_matrix(features, features, terms)
    mean, std = bo.gp_posterior(k, y, k, prior_mean=float(y.mean()), noise=1e-8)
    assert np.allclose(mean, y, atol=1e-3)
    assert np.all(std < 0.01)
    # with the default noise 1e-4 the mean smooths a little between near-duplicate configs, no more
    mean, _ = bo.gp_posterior(k, y, k, prior_mean=float(y.mean()))
    assert np.abs(mean - y).max() < 0.1 * np.ptp(y)


def test_expected_improvement_properties():
    mean = np.array([0.0, 0.5, 1.0, -1.0])
    std = np.array([1.0, 0.0, 1e-15, 0.0])
    ei = bo.expected_improvement(mean, std, best=0.2, xi=0.0)
    assert np.all(ei >= 0)
    assert ei[1] == 0.0 and ei[2] == 0.0  # no uncertainty and mean >= best: nothing to gain
    assert ei[3] == pytest.approx(1.2)  # no uncertainty, mean below best: the sure improvement
    assert ei[0] > 0.2 * 0.5  # uncertainty adds to the plain improvement
    rng = np.random.default_rng(0)
    assert np.all(bo.expected_improvement(rng.normal(size=1000), rng.random(1000), best=0.0) >= 0)


def manual_ei(features_obs, y, features_cand, terms, *, prior_mean, best, xi, noise):
    """The textbook GP + EI, with plain matrix inverses, to check `propose` against."""
    k = bo.kernel_matrix(features_obs, features_obs, terms) + noise * np.eye(len(y))
    k_star = bo.kernel_matrix(features_cand, features_obs, terms)
    inverse = np.linalg.inv(k)
    mean = prior_mean + k_star @ inverse @ (y - prior_mean)
    std = np.sqrt(np.clip(1 - np.einsum("ij,jk,ik->i", k_star, inverse, k_star), 0, None))
    z = (best - xi - mean) / std
    from scipy.stats import norm

    return (best - xi - mean) * norm.cdf(z) + std * norm.pdf(z)


def test_reference_mode_reproduces_the_reference_formulas():
    space, observed, candidates, y = random_problem(seed=3)
    terms = space.kernel("training", reference=True)
    obs, cand = space.encode("training", observed), space.encode("training", candidates)
    prior_mean = float(y[:8].mean())  # mean of the prior points, fixed once
    choice = bo.propose(obs, y, cand, terms, mode="reference", prior_mean=prior_mean)
    index, ei = choice.index, choice.ei
    expected = manual_ei(obs, y, cand, terms, prior_mean=prior_mean, best=y.min(), xi=1e-4, noise=1e-4)
    assert np.allclose(ei, expected, atol=1e-7)
    assert index == int(np.argmax(expected))


def test_default_mode_standardizes_objectives():
    space, observed, candidates, y = random_problem(seed=4)
    terms = space.kernel("training")
    obs, cand = space.encode("training", observed), space.encode("training", candidates)
    ei = bo.propose(obs, y, cand, terms, mode="default").ei
    z = (y - y.mean()) / y.std()
    expected = manual_ei(obs, z, cand, terms, prior_mean=0.0, best=z.min(), xi=1e-4 / y.std(), noise=1e-2)
    assert np.allclose(ei, expected, atol=1e-7)
    # shifting and scaling the objectives does not change the default proposal
    assert bo.propose(obs, 5 * y + 2, cand, terms).index == bo.propose(obs, y, cand, terms).index


def test_failed_trials_reach_the_gp_as_the_worst_objective():
    from deepncheap.methods.bo_stage import observed_objectives
    from deepncheap.store import Trial

    def trial(status, objective):
        return Trial(1, "core", 0, status, {}, objective, *[None] * 8, [], None, None, 0.0, None)

    values = observed_objectives([trial("complete", -1.0), trial("failed", None), trial("complete", -0.5)], 0.1)
    assert values.tolist() == [-1.0, -0.5, -0.5] and np.isfinite(values).all()


def test_batch_proposals_with_pending_points_are_distinct_and_spread():
    space, observed, candidates, y = random_problem(seed=5)
    terms = space.kernel("training")
    obs, cand = space.encode("training", observed), space.encode("training", candidates)
    first = bo.propose(obs, y, cand, terms).index
    assert bo.propose(obs, y, cand, terms, pending=None).index == first  # no pending point: the plain proposal
    chosen = [first]
    for _ in range(5):  # kriging believer: each pending config is observed at the GP's mean there
        pending = [f[chosen] for f in cand]
        choice = bo.propose(obs, y, cand, terms, pending=pending)
        index, ei = choice.index, choice.ei
        assert np.all(np.isneginf(ei[chosen]))  # a pending config is never proposed again
        chosen.append(index)
    assert len(set(chosen)) == 6
    configs = {json.dumps(candidates[i], sort_keys=True) for i in chosen}
    assert len(configs) == 6


def test_same_rows_compares_padded_layer_encodings():
    a = [np.array([[1.0, np.nan], [1.0, 2.0]]), np.array([3.0, 3.0])]
    b = [np.array([[1.0, np.nan]]), np.array([3.0])]
    assert bo.same_rows(a, b).tolist() == [[True], [False]]


def test_batch_proposals_keep_the_observed_incumbent():
    """With pending points (kriging believer) EI improves on the best *observed* value, never on a fantasy."""
    space, observed, candidates, y = random_problem(seed=7)
    terms = space.kernel("training", reference=True)
    obs, cand = space.encode("training", observed), space.encode("training", candidates)
    k = bo.kernel_matrix(obs, obs, terms)
    mean, _ = bo.gp_posterior(k, y, bo.kernel_matrix(cand, obs, terms), prior_mean=float(y.mean()))
    below = int(np.argmin(mean))
    assert mean[below] < y.min()  # a pending config whose believed value would beat every observation
    pending = [f[[below]] for f in cand]
    choice = bo.propose(obs, y, cand, terms, mode="reference", prior_mean=float(y.mean()), pending=pending)
    augmented = [np.concatenate([o, p]) for o, p in zip(obs, pending, strict=True)]
    expected = manual_ei(
        augmented, np.append(y, mean[below]), cand, terms, prior_mean=float(y.mean()), best=y.min(), xi=1e-4, noise=1e-4
    )
    allowed = np.isfinite(choice.ei)
    assert np.allclose(choice.ei[allowed], expected[allowed], atol=1e-7)


def test_a_config_already_trained_is_never_proposed_again():
    space, observed, candidates, y = random_problem(seed=8)
    terms = space.kernel("training")
    with_trained = [*observed[:3], *candidates]  # the first candidates are trained configs
    obs, cand = space.encode("training", observed), space.encode("training", with_trained)
    choice = bo.propose(obs, y, cand, terms)
    assert np.all(np.isneginf(choice.ei[:3])) and choice.index >= 3


def test_jitter_beyond_the_noise_is_reported():
    # round-off can leave a kernel matrix slightly indefinite: the factorization needs more than the noise
    k = np.array([[1.0, 1.0 + 1e-6], [1.0 + 1e-6, 1.0]])
    mean, std, jitter = bo.posterior_with_jitter(k, np.array([0.0, 0.1]), k, prior_mean=0.0, noise=1e-8)
    assert jitter >= 1e-6 and np.all(np.isfinite(mean)) and np.all(np.isfinite(std))
    _, _, jitter = bo.posterior_with_jitter(np.eye(2), np.zeros(2), np.eye(2), prior_mean=0.0, noise=1e-8)
    assert jitter == 1e-8
    space, observed, candidates, y = random_problem(seed=9)
    choice = bo.propose(
        space.encode("training", observed), y, space.encode("training", candidates), space.kernel("training")
    )
    assert not choice.notes  # nothing unusual, nothing noted


def test_when_every_expected_improvement_is_zero_the_lowest_mean_minus_std_is_chosen():
    space, observed, candidates, _ = random_problem(seed=10)
    terms = space.kernel("training", reference=True)
    obs, cand = space.encode("training", observed[:1]), space.encode("training", candidates)
    # one observation at 0 and a prior mean far above it: EI underflows to exactly 0 at every candidate
    choice = bo.propose(obs, np.zeros(1), cand, terms, mode="reference", prior_mean=1e3)
    assert np.all(choice.ei == 0)
    k = bo.kernel_matrix(obs, obs, terms)
    mean, std = bo.gp_posterior(k, np.zeros(1), bo.kernel_matrix(cand, obs, terms), prior_mean=1e3)
    assert choice.index == int(np.argmin(mean - std)) != 0
    assert any("expected improvement was 0" in note for note in choice.notes)


def test_known_cost_ei_integrates_the_gp_error_through_the_exact_cost():
    mean, std = np.array([-2.0, -2.0, -1.5]), np.array([0.0, 0.0, 0.3])
    cost = np.array([0.0, 0.01, 0.0])
    ei = bo.known_cost_ei(mean, std, cost, best=-1.9, xi=0.0)
    assert ei[0] == pytest.approx(0.1)  # no uncertainty: best - log10(10^-2)
    assert ei[1] == pytest.approx(max(-1.9 - math.log10(0.01 + 0.01), 0.0))  # (a cost that rules it out: 0)
    plain = bo.expected_improvement(mean[2:], std[2:], -1.9, xi=0.0)  # no cost: the usual EI, to quadrature
    assert ei[2] == pytest.approx(plain[0], rel=0.01)


def test_with_a_known_cost_the_gp_models_the_error_and_ei_adds_each_candidate_s_cost():
    """Two candidates the GP cannot tell apart by error: the cheaper one is chosen, whatever the objectives of
    the observed trials say about cost (which the plain GP would have to learn)."""
    space, observed, candidates, y = random_problem(seed=6)
    terms = space.kernel("training")
    obs = space.encode("training", observed)
    twins = space.encode("training", [candidates[0], candidates[0]])
    f_p = np.power(10.0, y)
    observed_cost = np.full(len(y), 0.2)
    objectives = np.log10(f_p + observed_cost)
    choice = bo.propose(obs, objectives, twins, terms, known_cost=(observed_cost, np.array([0.5, 0.001])))
    assert choice.index == 1
    assert choice.ei[1] > choice.ei[0]
    # what the GP sees is log10 f_p: the same proposal as a plain GP on log10 f_p when every cost is 0
    cand = space.encode("training", candidates)
    zero = np.zeros(len(candidates))
    with_cost = bo.propose(obs, y, cand, terms, known_cost=(np.zeros(len(y)), zero)).ei
    plain = bo.propose(obs, y, cand, terms).ei  # (on the standardized scale)
    relevant = plain > 1e-3 * plain.max()
    assert relevant.sum() >= 3
    assert np.allclose(with_cost[relevant] / y.std(), plain[relevant], rtol=0.02)
