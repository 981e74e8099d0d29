import torch
from torch import nn

from deepncheap.cost import count_flops, count_parameters
from deepncheap.models import build_model
from deepncheap.space import SearchSpace


def test_linear_counts_equal_hand_counts():
    model = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))
    assert count_parameters(model) == (4 * 3 + 3) + (3 * 2 + 2)
    assert count_flops(model, (4,)) == 2 * 4 * 3 + 2 * 3 * 2


def test_mlp_counts():
    config = {
        "network": "mlp",
        "num_hidden_layers": 1,
        "hidden_nodes": [10],
        "drop_prob": 0.2,
        "lr": 1e-3,
        "weight_decay": 0.0,
        "batch_size": 32,
    }
    model = build_model(config, (64,), 10)
    assert count_parameters(model) == 64 * 10 + 10 + 10 * 10 + 10
    assert count_flops(model, (64,)) == 2 * 64 * 10 + 2 * 10 * 10


def test_small_cnn_counts():
    config = SearchSpace.create("cnn").default_config(depth=2, widths=[2, 4]) | {"bn_frac": 0.5, "do_frac": 0.0}
    model = build_model(config, (1, 8, 8), 3)
    # conv1 1->2 with bias (no BN), conv2 2->4 without bias + BN(4), head 4->3
    assert count_parameters(model) == (9 * 1 * 2 + 2) + (9 * 2 * 4) + 2 * 4 + (4 * 3 + 3)
    # 8x8 maps (no channel count exceeds 64, so no pooling); FLOPs = 2 * MACs of convs and head
    assert count_flops(model, (1, 8, 8)) == 2 * 9 * 1 * 2 * 64 + 2 * 9 * 2 * 4 * 64 + 2 * 4 * 3


def test_flop_count_leaves_training_mode_and_is_per_sample():
    model = nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3))
    model.train()
    assert count_flops(model, (4,)) == 24
    assert model.training
    frozen = nn.Linear(4, 3)
    frozen.weight.requires_grad_(False)
    assert count_parameters(frozen) == 3
    assert torch.is_grad_enabled()
