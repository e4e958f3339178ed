"""nbgrad.nn against torch.nn: every layer and loss (each reduction), with the same initial
weights set through load_state_dict; outputs, input gradients and parameter gradients."""
import copy
import warnings
from collections import OrderedDict

import numpy as np
import pytest
import torch

import nbgrad
from nbgrad import nn
import nbgrad.nn.functional as F
from conftest import assert_same_error

RTOL, ATOL = 1e-5, 1e-6


def numpy_state(module):
    return {k: np.array(v.detach().numpy()) for k, v in module.state_dict().items()}


def copy_weights(source, target):
    """Load `source`'s state into `target` (either library) through NumPy arrays."""
    state = numpy_state(source)
    if isinstance(target, torch.nn.Module):
        target.load_state_dict({k: torch.from_numpy(v) for k, v in state.items()})
    else:
        target.load_state_dict(state)


def close(nb_tensor, torch_tensor, rtol=RTOL, atol=ATOL):
    np.testing.assert_allclose(nb_tensor.detach().numpy(), torch_tensor.detach().numpy(),
                               rtol=rtol, atol=atol)


def float_input(shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


# name: (nbgrad module factory, torch module factory, input array)
LAYERS = {
    "linear": (lambda: nn.Linear(5, 3), lambda: torch.nn.Linear(5, 3), float_input((4, 5))),
    "linear_no_bias": (lambda: nn.Linear(5, 3, bias=False),
                       lambda: torch.nn.Linear(5, 3, bias=False), float_input((4, 5))),
    "linear_3d_input": (lambda: nn.Linear(5, 3), lambda: torch.nn.Linear(5, 3),
                        float_input((2, 4, 5))),
    "linear_1d_input": (lambda: nn.Linear(5, 3), lambda: torch.nn.Linear(5, 3), float_input((5,))),
    "sequential_mlp": (lambda: nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 3)),
                       lambda: torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.ReLU(),
                                                   torch.nn.Linear(8, 3)),
                       float_input((5, 6))),
    "relu": (nn.ReLU, torch.nn.ReLU, float_input((3, 4))),
    "sigmoid": (nn.Sigmoid, torch.nn.Sigmoid, float_input((3, 4))),
    "tanh": (nn.Tanh, torch.nn.Tanh, float_input((3, 4))),
    "softmax": (lambda: nn.Softmax(dim=1), lambda: torch.nn.Softmax(dim=1), float_input((3, 4))),
    "log_softmax": (lambda: nn.LogSoftmax(dim=-1), lambda: torch.nn.LogSoftmax(dim=-1),
                    float_input((3, 4))),
    "softplus": (nn.Softplus, torch.nn.Softplus, float_input((3, 4))),
    "softplus_beta_threshold": (lambda: nn.Softplus(beta=2.0, threshold=1.0),
                                lambda: torch.nn.Softplus(beta=2.0, threshold=1.0),
                                float_input((3, 4))),
    "flatten": (nn.Flatten, torch.nn.Flatten, float_input((2, 3, 4))),
    "identity": (nn.Identity, torch.nn.Identity, float_input((3, 4))),
    "dropout_eval": (lambda: nn.Dropout(0.5).eval(), lambda: torch.nn.Dropout(0.5).eval(),
                     float_input((3, 4))),
    "gelu": (nn.GELU, torch.nn.GELU, float_input((3, 4))),
    "gelu_tanh": (lambda: nn.GELU("tanh"), lambda: torch.nn.GELU("tanh"), float_input((3, 4))),
    "silu": (nn.SiLU, torch.nn.SiLU, float_input((3, 4))),
    "leaky_relu": (lambda: nn.LeakyReLU(0.2), lambda: torch.nn.LeakyReLU(0.2), float_input((3, 4))),
    "elu": (lambda: nn.ELU(alpha=0.5), lambda: torch.nn.ELU(alpha=0.5), float_input((3, 4))),
    "hardtanh": (lambda: nn.Hardtanh(-0.5, 1.0), lambda: torch.nn.Hardtanh(-0.5, 1.0),
                 float_input((3, 4))),
    "relu6": (nn.ReLU6, torch.nn.ReLU6, 4 * float_input((3, 4))),
    "selu": (nn.SELU, torch.nn.SELU, float_input((3, 4))),
    "celu": (lambda: nn.CELU(0.5), lambda: torch.nn.CELU(0.5), float_input((3, 4))),
    "mish": (nn.Mish, torch.nn.Mish, float_input((3, 4))),
    "hardswish": (nn.Hardswish, torch.nn.Hardswish, 3 * float_input((3, 4))),
    "hardsigmoid": (nn.Hardsigmoid, torch.nn.Hardsigmoid, 3 * float_input((3, 4))),
    "logsigmoid": (nn.LogSigmoid, torch.nn.LogSigmoid, float_input((3, 4))),
    "softsign": (nn.Softsign, torch.nn.Softsign, float_input((3, 4))),
    "tanhshrink": (nn.Tanhshrink, torch.nn.Tanhshrink, float_input((3, 4))),
    "softshrink": (lambda: nn.Softshrink(0.3), lambda: torch.nn.Softshrink(0.3),
                   float_input((3, 4))),
    "hardshrink": (nn.Hardshrink, torch.nn.Hardshrink, float_input((3, 4))),
    "threshold": (lambda: nn.Threshold(0.1, -2.0), lambda: torch.nn.Threshold(0.1, -2.0),
                  float_input((3, 4))),
    "softmin": (lambda: nn.Softmin(1), lambda: torch.nn.Softmin(1), float_input((3, 4))),
    "softmax2d": (nn.Softmax2d, torch.nn.Softmax2d, float_input((2, 3, 2, 2))),
    "softmax2d_3d": (nn.Softmax2d, torch.nn.Softmax2d, float_input((3, 2, 2))),
    "glu": (nn.GLU, torch.nn.GLU, float_input((3, 4))),
    "glu_dim0": (lambda: nn.GLU(0), lambda: torch.nn.GLU(0), float_input((4, 3))),
    # one slope per channel (dim 1), and one for all
    "prelu_channels": (lambda: nn.PReLU(3, init=0.1), lambda: torch.nn.PReLU(3, init=0.1),
                       float_input((2, 3, 4))),
    "prelu": (nn.PReLU, torch.nn.PReLU, float_input((3, 4))),
    "rrelu_eval": (lambda: nn.RReLU(0.1, 0.3).eval(), lambda: torch.nn.RReLU(0.1, 0.3).eval(),
                   float_input((3, 4))),
    "unflatten": (lambda: nn.Unflatten(1, (2, -1)), lambda: torch.nn.Unflatten(1, (2, -1)),
                  float_input((3, 6))),
    "module_list_mlp": (lambda: _stack(nn), lambda: _stack(torch.nn), float_input((5, 4))),
}


def _stack(nn_module):
    """A model of `nn_module` (either library's) with its layers in a ModuleList and a
    ModuleDict and parameters in a ParameterList and a ParameterDict."""
    class Stack(nn_module.Module):
        def __init__(self):
            super().__init__()
            self.layers = nn_module.ModuleList([nn_module.Linear(4, 4) for _ in range(2)])
            self.heads = nn_module.ModuleDict({"out": nn_module.Linear(4, 3)})
            self.scales = nn_module.ParameterList([nn_module.Parameter(0.5 * _ones(nn_module, 4))])
            self.shift = nn_module.ParameterDict({"b": nn_module.Parameter(_ones(nn_module, 3))})

        def forward(self, x):
            for layer in self.layers:
                x = nn_module.functional.gelu(layer(x)) * self.scales[0]
            return self.heads["out"](x) + self.shift["b"]
    return Stack()


def _ones(nn_module, size):
    library = nbgrad if nn_module is nn else torch
    return library.ones(size)


@pytest.mark.parametrize("name", list(LAYERS))
def test_layer_matches_torch(name):
    make_nb, make_torch, x = LAYERS[name]
    nb_module, torch_module = make_nb(), make_torch()
    copy_weights(torch_module, nb_module)
    nb_x = nbgrad.tensor(x, requires_grad=True)
    torch_x = torch.tensor(x, requires_grad=True)
    nb_out, torch_out = nb_module(nb_x), torch_module(torch_x)
    close(nb_out, torch_out)
    upstream = float_input(tuple(torch_out.shape), seed=1)
    (nb_out * nbgrad.tensor(upstream)).sum().backward()
    (torch_out * torch.tensor(upstream)).sum().backward()
    close(nb_x.grad, torch_x.grad)
    for (nb_name, nb_param), (torch_name, torch_param) in zip(nb_module.named_parameters(),
                                                              torch_module.named_parameters()):
        assert nb_name == torch_name
        close(nb_param.grad, torch_param.grad)


def test_embedding_matches_torch():
    nb_module, torch_module = nn.Embedding(10, 4, padding_idx=0), torch.nn.Embedding(10, 4, padding_idx=0)
    copy_weights(torch_module, nb_module)
    indices = np.array([[1, 0, 3], [3, 9, 1]], np.int64)
    nb_out, torch_out = nb_module(nbgrad.tensor(indices)), torch_module(torch.tensor(indices))
    close(nb_out, torch_out)
    assert type(nb_out.grad_fn).__name__ == "EmbeddingBackward0"
    upstream = float_input((2, 3, 4), seed=2)
    (nb_out * nbgrad.tensor(upstream)).sum().backward()
    (torch_out * torch.tensor(upstream)).sum().backward()
    close(nb_module.weight.grad, torch_module.weight.grad)


def test_embedding_index_out_of_range():
    for bad in ([0, 3], [-1], [-4]):
        with pytest.raises(IndexError, match="index out of range in self"):
            nn.Embedding(3, 2)(nbgrad.tensor(bad))


def test_cross_entropy_all_targets_ignored_is_nan_like_torch():
    loss = F.cross_entropy(nbgrad.randn(2, 3), nbgrad.tensor([-100, -100]))
    assert np.isnan(loss.item())


def test_dropout_trains_and_is_identity_in_eval():
    nbgrad.manual_seed(0)
    layer = nn.Dropout(0.5)
    x = nbgrad.ones(1000)
    out = layer(x).numpy()
    assert set(np.unique(out)) == {0.0, 2.0}
    assert 400 < (out == 0).sum() < 600
    layer.eval()
    assert np.array_equal(layer(x).numpy(), x.numpy())


def test_linear_grad_fn_and_default_init():
    nbgrad.manual_seed(0)
    layer = nn.Linear(100, 20)
    out = layer(nbgrad.randn(3, 100, requires_grad=True))
    assert type(out.grad_fn).__name__ == "AddmmBackward0"
    bound = 1 / np.sqrt(100)
    for param in (layer.weight, layer.bias):
        values = param.detach().numpy()
        assert values.dtype == np.float32
        assert np.abs(values).max() <= bound and np.abs(values).max() > 0.9 * bound


# --- losses ------------------------------------------------------------------------------

def _probabilities(shape, seed):
    return (1 / (1 + np.exp(-float_input(shape, seed)))).astype(np.float32)


def _classes(n, classes, seed=3):
    return np.random.default_rng(seed).integers(0, classes, n).astype(np.int64)


# name: (nbgrad factory(reduction), torch factory(reduction), input, target, input transform)
WEIGHTS = np.array([0.5, 1.0, 2.0, 1.5], np.float32)
LOSSES = {
    "mse": (nn.MSELoss, torch.nn.MSELoss, float_input((4, 3)), float_input((4, 3), 1)),
    "l1": (nn.L1Loss, torch.nn.L1Loss, float_input((4, 3)), float_input((4, 3), 1)),
    "bce": (nn.BCELoss, torch.nn.BCELoss, _probabilities((4, 3), 0), _probabilities((4, 3), 1)),
    "bce_weight": (lambda reduction: nn.BCELoss(nbgrad.tensor(WEIGHTS[:3]), reduction=reduction),
                   lambda reduction: torch.nn.BCELoss(torch.tensor(WEIGHTS[:3]), reduction=reduction),
                   _probabilities((4, 3), 0), _probabilities((4, 3), 1)),
    "bce_with_logits": (nn.BCEWithLogitsLoss, torch.nn.BCEWithLogitsLoss, float_input((4, 3)) * 10,
                        _probabilities((4, 3), 1)),
    "bce_with_logits_pos_weight": (
        lambda reduction: nn.BCEWithLogitsLoss(reduction=reduction,
                                               pos_weight=nbgrad.tensor([1.0, 2.0, 0.5])),
        lambda reduction: torch.nn.BCEWithLogitsLoss(reduction=reduction,
                                                     pos_weight=torch.tensor([1.0, 2.0, 0.5])),
        float_input((4, 3)), _probabilities((4, 3), 1)),
    "cross_entropy": (nn.CrossEntropyLoss, torch.nn.CrossEntropyLoss, float_input((6, 4)),
                      _classes(6, 4)),
    "cross_entropy_ignore_index": (
        lambda reduction: nn.CrossEntropyLoss(ignore_index=2, reduction=reduction),
        lambda reduction: torch.nn.CrossEntropyLoss(ignore_index=2, reduction=reduction),
        float_input((6, 4)), np.array([0, 2, 1, 3, 2, 1])),
    "cross_entropy_label_smoothing": (
        lambda reduction: nn.CrossEntropyLoss(label_smoothing=0.1, ignore_index=2,
                                              reduction=reduction),
        lambda reduction: torch.nn.CrossEntropyLoss(label_smoothing=0.1, ignore_index=2,
                                                    reduction=reduction),
        float_input((6, 4)), np.array([0, 2, 1, 3, 2, 1])),
    "cross_entropy_weight": (
        lambda reduction: nn.CrossEntropyLoss(nbgrad.tensor(WEIGHTS), label_smoothing=0.2,
                                              reduction=reduction),
        lambda reduction: torch.nn.CrossEntropyLoss(torch.tensor(WEIGHTS), label_smoothing=0.2,
                                                    reduction=reduction),
        float_input((6, 4)), _classes(6, 4)),
    "cross_entropy_spatial": (nn.CrossEntropyLoss, torch.nn.CrossEntropyLoss,
                              float_input((2, 4, 3)), _classes(6, 4).reshape(2, 3)),
    "cross_entropy_probabilities": (nn.CrossEntropyLoss, torch.nn.CrossEntropyLoss,
                                    float_input((3, 4)),
                                    np.array([[0.1, 0.2, 0.3, 0.4]] * 3, np.float32)),
    "nll": (nn.NLLLoss, torch.nn.NLLLoss, float_input((6, 4)), _classes(6, 4)),
    "nll_weight": (lambda reduction: nn.NLLLoss(nbgrad.tensor(WEIGHTS), reduction=reduction),
                   lambda reduction: torch.nn.NLLLoss(torch.tensor(WEIGHTS), reduction=reduction),
                   float_input((6, 4)), _classes(6, 4)),
}


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("name", list(LOSSES))
def test_loss_matches_torch(name, reduction):
    make_nb, make_torch, x, target = LOSSES[name]
    nb_x = nbgrad.tensor(x, requires_grad=True)
    torch_x = torch.tensor(x, requires_grad=True)
    nb_loss = make_nb(reduction=reduction)(nb_x, nbgrad.tensor(target))
    torch_loss = make_torch(reduction=reduction)(torch_x, torch.tensor(target))
    close(nb_loss, torch_loss)
    assert nb_loss.dtype == nbgrad.float32
    upstream = float_input(tuple(torch_loss.shape), seed=5)
    (nb_loss * nbgrad.tensor(upstream)).sum().backward()
    (torch_loss * torch.tensor(upstream)).sum().backward()
    close(nb_x.grad, torch_x.grad)
    # PyTorch divides by the element count with its C++ Tensor/Scalar overload (DivBackward1);
    # its unreduced spatial losses are views or not by rank, nbgrad's all views (ViewBackward0).
    if (x.ndim == 2 or reduction != "none") and (name, reduction) != ("cross_entropy_probabilities",
                                                                        "mean"):
        assert nb_loss.grad_fn.name() == torch_loss.grad_fn.name()


@pytest.mark.parametrize("loss", [F.mse_loss, F.l1_loss, F.binary_cross_entropy_with_logits])
def test_loss_gradient_with_respect_to_target(loss):
    torch_loss = getattr(torch.nn.functional, loss.__name__)
    x, y = float_input((3, 2)), _probabilities((3, 2), 1)
    nb_y, torch_y = nbgrad.tensor(y, requires_grad=True), torch.tensor(y, requires_grad=True)
    loss(nbgrad.tensor(x), nb_y).backward()
    torch_loss(torch.tensor(x), torch_y).backward()
    close(nb_y.grad, torch_y.grad)


def test_losses_keep_float64():
    x = nbgrad.tensor(float_input((3, 4)).astype(np.float64), requires_grad=True)
    loss = F.cross_entropy(x, nbgrad.tensor([0, 1, 3])) + F.mse_loss(x, x.detach() * 2)
    loss.backward()
    assert loss.dtype == nbgrad.float64 and x.grad.dtype == nbgrad.float64


def test_bce_with_logits_is_stable_for_large_logits():
    x = nbgrad.tensor([1000.0, -1000.0, 80.0], requires_grad=True)
    loss = F.binary_cross_entropy_with_logits(x, nbgrad.tensor([0.0, 1.0, 1.0]), reduction="none")
    np.testing.assert_allclose(loss.detach().numpy(), [1000.0, 1000.0, 0.0], atol=1e-6)
    loss.sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), [1.0, -1.0, 0.0], atol=1e-6)


def test_mse_broadcast_warns_like_torch():
    with pytest.warns(UserWarning, match="Using a target size"):
        loss = F.mse_loss(nbgrad.zeros(3, 1), nbgrad.ones(3))
    assert loss.item() == 1.0


# --- the losses and distance modules PyTorch added to those: modules with their options,
# against torch's (values, gradients of every float input, grad_fn names), the legacy
# size_average/reduce, reprs and attributes, and the errors and warnings of bad calls.

SIGN_TARGET = np.array([[1.0, -1.0, 1.0], [-1.0, -1.0, 1.0], [1.0, 1.0, -1.0], [1.0, -1.0, -1.0]],
                       np.float32)
# name: (module(L, reduction), [input arrays; None for a target made in the call], targets(L))
MODULE_LOSSES = {
    "smooth_l1": (lambda L, r: L.nn.SmoothL1Loss(reduction=r, beta=0.5),
                  [float_input((4, 3)), float_input((4, 3), 1)]),
    "huber": (lambda L, r: L.nn.HuberLoss(reduction=r, delta=0.7),
              [float_input((4, 3)), float_input((4, 3), 1)]),
    "kl_div_log_target": (lambda L, r: L.nn.KLDivLoss(reduction=r, log_target=True),
                          [float_input((4, 3)), float_input((4, 3), 1)]),
    "soft_margin": (lambda L, r: L.nn.SoftMarginLoss(reduction=r), [float_input((4, 3))],
                    lambda L: [L.tensor(SIGN_TARGET)]),
    "margin_ranking": (lambda L, r: L.nn.MarginRankingLoss(margin=0.2, reduction=r),
                       [float_input((4, 3)), float_input((4, 3), 1)],
                       lambda L: [L.tensor(SIGN_TARGET)]),
    "hinge_embedding": (lambda L, r: L.nn.HingeEmbeddingLoss(margin=0.5, reduction=r),
                        [float_input((4, 3))], lambda L: [L.tensor(SIGN_TARGET)]),
    "poisson_nll": (lambda L, r: L.nn.PoissonNLLLoss(log_input=False, full=True, reduction=r),
                    [np.abs(float_input((4, 3))) + 0.1, np.abs(float_input((4, 3), 1)) * 3]),
    "gaussian_nll": (lambda L, r: L.nn.GaussianNLLLoss(full=True, eps=1e-3, reduction=r),
                     [float_input((4, 3)), float_input((4, 3), 1), np.abs(float_input((4, 1), 2))]),
    "cosine_embedding": (lambda L, r: L.nn.CosineEmbeddingLoss(margin=0.1, reduction=r),
                         [float_input((4, 3)), float_input((4, 3), 1)],
                         lambda L: [L.tensor([1.0, -1.0, -1.0, 1.0])]),
    "triplet_margin": (lambda L, r: L.nn.TripletMarginLoss(margin=0.5, p=1.5, swap=True,
                                                           reduction=r),
                       [float_input((4, 3)), float_input((4, 3), 1), float_input((4, 3), 2)]),
    "multilabel_soft_margin": (lambda L, r: L.nn.MultiLabelSoftMarginLoss(
        L.tensor([0.5, 2.0, 1.0]), reduction=r), [float_input((4, 3))],
        lambda L: [L.tensor(SIGN_TARGET > 0).float()]),
    "multi_margin": (lambda L, r: L.nn.MultiMarginLoss(p=2, margin=0.8,
                                                       weight=L.tensor([0.5, 2.0, 1.0]),
                                                       reduction=r),
                     [float_input((4, 3))], lambda L: [L.tensor([2, 0, 1, 1])]),
}
# (PyTorch's own node, MultiMarginLossBackward0; nbgrad composes it)
COMPOSED_LOSSES = {"multi_margin"}


def _module_loss_run(L, name, reduction, **legacy):
    make, arrays, *targets = MODULE_LOSSES[name]
    leaves = [L.tensor(a, requires_grad=True) for a in arrays]
    module = make(L, reduction) if not legacy else make(L, "mean")
    if legacy:
        module = type(module)(**legacy)
    out = module(*leaves, *(targets[0](L) if targets else []))
    if out.requires_grad:
        (out * L.tensor(float_input(tuple(out.shape), 5))).sum().backward()
    return module, out, leaves


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("name", list(MODULE_LOSSES))
def test_more_loss_modules_match_torch(name, reduction):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # (KLDivLoss's 'mean'; compared below)
        _, out, leaves = _module_loss_run(nbgrad, name, reduction)
        _, t_out, t_leaves = _module_loss_run(torch, name, reduction)
    close(out, t_out)
    assert out.dtype == nbgrad.float32
    for leaf, t_leaf in zip(leaves, t_leaves):
        close(leaf.grad, t_leaf.grad)
    if name not in COMPOSED_LOSSES:
        assert out.grad_fn.name() == t_out.grad_fn.name()


@pytest.mark.parametrize("legacy", [{"size_average": False}, {"reduce": False},
                                    {"size_average": True, "reduce": True}])
@pytest.mark.parametrize("module", ["MSELoss", "SmoothL1Loss", "KLDivLoss", "SoftMarginLoss",
                                    "MultiMarginLoss", "NLLLoss"])
def test_loss_modules_take_the_legacy_size_average_and_reduce(module, legacy):
    made = {}
    for L in (nbgrad, torch):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            made[L] = getattr(L.nn, module)(**legacy)
        made[L] = (made[L].reduction, [str(w.message) for w in caught])
    assert made[nbgrad] == made[torch]


MODULES_WITH_OPTIONS = [
    ("SmoothL1Loss", {"beta": 0.5}), ("HuberLoss", {"delta": 2}), ("KLDivLoss", {"log_target": True}),
    ("SoftMarginLoss", {"reduction": "sum"}), ("MarginRankingLoss", {"margin": 0.5}),
    ("HingeEmbeddingLoss", {"margin": 2.0}), ("PoissonNLLLoss", {"log_input": False, "eps": 1e-3}),
    ("GaussianNLLLoss", {"full": True, "eps": 0.1}), ("CosineEmbeddingLoss", {"margin": -0.5}),
    ("TripletMarginLoss", {"margin": 2.0, "p": 1, "eps": 0.1, "swap": True}),
    ("MultiLabelSoftMarginLoss", {"reduction": "none"}), ("MultiMarginLoss", {"p": 2, "margin": 3}),
    ("CosineSimilarity", {"dim": 0, "eps": 1e-3}), ("PairwiseDistance", {"p": 1.0, "keepdim": True}),
    ("MSELoss", {"reduction": "bad"}),  # refused when called, as PyTorch's
]


@pytest.mark.parametrize("name, options", MODULES_WITH_OPTIONS, ids=[m for m, _ in MODULES_WITH_OPTIONS])
def test_loss_and_distance_modules_hold_torchs_attributes_and_print_as_torch(name, options):
    for kwargs in ({}, options):
        mine, theirs = getattr(nn, name)(**kwargs), getattr(torch.nn, name)(**kwargs)
        assert repr(mine) == repr(theirs)
        public = [{k: v for k, v in vars(m).items() if not k.startswith("_") and k != "training"}
                  for m in (mine, theirs)]
        assert public[0] == public[1]


def test_distance_modules_match_torch():
    a, b = float_input((4, 3)), float_input((4, 3), 1)
    for make in (lambda L: L.nn.PairwiseDistance(p=1.5, eps=1e-3, keepdim=True),
                 lambda L: L.nn.CosineSimilarity(dim=0, eps=1e-3)):
        outs = {}
        for L in (nbgrad, torch):
            x = L.tensor(a, requires_grad=True)
            out = make(L)(x, L.tensor(b))
            out.sum().backward()
            outs[L] = (out, x.grad)
        close(*outs[nbgrad][:1], outs[torch][0])
        close(outs[nbgrad][1], outs[torch][1])


def _zeros(L, *shape, **kw):
    return L.zeros(*shape, **kw)


# Bad calls of the new functions: PyTorch's exception type and message (nbgrad prints its
# Size as nbgrad.Size, compared as torch.Size).
BAD_CALLS = {
    "smooth_l1_negative_beta": lambda L: L.nn.functional.smooth_l1_loss(_zeros(L, 2), _zeros(L, 2), beta=-1),
    "smooth_l1_reduction": lambda L: L.nn.functional.smooth_l1_loss(_zeros(L, 2), _zeros(L, 2), reduction="avg"),
    "smooth_l1_of_int64": lambda L: L.nn.functional.smooth_l1_loss(_zeros(L, 2, dtype=L.int64),
                                                                   _zeros(L, 2, dtype=L.int64)),
    "mse_weight_size": lambda L: L.nn.functional.mse_loss(_zeros(L, 2, 3), _zeros(L, 2, 3),
                                                          weight=_zeros(L, 3)),
    "l1_weight_reduction": lambda L: L.nn.functional.l1_loss(_zeros(L, 2), _zeros(L, 2), weight=_zeros(L, 2),
                                                             reduction="avg"),
    "huber_zero_delta": lambda L: L.nn.functional.huber_loss(_zeros(L, 2), _zeros(L, 2), delta=0),
    "huber_weight_size": lambda L: L.nn.functional.huber_loss(_zeros(L, 2, 3), _zeros(L, 2, 3),
                                                              weight=_zeros(L, 3)),
    "huber_weight_reduction": lambda L: L.nn.functional.huber_loss(
        _zeros(L, 2), _zeros(L, 2), weight=_zeros(L, 2), reduction="avg"),
    "huber_int_input": lambda L: L.nn.functional.huber_loss(_zeros(L, 2, dtype=L.int64), _zeros(L, 2)),
    "huber_module_delta": lambda L: L.nn.HuberLoss(delta="1"),
    "soft_margin_target_requires_grad": lambda L: L.nn.functional.soft_margin_loss(
        _zeros(L, 2), _zeros(L, 2, requires_grad=True)),
    "soft_margin_input_broadcast": lambda L: L.nn.functional.soft_margin_loss(_zeros(L, 3), _zeros(L, 2, 3)),
    "soft_margin_int_input": lambda L: L.nn.functional.soft_margin_loss(_zeros(L, 2, dtype=L.int64),
                                                                        _zeros(L, 2, dtype=L.int64)),
    "kl_div_integers": lambda L: L.nn.functional.kl_div(_zeros(L, 2), _zeros(L, 2, dtype=L.int64),
                                                        reduction="sum"),
    "kl_div_reduction": lambda L: L.nn.functional.kl_div(_zeros(L, 2), _zeros(L, 2), reduction="avg"),
    "poisson_reduction": lambda L: L.nn.functional.poisson_nll_loss(_zeros(L, 2), _zeros(L, 2), reduction="avg"),
    "gaussian_negative_var": lambda L: L.nn.functional.gaussian_nll_loss(_zeros(L, 2), _zeros(L, 2), -1.0),
    "gaussian_negative_var_tensor": lambda L: L.nn.functional.gaussian_nll_loss(
        _zeros(L, 2), _zeros(L, 2), L.tensor([1.0, -1.0])),
    "gaussian_var_size": lambda L: L.nn.functional.gaussian_nll_loss(_zeros(L, 2, 3), _zeros(L, 2, 3),
                                                                     L.ones(2, 2)),
    "gaussian_reduction": lambda L: L.nn.functional.gaussian_nll_loss(_zeros(L, 2), _zeros(L, 2), L.ones(2),
                                                                      reduction="avg"),
    "margin_ranking_dims": lambda L: L.nn.functional.margin_ranking_loss(_zeros(L, 2), _zeros(L, 1, 2),
                                                                         _zeros(L, 2)),
    "cosine_embedding_2d_target": lambda L: L.nn.functional.cosine_embedding_loss(
        _zeros(L, 2, 3), _zeros(L, 2, 3), _zeros(L, 2, 1)),
    "cosine_embedding_1d_target_1d_inputs": lambda L: L.nn.functional.cosine_embedding_loss(
        _zeros(L, 3), _zeros(L, 3), _zeros(L, 2)),
    "cosine_embedding_0d_target": lambda L: L.nn.functional.cosine_embedding_loss(
        _zeros(L, 2, 3), _zeros(L, 2, 3), L.tensor(1.0)),
    "triplet_margin": lambda L: L.nn.functional.triplet_margin_loss(_zeros(L, 2), _zeros(L, 2), _zeros(L, 2),
                                                                    margin=0.0),
    "triplet_dims": lambda L: L.nn.functional.triplet_margin_loss(_zeros(L, 2, 3), _zeros(L, 3),
                                                                  _zeros(L, 2, 3)),
    "triplet_module_margin": lambda L: L.nn.TripletMarginLoss(margin=-1.0),
    "multilabel_0d": lambda L: L.nn.functional.multilabel_soft_margin_loss(L.tensor(1.0), L.tensor(1.0)),
    "multilabel_reduction": lambda L: L.nn.functional.multilabel_soft_margin_loss(
        _zeros(L, 2, 3), _zeros(L, 2, 3), reduction="avg"),
    "multi_margin_p": lambda L: L.nn.functional.multi_margin_loss(_zeros(L, 2, 3), L.tensor([0, 1]), p=3),
    "multi_margin_weight_dims": lambda L: L.nn.functional.multi_margin_loss(
        _zeros(L, 2, 3), L.tensor([0, 1]), weight=L.ones(1, 3)),
    "multi_margin_weight_size": lambda L: L.nn.functional.multi_margin_loss(
        _zeros(L, 2, 3), L.tensor([0, 1]), weight=L.ones(2)),
    "multi_margin_3d": lambda L: L.nn.functional.multi_margin_loss(_zeros(L, 2, 3, 1), L.tensor([0, 1])),
    "multi_margin_target_size": lambda L: L.nn.functional.multi_margin_loss(_zeros(L, 2, 3), L.tensor([0])),
    "multi_margin_target_dtype": lambda L: L.nn.functional.multi_margin_loss(_zeros(L, 2, 3),
                                                                             L.tensor([0.0, 1.0])),
    "multi_margin_target_range": lambda L: L.nn.functional.multi_margin_loss(_zeros(L, 2, 3), L.tensor([0, 3])),
    "multi_margin_int_input": lambda L: L.nn.functional.multi_margin_loss(_zeros(L, 2, 3, dtype=L.int64),
                                                                          L.tensor([0, 1])),
    "multi_margin_weight_dtype": lambda L: L.nn.functional.multi_margin_loss(
        _zeros(L, 2, 3), L.tensor([0, 1]), weight=L.ones(3, dtype=L.float64)),
    "multi_margin_weight_requires_grad": lambda L: L.nn.functional.multi_margin_loss(
        _zeros(L, 2, 3), L.tensor([0, 1]), weight=L.ones(3, requires_grad=True)),
    "multi_margin_module_p": lambda L: L.nn.MultiMarginLoss(p=3),
    "multi_margin_module_weight": lambda L: L.nn.MultiMarginLoss(weight=L.ones(2, 2)),
    "cosine_similarity_of_int64": lambda L: L.nn.functional.cosine_similarity(
        _zeros(L, 2, 3, dtype=L.int64), _zeros(L, 2, 3, dtype=L.int64)),
    "dist_of_int64": lambda L: L.dist(_zeros(L, 3, dtype=L.int64), _zeros(L, 3, dtype=L.int64)),
    "cdist_1d": lambda L: L.cdist(_zeros(L, 3), _zeros(L, 2, 3)),
    "cdist_columns": lambda L: L.cdist(_zeros(L, 2, 3), _zeros(L, 2, 4)),
    "cdist_negative_p": lambda L: L.cdist(_zeros(L, 2, 3), _zeros(L, 2, 3), p=-1),
    "cdist_of_int64": lambda L: L.cdist(_zeros(L, 2, 3, dtype=L.int64), _zeros(L, 2, 3, dtype=L.int64)),
    "cdist_mixed_dtypes": lambda L: L.cdist(_zeros(L, 2, 3), _zeros(L, 2, 3, dtype=L.float64)),
    "cdist_compute_mode": lambda L: L.cdist(_zeros(L, 2, 3), _zeros(L, 2, 3), compute_mode="mm"),
    "normalize_out_requires_grad": lambda L: L.nn.functional.normalize(
        _zeros(L, 2, 3, requires_grad=True), out=_zeros(L, 2, 3)),
    "loss_module_reduction": lambda L: L.nn.SmoothL1Loss(reduction="avg")(_zeros(L, 2), _zeros(L, 2)),
}


@pytest.mark.parametrize("name", list(BAD_CALLS))
def test_bad_calls_of_the_new_losses_raise_torchs_errors(name):
    raised = {}
    for L in (nbgrad, torch):
        with pytest.raises(Exception) as caught, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            BAD_CALLS[name](L)
        raised[L] = (type(caught.value).__name__, str(caught.value).replace("nbgrad.Size", "torch.Size"))
    assert raised[nbgrad] == raised[torch]


WARNING_CALLS = {
    "smooth_l1_broadcast": lambda L: L.nn.functional.smooth_l1_loss(L.zeros(3, 1), L.ones(3)),
    "huber_broadcast": lambda L: L.nn.functional.huber_loss(L.zeros(3, 1), L.ones(3)),
    "kl_div_mean": lambda L: L.nn.functional.kl_div(L.zeros(3), L.ones(3)),
    "elementwise_mean": lambda L: L.nn.functional.soft_margin_loss(L.zeros(3), L.ones(3),
                                                                   reduction="elementwise_mean"),
    "legacy_reduce": lambda L: L.nn.functional.poisson_nll_loss(L.zeros(3), L.ones(3), reduce=False),
}


@pytest.mark.parametrize("name", list(WARNING_CALLS))
def test_the_new_losses_warn_as_torch(name):
    results = {}
    for L in (nbgrad, torch):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            out = WARNING_CALLS[name](L)
        results[L] = ([(w.category.__name__, str(w.message).replace("nbgrad.Size", "torch.Size"))
                       for w in caught], out.detach().numpy().tolist())
    assert results[nbgrad] == results[torch]



# --- bad input -----------------------------------------------------------------------------

def test_cross_entropy_label_out_of_range():
    with pytest.raises(IndexError, match="Target 12 is out of bounds"):
        nn.CrossEntropyLoss()(nbgrad.randn(2, 10), nbgrad.tensor([1, 12]))
    with pytest.raises(IndexError, match="Target -1 is out of bounds"):
        F.nll_loss(nbgrad.randn(2, 10), nbgrad.tensor([-1, 0]))


def test_loss_shape_mismatch():
    with pytest.raises(ValueError, match=r"Expected input batch_size \(2\) to match target batch_size \(3\)"):
        nn.CrossEntropyLoss()(nbgrad.randn(2, 4), nbgrad.tensor([0, 1, 2]))
    with pytest.raises(ValueError, match="Target size .* must be the same as input size"):
        nn.BCEWithLogitsLoss()(nbgrad.randn(3, 1), nbgrad.rand(3))
    with pytest.raises(ValueError, match="Using a target size .* different to the input size"):
        nn.BCELoss()(nbgrad.rand(3, 1), nbgrad.rand(3))
    with pytest.raises(RuntimeError, match="The size of tensor a"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        nn.MSELoss()(nbgrad.randn(3), nbgrad.randn(4))


def test_load_state_dict_errors_name_the_problem():
    model = nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 1))
    before = numpy_state(model)
    state = numpy_state(model)
    state["0.weight"] = np.zeros((3, 3), np.float32)
    state["extra"] = np.zeros(1)
    del state["2.bias"]
    with pytest.raises(RuntimeError, match="Error.s. in loading state_dict for Sequential") as info:
        model.load_state_dict(state)
    message = str(info.value)
    assert 'Missing key(s) in state_dict: "2.bias"' in message
    assert 'Unexpected key(s) in state_dict: "extra"' in message
    assert "size mismatch for 0.weight: copying a param with shape nbgrad.Size([3, 3])" in message
    # Nothing was written.
    for key, value in numpy_state(model).items():
        assert np.array_equal(value, before[key])
    # Non-strict loading still rejects a wrong shape but reports key mismatches.
    with pytest.raises(RuntimeError, match="size mismatch for 0.weight"):
        model.load_state_dict(state, strict=False)
    del state["0.weight"]
    result = model.load_state_dict(state, strict=False)
    assert result.missing_keys == ["0.weight", "2.bias"] and result.unexpected_keys == ["extra"]


# --- Module API ------------------------------------------------------------------------------

class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(4, 8), nn.Tanh())
        self.head = nn.Linear(8, 2)
        self.register_buffer("scale", nbgrad.ones(2))
        self.not_a_parameter = nbgrad.zeros(3)

    def forward(self, x):
        return self.head(self.body(x)) * self.scale


class TorchNet(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.body = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh())
        self.head = torch.nn.Linear(8, 2)
        self.register_buffer("scale", torch.ones(2))

    def forward(self, x):
        return self.head(self.body(x)) * self.scale


def test_module_registration_and_traversal():
    model, reference = Net(), TorchNet()
    assert [n for n, _ in model.named_parameters()] == [n for n, _ in reference.named_parameters()]
    assert list(model.state_dict()) == list(reference.state_dict())
    assert [n for n, _ in model.named_modules()] == [n for n, _ in reference.named_modules()]
    assert [n for n, _ in model.named_buffers()] == ["scale"]
    assert len(list(model.children())) == 2 and len(list(model.modules())) == 5
    assert all(isinstance(p, nn.Parameter) for p in model.parameters())
    import types
    assert isinstance(model.parameters(), types.GeneratorType)
    assert repr(model) == repr(reference).replace("TorchNet", "Net")


def test_replacing_a_submodule_reregisters_it():
    model = Net()
    model.head = nn.Linear(8, 5)
    assert [n for n, _ in model.named_parameters()][-2:] == ["head.weight", "head.bias"]
    assert model.head.out_features == 5
    model.head = None
    assert [n for n, _ in model.named_parameters()] == ["body.0.weight", "body.0.bias"]


def test_train_eval_zero_grad_requires_grad_apply():
    model = Net()
    model.eval()
    assert not any(m.training for m in model.modules())
    model.train()
    assert all(m.training for m in model.modules())
    model(nbgrad.randn(2, 4)).sum().backward()
    assert all(p.grad is not None for p in model.parameters())
    model.zero_grad(set_to_none=False)
    assert all(not p.grad.numpy().any() for p in model.parameters())
    model.zero_grad()
    assert all(p.grad is None for p in model.parameters())
    model.requires_grad_(False)
    assert not any(p.requires_grad for p in model.parameters())
    seen = []
    model.apply(lambda m: seen.append(type(m).__name__))
    assert seen == ["Linear", "Tanh", "Sequential", "Linear", "Net"]


def test_parameter_is_a_tensor_subclass():
    p = nn.Parameter(nbgrad.ones(2))
    assert isinstance(p, nbgrad.Tensor) and p.requires_grad and p.is_leaf
    assert repr(p) == "Parameter containing:\ntensor([1., 1.], requires_grad=True)"
    assert not nn.Parameter(nbgrad.ones(2), requires_grad=False).requires_grad
    clone = copy.deepcopy(p)
    assert isinstance(clone, nn.Parameter) and clone is not p


# --- state_dict round trips ------------------------------------------------------------------

def test_state_dict_round_trips_between_nbgrad_and_torch():
    x = float_input((3, 4))
    reference = TorchNet()
    model = Net()
    copy_weights(reference, model)  # torch -> nbgrad
    close(model(nbgrad.tensor(x)), reference(torch.tensor(x)))
    nbgrad.manual_seed(1)
    other = Net()
    other_reference = TorchNet()
    copy_weights(other, other_reference)  # nbgrad -> torch
    close(other(nbgrad.tensor(x)), other_reference(torch.tensor(x)))
    for key, value in numpy_state(other).items():
        assert np.array_equal(value, other_reference.state_dict()[key].numpy())
    # nbgrad tensors are accepted as values too, and values are copied, not aliased.
    third = Net()
    third.load_state_dict(other.state_dict())
    third.head.weight.data._data[...] = 0
    assert other.head.weight.detach().numpy().any()


# --- freezing ----------------------------------------------------------------------------------

def test_frozen_model_with_new_head_only_head_trains():
    nbgrad.manual_seed(0)
    model = Net()
    for param in model.parameters():
        param.requires_grad = False
    frozen = numpy_state(model)
    model.head = nn.Linear(8, 2)  # the new head, trainable
    head_before = numpy_state(model.head)
    optimizer = nbgrad.optim.Adam(model.parameters(), lr=0.1)
    x, y = nbgrad.randn(16, 4), nbgrad.randint(0, 2, (16,))
    for _ in range(5):
        optimizer.zero_grad()
        nn.CrossEntropyLoss()(model(x), y).backward()
        optimizer.step()
    after = numpy_state(model)
    for key in ("body.0.weight", "body.0.bias", "scale"):
        assert np.array_equal(after[key], frozen[key]), key
    assert model.body[0].weight.grad is None
    for key, value in numpy_state(model.head).items():
        assert not np.array_equal(value, head_before[key])


# --- activations: in place, reprs, bad arguments ------------------------------------------

ACTIVATION_REPRS = [
    lambda nn: nn.GELU(), lambda nn: nn.GELU("tanh"), lambda nn: nn.SiLU(),
    lambda nn: nn.SiLU(True), lambda nn: nn.LeakyReLU(), lambda nn: nn.LeakyReLU(0.2, True),
    lambda nn: nn.ELU(), lambda nn: nn.ELU(0.5, True), lambda nn: nn.Hardtanh(),
    lambda nn: nn.Hardtanh(-2, 3.0, True), lambda nn: nn.ReLU6(), lambda nn: nn.ReLU6(True),
    lambda nn: nn.ReLU(True), lambda nn: nn.Unflatten(1, (2, 3)),
    lambda nn: nn.SELU(), lambda nn: nn.SELU(True), lambda nn: nn.CELU(),
    lambda nn: nn.CELU(0.5, True), lambda nn: nn.Mish(True), lambda nn: nn.Hardswish(True),
    lambda nn: nn.Hardsigmoid(True), lambda nn: nn.LogSigmoid(), lambda nn: nn.Softsign(),
    lambda nn: nn.Tanhshrink(), lambda nn: nn.Softshrink(), lambda nn: nn.Hardshrink(1),
    lambda nn: nn.Threshold(0.1, 20), lambda nn: nn.Threshold(1, 2.5, True),
    lambda nn: nn.Softmin(), lambda nn: nn.Softmin(1), lambda nn: nn.Softmax2d(),
    lambda nn: nn.GLU(), lambda nn: nn.GLU(0), lambda nn: nn.PReLU(),
    lambda nn: nn.PReLU(3, 0.1), lambda nn: nn.RReLU(), lambda nn: nn.RReLU(0.1, 0.3, True),
]


def test_prelu_parameter_matches_torch():
    made = [library.PReLU(3, init=0.1) for library in (nn, torch.nn)]
    assert [list(m.state_dict()) for m in made] == [["weight"], ["weight"]]
    assert [(m.num_parameters, m.init) for m in made] == [(3, 0.1), (3, 0.1)]
    close(made[0].weight, made[1].weight)
    assert made[0].weight.requires_grad
    assert nn.PReLU(dtype=nbgrad.float64).weight.dtype == nbgrad.float64


def test_activation_reprs_match_torch():
    assert [repr(make(nn)) for make in ACTIVATION_REPRS] == \
        [repr(make(torch.nn)) for make in ACTIVATION_REPRS]


INPLACE = {
    "leaky_relu": lambda F, y: F.leaky_relu(y, 0.2, inplace=True),  # LeakyReluBackward1
    "elu": lambda F, y: F.elu(y, 0.5, inplace=True),  # EluBackward1
    "relu6": lambda F, y: F.relu6(y, inplace=True),
    "silu": lambda F, y: F.silu(y, inplace=True),
    "relu": lambda F, y: F.relu(y, inplace=True),
    "selu": lambda F, y: F.selu(y, inplace=True),  # EluBackward1
    "selu_": lambda F, y: F.selu_(y),
    "celu": lambda F, y: F.celu(y, 0.5, inplace=True),  # CeluBackward1
    "celu_": lambda F, y: F.celu_(y, 2.0),
    "threshold": lambda F, y: F.threshold(y, 0.25, -1.0, inplace=True),  # ThresholdBackward1
    "threshold_": lambda F, y: F.threshold_(y, 0.5, 3.0),
    "rrelu_eval": lambda F, y: F.rrelu(y, 0.1, 0.3, inplace=True),  # RreluWithNoiseBackward1
    "rrelu_": lambda F, y: F.rrelu_(y),
    "hardswish": lambda F, y: F.hardswish(y, inplace=True),  # HardswishBackward0
    "hardsigmoid": lambda F, y: F.hardsigmoid(y, inplace=True),
    "mish": lambda F, y: F.mish(y, inplace=True),
    # Negative slopes: torch's nodes that compute the gradient from the result refuse them.
    "leaky_relu_negative": lambda F, y: F.leaky_relu_(y, -0.2),
    "elu_negative": lambda F, y: F.elu(y, -0.5, inplace=True),
    "celu_negative": lambda F, y: F.celu_(y, -2.0),
    "rrelu_eval_negative": lambda F, y: F.rrelu(y, -0.3, -0.1, inplace=True),
    "rrelu_train_negative": lambda F, y: F.rrelu_(y, -0.3, -0.1, training=True),
}


def _inplace_activation(library, functional, name, values):
    """The in-place activation `name` on a non-leaf: its result and node, then the leaf's
    gradient (or the error) of a backward, and of one more after a later write into the
    result (which torch's nodes that save the result refuse: EluBackward1, ...)."""
    library.manual_seed(0)
    x = library.tensor(values, requires_grad=True)
    y = x * 1.0
    out = INPLACE[name](functional, y)
    assert out is y
    outcome = [out.detach().numpy().copy(), type(out.grad_fn).__name__]
    for _ in range(2):
        try:
            out.sum().backward(retain_graph=True)
            outcome.append(x.grad.numpy().copy())
        except RuntimeError as error:
            # (nbgrad names the tensor and its node as nbgrad prints them)
            outcome.append("modified" if "modified by an inplace operation" in str(error)
                           else str(error))
        x.grad = None
        out.mul_(2.0)
    return outcome


@pytest.mark.parametrize("name", list(INPLACE))
def test_inplace_activation_matches_torch(name, monkeypatch):
    values = np.array([-1.0, 0.0, 0.5, 7.0], np.float32)
    expected = _inplace_activation(torch, torch.nn.functional, name, values)
    for deferral in (False, True):
        monkeypatch.setattr(nbgrad.fuse.deferred, "enabled", deferral)
        outcome = _inplace_activation(nbgrad, F, name, values)
        assert outcome[1] == expected[1]
        for got, want in zip(outcome, expected):
            if isinstance(want, str):
                assert got == want
            else:
                np.testing.assert_allclose(got, want, rtol=RTOL, atol=ATOL)


def _rrelu_training(L, dtype, values):
    """rrelu while training, seeded: out of place, through torch.rrelu with a generator,
    in place, and nn.RReLU in train mode; the results and the leaf gradients."""
    L.manual_seed(7)
    x = L.tensor(values, dtype=dtype, requires_grad=True)
    out = L.nn.functional.rrelu(x * 1, 0.1, 0.4, training=True)
    generator = L.Generator().manual_seed(3)
    drawn = L.rrelu(x * 1, 0.2, 0.3, True, generator=generator)
    written = L.nn.functional.rrelu_(x * 1, training=True)
    module = L.nn.RReLU(0.05, 0.5)(x * 1)
    results = [out, drawn, written, module]
    sum((r * (i + 1)).sum() for i, r in enumerate(results)).backward()
    return results, [type(r.grad_fn).__name__ for r in results], x.grad


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_rrelu_training_draws_torchs_slopes(dtype):
    """The slopes drawn while training are torch's, number for number (one uniform double per
    element at or below 0, from the generator); the gradient is the slope (1 above 0, and at
    NaN)."""
    values = np.array([[-1.5, 0.0, 2.0, -0.0], [np.nan, -3.0, 0.5, -np.inf]])
    nb, reference = (_rrelu_training(L, getattr(L, dtype), values) for L in (nbgrad, torch))
    for nb_result, torch_result in zip(nb[0], reference[0]):
        np.testing.assert_array_equal(nb_result.detach().numpy(), torch_result.detach().numpy())
    assert nb[1] == reference[1] == ["RreluWithNoiseBackward0", "RreluWithNoiseBackward0",
                                     "RreluWithNoiseBackward1", "RreluWithNoiseBackward0"]
    np.testing.assert_array_equal(nb[2].numpy(), reference[2].numpy())


# Bad arguments of the activations: PyTorch's exception types and messages.
ACTIVATION_ERRORS = [
    lambda L: L.nn.functional.softshrink(L.ones(2), -0.5),
    lambda L: L.nn.functional.softshrink(L.ones(2, dtype=L.float64), float("nan")),
    lambda L: L.nn.functional.softshrink(L.ones(2, dtype=L.float16), 1e6),
    lambda L: L.nn.functional.softshrink(L.ones(2, dtype=L.int64)),
    lambda L: L.nn.functional.glu(L.ones(3, 5)),
    lambda L: L.nn.functional.glu(L.ones(3, 4), 0),
    lambda L: L.nn.functional.glu(L.ones(3, 4), 2),
    lambda L: L.nn.functional.glu(L.tensor(1.0)),
    lambda L: L.nn.functional.glu(L.ones(2, dtype=L.int64)),
    lambda L: L.nn.functional.prelu(L.ones(3, 5), L.ones(3)),
    lambda L: L.nn.functional.prelu(L.ones(3, 5), L.ones(1, 5)),
    lambda L: L.nn.functional.prelu(L.ones(3, 5), L.ones(5, dtype=L.float64)),
    lambda L: L.prelu(L.tensor(1.0), L.ones(5)),
    lambda L: L.prelu(L.ones(4), L.ones(4)),
    lambda L: L.prelu(L.ones(2, dtype=L.int64), L.ones(1, dtype=L.int64)),
    lambda L: L.nn.functional.rrelu(L.ones(2), 0.5, 0.1),
    lambda L: L.rrelu(L.ones(2), 0.5, 0.1, True),
    lambda L: L.nn.functional.rrelu(L.ones(2, dtype=L.int64)),
    lambda L: L.nn.functional.rrelu(L.ones(2, dtype=L.int64), training=True),
    lambda L: L.nn.functional.rrelu(L.ones(2, dtype=L.float16), training=True),
    lambda L: L.nn.Softmax2d()(L.ones(3, 4)),
    lambda L: L.nn.functional.celu(L.ones(2), alpha=0.0),
    lambda L: L.selu(L.ones(2, dtype=L.int64)),
    lambda L: L.threshold(L.tensor([True]), 0, 1),
    lambda L: L.nn.functional.hardswish(L.ones(2, dtype=L.int64)),
    lambda L: L.nn.functional.hardsigmoid(L.ones(2, dtype=L.int64)),
    lambda L: L.nn.functional.logsigmoid(L.ones(2, dtype=L.int64)),
    lambda L: L.nn.functional.mish(L.ones(2, dtype=L.int64)),
    lambda L: L.hardshrink(L.ones(2, dtype=L.int64)),
    lambda L: L.nn.functional.threshold(L.ones(2, requires_grad=True), 0.0, 1.0, inplace=True),
]


def _error(call, library):
    try:
        call(library)
    except Exception as error:  # noqa: BLE001
        return type(error).__name__, str(error)
    return None


def test_activation_errors_match_torch():
    assert [_error(call, nbgrad) for call in ACTIVATION_ERRORS] == \
        [_error(call, torch) for call in ACTIVATION_ERRORS]


@pytest.mark.parametrize("name", ["softmin", "softmax", "log_softmax"])
def test_softmax_family_without_dim_warns_as_torch(name):
    for ndim, dim in ((1, 0), (2, 1), (3, 0), (4, 1)):
        x = np.random.default_rng(ndim).standard_normal((2,) * ndim)
        results = []
        for library in (nbgrad, torch):
            with pytest.warns(UserWarning, match=f"Implicit dimension choice for {name}"):
                results.append(getattr(library.nn.functional, name)(library.tensor(x)))
        close(*results)
        close(results[0], getattr(torch.nn.functional, name)(torch.tensor(x), dim))
    # (torch.softmax itself takes no implicit dim)
    for library in (nbgrad, torch):
        with pytest.raises(TypeError, match='missing 1 required positional arguments: "dim"'):
            getattr(library, name if name != "softmin" else "softmax")(library.ones(2))


# --- containers -------------------------------------------------------------------------------

def _container_session(L):
    """The same calls on either library's containers: reprs, names and errors, as text."""
    nn = L.nn
    seen = []

    def attempt(call):
        try:
            return repr(call())
        except Exception as error:  # noqa: BLE001
            return f"{type(error).__name__}: {error}"

    layers = nn.ModuleList([nn.Linear(2, 2) for _ in range(3)] + [nn.ReLU()])
    seen += [repr(layers), repr(nn.ModuleList()), repr(layers[1:3]), type(layers[1:3]).__name__]
    joined = layers + nn.ModuleList([nn.Tanh()])
    seen += [[name for name, _ in joined.named_parameters()], len(joined)]
    layers.insert(1, nn.Tanh())
    layers.extend([nn.Sigmoid()])
    layers.append(nn.Identity())
    del layers[0]
    layers[0] = nn.ELU()
    seen += [repr(layers.pop(1)), repr(layers), [name for name, _ in layers.named_modules()]]
    seen += [attempt(lambda: layers[10]), attempt(lambda: layers.append(3)),
             attempt(lambda: layers.extend(3))]
    heads = nn.ModuleDict({"b": nn.Linear(1, 1), "a": nn.ReLU()})
    heads["c"] = nn.Tanh()
    heads.update({"d": nn.Sigmoid()})
    heads.update([("e", nn.ReLU())])
    heads["a"] = nn.SiLU()  # keeps its place
    heads.update(nn.ModuleDict({"f": nn.Tanh(), "b0": nn.ReLU()}))  # in its order
    seen += [repr(heads.pop("b")), repr(heads), list(heads), "a" in heads, len(heads),
             attempt(lambda: heads["zz"])]
    scales = nn.ParameterList([nn.Parameter(L.ones(3)), nn.Parameter(L.zeros(2, 2, dtype=L.float64))])
    scales.append(L.ones(1))  # a tensor becomes a Parameter
    seen += [repr(scales), type(scales[2]).__name__, scales[2].requires_grad,
             repr(nn.ParameterList([nn.Parameter(L.ones(3))])), repr(nn.ParameterList())]
    named = nn.ParameterDict({"w": nn.Parameter(L.ones(2)), "b": L.zeros(1)})  # sorted
    named["a"] = L.ones(3, 2)
    named["w"] = L.zeros(2)
    named.update(nn.ParameterDict(OrderedDict([("z", L.ones(1)), ("c", L.ones(2))])))
    seen += [repr(named), [name for name, _ in named.named_parameters()]]
    model = _stack(nn)
    seen += [list(model.state_dict()), repr(model), len(list(model.parameters()))]
    seen += [attempt(lambda: nn.Unflatten(1, 3)), attempt(lambda: nn.Unflatten(1, (2, 3.0))),
             attempt(lambda: nn.Unflatten(1, (2, 4))(L.zeros(4, 6)))]
    return [str(item).replace("torch", "LIBRARY").replace("nbgrad", "LIBRARY") for item in seen]


def test_containers_match_torch():
    assert _container_session(nbgrad) == _container_session(torch)


def test_optimizer_updates_parameters_held_in_containers():
    nbgrad.manual_seed(0)
    model = _stack(nn)
    before = numpy_state(model)
    optimizer = nbgrad.optim.SGD(model.parameters(), lr=0.1)
    model(nbgrad.randn(5, 4)).sum().backward()
    optimizer.step()
    after = numpy_state(model)
    assert len(after) == 8 and all(not np.array_equal(before[key], after[key]) for key in after)


@pytest.mark.parametrize("loss", ["mse_loss", "l1_loss", "binary_cross_entropy_with_logits"])
def test_loss_of_float32_input_and_float64_target_computes_in_float64(loss):
    x, y = float_input((3, 4)), _probabilities((3, 4), 1).astype(np.float64)
    nb_x, torch_x = nbgrad.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
    nb_loss = getattr(F, loss)(nb_x, nbgrad.tensor(y))
    torch_loss = getattr(torch.nn.functional, loss)(torch_x, torch.tensor(y))
    nb_loss.backward()
    torch_loss.backward()
    assert nb_loss.dtype == nbgrad.float64 and nb_x.grad.dtype == nbgrad.float32
    close(nb_loss, torch_loss)
    close(nb_x.grad, torch_x.grad)


@pytest.mark.parametrize("deferred_on", [False, True])
@pytest.mark.parametrize("norm_type", [2.0, 1.0, float("inf")])
def test_embedding_max_norm_renormalizes_the_read_rows_as_torch(norm_type, deferred_on):
    """max_norm rescales the rows the indices read, in place, before the lookup (PyTorch's
    embedding_renorm_); with scale_grad_by_freq the gradient of a row is divided by its
    count. Over steps of SGD, in a loop past FUSE_AFTER (the lookups then defer)."""
    from nbgrad.fuse import deferred
    ids = np.array([[0, 2, 2], [3, 2, 0]])
    weights = [L.nn.Embedding(5, 3, max_norm=1.5, norm_type=norm_type, scale_grad_by_freq=True)
               for L in (nbgrad, torch)]
    with torch.no_grad():
        weights[1].weight.copy_(torch.tensor(float_input((5, 3)) * 3))
    weights[0].load_state_dict({"weight": nbgrad.tensor(weights[1].weight.detach().numpy())})
    previous = deferred.enabled
    deferred.enabled = deferred_on
    try:
        for step in range(deferred.FUSE_AFTER + 3):
            outputs = []
            for L, module in zip((nbgrad, torch), weights):
                module.zero_grad()
                out = module(L.tensor(ids))
                (out * L.tensor(float_input((2, 3, 3), seed=step))).sum().backward()
                with L.no_grad():
                    module.weight -= 0.5 * module.weight.grad
                outputs.append(out)
            close(outputs[0], outputs[1])
            close(weights[0].weight, weights[1].weight)
    finally:
        deferred.enabled = previous


def test_bilinear_module_matches_torch():
    """nn.Bilinear's initialisation after the same seed, its repr, and its output and
    gradients (batched, unbatched, without bias) in float64."""
    def run(L):
        L.manual_seed(4)
        layer, no_bias = L.nn.Bilinear(3, 4, 2, dtype=L.float64), L.nn.Bilinear(3, 1, 5, bias=False)
        x1 = L.arange(12.0, dtype=L.float64).reshape(2, 2, 3).requires_grad_()
        x2 = (L.arange(16.0, dtype=L.float64).reshape(2, 2, 4) / 5 - 1).requires_grad_()
        out = layer(x1, x2)
        single = layer(x1[0, 0], x2[1, 1])
        (out.sum() + single.sum()).backward()
        other = no_bias(L.ones(2, 3), L.ones(2, 1))
        return [repr(layer), repr(no_bias), type(out.grad_fn).__name__,
                type(other.grad_fn).__name__] + [t.detach().numpy() for t in (
                    out, single, x1.grad, x2.grad, layer.weight.grad, layer.bias.grad, other,
                    no_bias.weight)]
    for a, e in zip(run(nbgrad), run(torch), strict=True):
        if isinstance(e, str):
            assert a == e
        else:
            assert a.dtype == e.dtype
            np.testing.assert_allclose(a, e, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("make", [
    lambda L: L.nn.functional.bilinear(L.ones(4, 3), L.ones(3, 5), L.ones(2, 3, 5)),
    lambda L: L.nn.functional.bilinear(L.ones(4, 3), L.ones(4, 5), L.ones(2, 4, 5)),
    lambda L: L.nn.functional.bilinear(L.ones(4, 3), L.ones(4, 5), L.ones(2, 3, 5), L.ones(3)),
    lambda L: L.nn.functional.bilinear(L.ones(4, 3), L.ones(4, 4), L.ones(2, 3, 5)),
    lambda L: L.nn.functional.bilinear(L.ones(2, 4, 3), L.ones(4, 5), L.ones(2, 3, 5)),
    lambda L: L.nn.functional.bilinear(L.ones(4, 3), L.ones(4, 5).double(), L.ones(2, 3, 5)),
    lambda L: L.nn.functional.bilinear(L.ones(4, 3), L.ones(4, 5), L.ones(2, 3, 5), L.ones(2).double()),
    lambda L: L.nn.Bilinear(0, 2, 3),
])
def test_bilinear_errors_match_torch(make):
    assert_same_error(make)


def test_dropout_in_place_matches_torch():
    """F.dropout(inplace=True) and nn.Dropout(inplace=True) write their input (its node,
    version and values, with p = 1 too), and refuse a leaf that requires grad, as torch."""
    outcomes = []
    for L in (torch, nbgrad):
        L.manual_seed(0)
        x = L.randn(4, 5, requires_grad=True)
        y = x * 1
        z = L.nn.functional.dropout(y, 0.5, inplace=True)
        z.sum().backward()
        outcome = [z is y, type(z.grad_fn).__name__, z._version, x.grad.tolist()]
        with pytest.raises(RuntimeError, match="a leaf Variable that requires grad"):
            L.nn.functional.dropout(x, 0.5, inplace=True)
        with L.no_grad():
            for p in (0.5, 1.0):
                w = L.ones(6)
                outcome += [L.nn.Dropout(p, inplace=True)(w) is w, w.tolist()]
        outcomes.append(outcome)
    assert outcomes[0] == outcomes[1]
