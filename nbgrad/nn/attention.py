"""Attention: F.scaled_dot_product_attention, F.multi_head_attention_forward and
nn.MultiheadAttention, as PyTorch's (arguments, parameters and their initialisation, masks,
errors), composed of existing ops: no primitive of their own.

PyTorch's CPU attention has fused kernels (flash attention, the "fast path" of
MultiheadAttention for inference); their results are its math path's, which is what these
functions compute. Its `_safe_softmax` (a query whose keys are all masked attends to
nothing: zeros, not NaN) is `_safe_softmax` here; the weights that `need_weights=True`
returns come from a plain softmax in PyTorch too (NaN in such rows).
"""
import math
import warnings

import numpy as np

from .._core import dtype as _dtype
from .._tensor import api as _api
from .._tensor.factories import empty, ones, zeros
from .._tensor.tensor import Tensor
from . import functional as F
from . import init
from .layers import Linear
from .module import Module
from .parameter import Parameter

# The names PyTorch's C++ checks print for a dtype (caffe2's TypeMeta names).
_CPP_TYPE_NAMES = {"float32": "float", "float64": "double", "float16": "c10::Half",
                   "bfloat16": "c10::BFloat16", "int64": "long int", "int32": "int",
                   "int16": "short int", "int8": "signed char", "uint8": "unsigned char",
                   "bool": "bool"}


def _check_sdpa_arguments(query, key, value, attn_mask, dropout_p, is_causal):
    """PyTorch's checks of scaled_dot_product_attention, in its order (validate_sdpa_input,
    then its math path's)."""
    if not query.dtype == key.dtype == value.dtype:
        raise RuntimeError(
            "Expected query, key, and value to have the same dtype, but got query.dtype: "
            f"{_CPP_TYPE_NAMES[query.dtype.name]} key.dtype: {_CPP_TYPE_NAMES[key.dtype.name]} "
            f"and value.dtype: {_CPP_TYPE_NAMES[value.dtype.name]} instead.")
    if min(query.dim(), key.dim(), value.dim()) < 2:
        raise RuntimeError(
            "Expected query, key, and value to all be  at least 2 dimensional, but got "
            f"query.dim: {query.dim()} key.dim: {key.dim()} and value.dim: {value.dim()} instead.")
    if attn_mask is not None and attn_mask.dtype not in (_dtype.bool_, _dtype.float32, query.dtype):
        raise RuntimeError(
            "Expected attn_mask dtype to be bool or float or to match query dtype, but got "
            f"attn_mask.dtype: {_CPP_TYPE_NAMES[attn_mask.dtype.name]} and  query.dtype: "
            f"{_CPP_TYPE_NAMES[query.dtype.name]} instead.")
    if attn_mask is not None and attn_mask.dim() < 2:
        # PyTorch reads the mask's size(-2) here.
        raise IndexError("Dimension specified as -2 but tensor has no dimensions"
                         if attn_mask.dim() == 0 else
                         "Dimension out of range (expected to be in range of [-1, 0], but got -2)")
    if is_causal and attn_mask is not None:
        raise RuntimeError("_scaled_dot_product_attention: Explicit attn_mask should not be set "
                           "when is_causal=True")
    if not query.dtype.is_floating_point:
        raise RuntimeError(f"expected scalar type Float but found {query.dtype.scalar_type}")
    if dropout_p > 1.0:
        raise RuntimeError(f"dropout probability has to be between 0 and 1, but got {dropout_p}")


def _grouped_heads(query, key, value):
    """enable_gqa: each key/value head repeated (repeat_interleave along dim -3) to the
    query's number of heads."""
    heads, key_heads, value_heads = query.size(-3), key.size(-3), value.size(-3)
    if heads == key_heads == value_heads:
        return key, value
    if heads % key_heads or heads % value_heads:
        # NOTE: PyTorch's message ends there.
        raise RuntimeError("Number of heads in key and value must divide the number of heads in ")

    def repeated(t, times):
        shape = tuple(t.shape)
        spread = t.unsqueeze(-3).expand(*shape[:-2], times, *shape[-2:])
        return spread.reshape(*shape[:-3], shape[-3] * times, *shape[-2:])
    return repeated(key, heads // key_heads), repeated(value, heads // value_heads)


def _safe_softmax(scores, blocked):
    """softmax over the last dim, with zeros (and a zero gradient) in the `blocked` rows
    (those whose keys the mask all masks out), as PyTorch's `_safe_softmax`. Those rows are
    replaced before the softmax too: its NaN would turn their zero gradient into NaN."""
    return _api.softmax(scores.masked_fill(blocked, 0.0), -1).masked_fill(blocked, 0.0)


def _blocked_rows(mask):
    """The rows (queries) of a bool or float `mask` that let no key through.

    NOTE: PyTorch finds them in the scores (all -inf), which also counts a row made -inf by
    infinite inputs; here the mask alone decides. Reading the scores would realize a
    deferred graph in the middle of its forward (the comparison records no gradient, so it
    runs at once), and no training step with a mask would ever fuse.
    """
    # Counts rather than `.all()`/`.any()`: reductions to bool have no fused rule.
    if mask.dtype == _dtype.bool_:
        return mask.sum(-1, keepdim=True) == 0
    return mask.eq(-math.inf).sum(-1, keepdim=True) == mask.size(-1)


def _check_mask_fits(mask, scores):
    # PyTorch adds the mask into the scores in place: the mask may not widen them. (A mask
    # that does not broadcast at all gets the add's own error.)
    if F._broadcastable(mask.shape, scores.shape):
        widened = np.broadcast_shapes(mask.shape, scores.shape)
        if widened != tuple(scores.shape):
            raise RuntimeError(f"output with shape {list(scores.shape)} doesn't match the "
                               f"broadcast shape {list(widened)}")


def scaled_dot_product_attention(query, key, value, attn_mask=None, dropout_p=0.0,
                                 is_causal=False, *, scale=None, enable_gqa=False):
    """softmax(query @ key^T * scale + mask) @ value over the last two dims, PyTorch's math
    path: a bool `attn_mask` keeps the positions where it is True, a float one is added;
    `is_causal` keeps key j <= query i (upper-left aligned)."""
    _check_sdpa_arguments(query, key, value, attn_mask, dropout_p, is_causal)
    if scale is None:
        scale = 1.0 / math.sqrt(query.size(-1)) if query.size(-1) else math.inf
    # As PyTorch: both operands scaled by sqrt(|scale|) (the sign on the query), for the
    # range of the product in low precision.
    root = math.sqrt(abs(scale))
    query = query * (-root if scale < 0 else root)
    if enable_gqa:
        key, value = _grouped_heads(query, key, value)
    scores = _api.matmul(query, key.transpose(-2, -1) * root)
    if is_causal:
        length, source_length = query.size(-2), key.size(-2)
        attn_mask = ones(length, source_length, dtype=_dtype.bool_).tril()
    if attn_mask is not None:
        _check_mask_fits(attn_mask, scores)
        if attn_mask.dtype == _dtype.bool_:
            scores = scores.masked_fill(attn_mask.logical_not(), -math.inf)
        else:
            scores = (scores + attn_mask).to(scores.dtype)
    # A causal mask keeps key 0 for every query: no row of it is blocked.
    if attn_mask is None or is_causal:
        weights = _api.softmax(scores, -1)
    else:
        weights = _safe_softmax(scores, _blocked_rows(attn_mask))
    if dropout_p > 0.0:
        weights = F.dropout(weights, dropout_p)
    return _api.matmul(weights, value)


# --- multi-head attention --------------------------------------------------------------------

def _none_or_dtype(input):
    if input is None:
        return None
    if isinstance(input, Tensor):
        return input.dtype
    raise RuntimeError("input to _none_or_dtype() must be None or torch.Tensor")


def _canonical_mask(mask, mask_name, other_type, other_name, target_type, check_other=True):
    """A bool mask (True: masked out) as the float mask that adds -inf there; a float mask as
    it is. As PyTorch's."""
    if mask is None:
        return None
    if mask.dtype != _dtype.bool_ and not mask.is_floating_point():
        raise AssertionError(f"only bool and floating types of {mask_name} are supported")
    if check_other and other_type is not None and mask.dtype != other_type:
        warnings.warn(f"Support for mismatched {mask_name} and {other_name} is deprecated. Use "
                      "same type for both instead.", stacklevel=2)
    if mask.dtype == _dtype.bool_:
        mask = zeros(mask.shape, dtype=target_type).masked_fill(mask, -math.inf)
    return mask


def _mha_shape_check(query, key, value, key_padding_mask, attn_mask, num_heads):
    """Whether the inputs are batched; PyTorch's AssertionErrors for other ranks."""
    if query.dim() == 3:
        if key.dim() != 3 or value.dim() != 3:
            raise AssertionError("For batched (3-D) `query`, expected `key` and `value` to be 3-D"
                                 f" but found {key.dim()}-D and {value.dim()}-D tensors respectively")
        if key_padding_mask is not None and key_padding_mask.dim() != 2:
            raise AssertionError("For batched (3-D) `query`, expected `key_padding_mask` to be "
                                 f"`None` or 2-D but found {key_padding_mask.dim()}-D tensor instead")
        if attn_mask is not None and attn_mask.dim() not in (2, 3):
            raise AssertionError("For batched (3-D) `query`, expected `attn_mask` to be `None`, "
                                 f"2-D or 3-D but found {attn_mask.dim()}-D tensor instead")
        return True
    if query.dim() == 2:
        if key.dim() != 2 or value.dim() != 2:
            raise AssertionError("For unbatched (2-D) `query`, expected `key` and `value` to be "
                                 f"2-D but found {key.dim()}-D and {value.dim()}-D tensors "
                                 "respectively")
        if key_padding_mask is not None and key_padding_mask.dim() != 1:
            raise AssertionError("For unbatched (2-D) `query`, expected `key_padding_mask` to be "
                                 f"`None` or 1-D but found {key_padding_mask.dim()}-D tensor "
                                 "instead")
        if attn_mask is not None:
            if attn_mask.dim() not in (2, 3):
                raise AssertionError("For unbatched (2-D) `query`, expected `attn_mask` to be "
                                     f"`None`, 2-D or 3-D but found {attn_mask.dim()}-D tensor "
                                     "instead")
            expected = (num_heads, query.shape[0], key.shape[0])
            if attn_mask.dim() == 3 and tuple(attn_mask.shape) != expected:
                raise AssertionError(f"Expected `attn_mask` shape to be {expected} but got "
                                     f"{attn_mask.shape}")
        return False
    raise AssertionError("query should be unbatched 2D or batched 3D tensor but received "
                         f"{query.dim()}-D query tensor")


def _in_projection_packed(q, k, v, w, b=None):
    """query, key and value projected by the three blocks of the packed weight: one linear
    for self-attention (q, k and v the same tensor)."""
    if q is k and k is v:
        # (PyTorch copies the three blocks out contiguous; the heads' reshape copies here.)
        return F.linear(q, w, b).chunk(3, dim=-1)
    weights = w.chunk(3)
    biases = (None,) * 3 if b is None else b.chunk(3)
    return tuple(F.linear(x, weight, bias) for x, weight, bias in zip((q, k, v), weights, biases))


def _in_projection(q, k, v, w_q, w_k, w_v, b_q=None, b_k=None, b_v=None):
    embed_dim = q.size(-1)
    for name, weight, width in (("query", w_q, embed_dim), ("key", w_k, k.size(-1)),
                                ("value", w_v, v.size(-1))):
        if tuple(weight.shape) != (embed_dim, width):
            raise AssertionError(f"expecting {name} weights shape of {(embed_dim, width)}, but "
                                 f"got {weight.shape}")
    for name, bias in (("query", b_q), ("key", b_k), ("value", b_v)):
        if bias is not None and tuple(bias.shape) != (embed_dim,):
            raise AssertionError(f"expecting {name} bias shape of {(embed_dim,)}, but got "
                                 f"{bias.shape}")
    return F.linear(q, w_q, b_q), F.linear(k, w_k, b_k), F.linear(v, w_v, b_v)


def _checked_attn_mask(attn_mask, batch_heads, tgt_len, src_len):
    """A 2-D (L, S) or 3-D (N * num_heads, L, S) attn_mask as a 3-D one."""
    if attn_mask.dim() == 2:
        if tuple(attn_mask.shape) != (tgt_len, src_len):
            raise RuntimeError(f"The shape of the 2D attn_mask is {attn_mask.shape}, but should "
                               f"be {(tgt_len, src_len)}.")
        return attn_mask.unsqueeze(0)
    if attn_mask.dim() == 3:
        if tuple(attn_mask.shape) != (batch_heads, tgt_len, src_len):
            raise RuntimeError(f"The shape of the 3D attn_mask is {attn_mask.shape}, but should "
                               f"be {(batch_heads, tgt_len, src_len)}.")
        return attn_mask
    raise RuntimeError(f"attn_mask's dimension {attn_mask.dim()} is not supported")


def _static_projection(static, name, batch_heads, head_dim):
    if static.size(0) != batch_heads:
        raise AssertionError(f"expecting {name}.size(0) of {batch_heads}, but got "
                             f"{static.size(0)}")
    if static.size(2) != head_dim:
        raise AssertionError(f"expecting {name}.size(2) of {head_dim}, but got {static.size(2)}")
    return static


def multi_head_attention_forward(query, key, value, embed_dim_to_check, num_heads,
                                 in_proj_weight, in_proj_bias, bias_k, bias_v, add_zero_attn,
                                 dropout_p, out_proj_weight, out_proj_bias, training=True,
                                 key_padding_mask=None, need_weights=True, attn_mask=None,
                                 use_separate_proj_weight=False, q_proj_weight=None,
                                 k_proj_weight=None, v_proj_weight=None, static_k=None,
                                 static_v=None, average_attn_weights=True, is_causal=False):
    """PyTorch's multi-head attention on (L, N, E) inputs (or unbatched (L, E)): returns
    (attn_output, attn_weights averaged over the heads, per head, or None)."""
    is_batched = _mha_shape_check(query, key, value, key_padding_mask, attn_mask, num_heads)
    if not is_batched:
        query, key, value = query.unsqueeze(1), key.unsqueeze(1), value.unsqueeze(1)
        if key_padding_mask is not None:
            key_padding_mask = key_padding_mask.unsqueeze(0)
    tgt_len, bsz, embed_dim = query.shape
    key_padding_mask = _canonical_mask(key_padding_mask, "key_padding_mask",
                                       _none_or_dtype(attn_mask), "attn_mask", query.dtype)
    if is_causal and attn_mask is None:
        raise RuntimeError("Need attn_mask if specifying the is_causal hint. You may use the "
                           "Transformer module method `generate_square_subsequent_mask` to "
                           "create this mask.")
    if is_causal and key_padding_mask is None and not need_weights:
        # The hint alone reaches scaled_dot_product_attention, which builds the causal mask.
        attn_mask = None
    else:
        attn_mask = _canonical_mask(attn_mask, "attn_mask", None, "", query.dtype,
                                    check_other=False)
        if key_padding_mask is not None:
            is_causal = False  # the merged mask is no longer causal
    if embed_dim != embed_dim_to_check:
        raise AssertionError(f"was expecting embedding dimension of {embed_dim_to_check}, but "
                             f"got {embed_dim}")
    head_dim = embed_dim // num_heads
    if head_dim * num_heads != embed_dim:
        raise AssertionError(f"embed_dim {embed_dim} not divisible by num_heads {num_heads}")
    if use_separate_proj_weight:
        if key.shape[:2] != value.shape[:2]:
            raise AssertionError(f"key's sequence and batch dims {key.shape[:2]} do not match "
                                 f"value's {value.shape[:2]}")
        for name, weight in (("q", q_proj_weight), ("k", k_proj_weight), ("v", v_proj_weight)):
            if weight is None:
                raise AssertionError(f"use_separate_proj_weight is True but {name}_proj_weight "
                                     "is None")
        biases = (None,) * 3 if in_proj_bias is None else in_proj_bias.chunk(3)
        q, k, v = _in_projection(query, key, value, q_proj_weight, k_proj_weight, v_proj_weight,
                                 *biases)
    else:
        if key.shape != value.shape:
            raise AssertionError(f"key shape {key.shape} does not match value shape "
                                 f"{value.shape}")
        if in_proj_weight is None:
            raise AssertionError("use_separate_proj_weight is False but in_proj_weight is None")
        q, k, v = _in_projection_packed(query, key, value, in_proj_weight, in_proj_bias)

    batch_heads = bsz * num_heads
    if attn_mask is not None:
        attn_mask = _checked_attn_mask(attn_mask, batch_heads, tgt_len, key.shape[0])
    if bias_k is not None and bias_v is not None:
        if static_k is not None:
            raise AssertionError("bias cannot be added to static key.")
        if static_v is not None:
            raise AssertionError("bias cannot be added to static value.")
        k = _api.cat([k, bias_k.repeat(1, bsz, 1)])
        v = _api.cat([v, bias_v.repeat(1, bsz, 1)])
        attn_mask, key_padding_mask = _one_more_key(attn_mask, key_padding_mask)
    elif bias_k is not None:
        raise AssertionError("bias_k is set but bias_v is None")
    elif bias_v is not None:
        raise AssertionError("bias_v is set but bias_k is None")

    # Heads into the batch dimension, batch first: (N * num_heads, L, head_dim).
    # NOTE: reshape where PyTorch has view (its strides allow a view at each of them, so the
    # two are the same): nbgrad's view reads a deferred tensor's strides, which runs the
    # pending graph in the middle of its forward, and the step would never fuse.
    q = q.reshape(tgt_len, batch_heads, head_dim).transpose(0, 1)
    k = k.reshape(k.shape[0], batch_heads, head_dim).transpose(0, 1) if static_k is None else \
        _static_projection(static_k, "static_k", batch_heads, head_dim)
    v = v.reshape(v.shape[0], batch_heads, head_dim).transpose(0, 1) if static_v is None else \
        _static_projection(static_v, "static_v", batch_heads, head_dim)
    if add_zero_attn:
        k = _api.cat([k, zeros(batch_heads, 1, head_dim, dtype=k.dtype)], dim=1)
        v = _api.cat([v, zeros(batch_heads, 1, head_dim, dtype=v.dtype)], dim=1)
        attn_mask, key_padding_mask = _one_more_key(attn_mask, key_padding_mask)
    src_len = k.size(1)

    if key_padding_mask is not None:
        if key_padding_mask.shape[0] != bsz:
            raise AssertionError(f"Expected key_padded_mask.shape[0] to be {bsz}, but got "
                                 f"{key_padding_mask.shape[0]}")
        if key_padding_mask.shape[1] != src_len:
            raise AssertionError(f"Expected key_padded_mask.shape[1] to be {src_len}, but got "
                                 f"{key_padding_mask.shape[1]}")
        key_padding_mask = key_padding_mask.reshape(bsz, 1, 1, src_len).expand(
            -1, num_heads, -1, -1).reshape(batch_heads, 1, src_len)
        attn_mask = key_padding_mask if attn_mask is None else attn_mask + key_padding_mask
    if not training:
        dropout_p = 0.0

    if need_weights:
        # NOTE: a plain softmax, as PyTorch's here: a query with every key masked gets NaN.
        scores = _api.matmul(q * math.sqrt(1.0 / float(head_dim)), k.transpose(-2, -1))
        weights = _api.softmax(scores if attn_mask is None else attn_mask + scores, dim=-1)
        if dropout_p > 0.0:
            weights = F.dropout(weights, p=dropout_p)
        attn_output = _api.matmul(weights, v).transpose(0, 1).reshape(tgt_len * bsz, embed_dim)
        weights = weights.reshape(bsz, num_heads, tgt_len, src_len)
        if average_attn_weights:
            weights = weights.mean(dim=1)
    else:
        if attn_mask is not None:
            attn_mask = attn_mask.unsqueeze(0) if attn_mask.size(0) == 1 else \
                attn_mask.reshape(bsz, num_heads, -1, src_len)
        q = q.reshape(bsz, num_heads, tgt_len, head_dim)
        k = k.reshape(bsz, num_heads, src_len, head_dim)
        v = v.reshape(bsz, num_heads, src_len, head_dim)
        attn_output = scaled_dot_product_attention(q, k, v, attn_mask, dropout_p, is_causal)
        attn_output = attn_output.permute(2, 0, 1, 3).reshape(bsz * tgt_len, embed_dim)
        weights = None
    attn_output = F.linear(attn_output, out_proj_weight, out_proj_bias)
    attn_output = attn_output.reshape(tgt_len, bsz, attn_output.size(1))
    if not is_batched:
        attn_output = attn_output.squeeze(1)
        if weights is not None:
            weights = weights.squeeze(0)
    return attn_output, weights


def _one_more_key(attn_mask, key_padding_mask):
    """The masks with a column for a key appended (bias_k or a zero key): not masked."""
    return tuple(None if mask is None else F.pad(mask, (0, 1))
                 for mask in (attn_mask, key_padding_mask))


class NonDynamicallyQuantizableLinear(Linear):
    """MultiheadAttention's output projection: a Linear under PyTorch's class name (which
    shows in reprs)."""


class MultiheadAttention(Module):
    """PyTorch's nn.MultiheadAttention: parameters in_proj_weight (3E, E) (or
    q_proj_weight, k_proj_weight, v_proj_weight when kdim or vdim differ from embed_dim),
    in_proj_bias, out_proj, bias_k and bias_v; forward returns (attn_output, attn_weights
    or None)."""

    def __init__(self, embed_dim, num_heads, dropout=0.0, bias=True, add_bias_kv=False,
                 add_zero_attn=False, kdim=None, vdim=None, batch_first=False, device=None,
                 dtype=None):
        if embed_dim <= 0 or num_heads <= 0:
            raise ValueError(f"embed_dim and num_heads must be greater than 0, got "
                             f"embed_dim={embed_dim} and num_heads={num_heads} instead")
        super().__init__()
        self.embed_dim = embed_dim
        self.kdim = kdim if kdim is not None else embed_dim
        self.vdim = vdim if vdim is not None else embed_dim
        self._qkv_same_embed_dim = self.kdim == embed_dim and self.vdim == embed_dim
        self.num_heads = num_heads
        self.dropout = dropout
        self.batch_first = batch_first
        self.head_dim = embed_dim // num_heads
        if self.head_dim * num_heads != self.embed_dim:
            raise AssertionError("embed_dim must be divisible by num_heads")
        separate = ("q_proj_weight", "k_proj_weight", "v_proj_weight")
        if self._qkv_same_embed_dim:
            self.in_proj_weight = Parameter(empty(3 * embed_dim, embed_dim, dtype=dtype))
            for name in separate:
                self.register_parameter(name, None)
        else:
            for name, width in zip(separate, (embed_dim, self.kdim, self.vdim)):
                setattr(self, name, Parameter(empty(embed_dim, width, dtype=dtype)))
            self.register_parameter("in_proj_weight", None)
        self.register_parameter("in_proj_bias", Parameter(empty(3 * embed_dim, dtype=dtype))
                                if bias else None)
        self.out_proj = NonDynamicallyQuantizableLinear(embed_dim, embed_dim, bias=bias,
                                                        dtype=dtype)
        if add_bias_kv:
            self.bias_k = Parameter(empty(1, 1, embed_dim, dtype=dtype))
            self.bias_v = Parameter(empty(1, 1, embed_dim, dtype=dtype))
        else:
            self.bias_k = self.bias_v = None
        self.add_zero_attn = add_zero_attn
        self._reset_parameters()

    def _reset_parameters(self):
        if self._qkv_same_embed_dim:
            init.xavier_uniform_(self.in_proj_weight)
        else:
            init.xavier_uniform_(self.q_proj_weight)
            init.xavier_uniform_(self.k_proj_weight)
            init.xavier_uniform_(self.v_proj_weight)
        if self.in_proj_bias is not None:
            init.constant_(self.in_proj_bias, 0.0)
            init.constant_(self.out_proj.bias, 0.0)
        if self.bias_k is not None:
            init.xavier_normal_(self.bias_k)
        if self.bias_v is not None:
            init.xavier_normal_(self.bias_v)

    def forward(self, query, key, value, key_padding_mask=None, need_weights=True,
                attn_mask=None, average_attn_weights=True, is_causal=False):
        is_batched = query.dim() == 3
        key_padding_mask = _canonical_mask(key_padding_mask, "key_padding_mask",
                                           _none_or_dtype(attn_mask), "attn_mask", query.dtype)
        attn_mask = _canonical_mask(attn_mask, "attn_mask", None, "", query.dtype,
                                    check_other=False)
        if self.batch_first and is_batched:
            # Each distinct tensor transposed once: self-attention stays recognisable (q is k).
            if key is value:
                self_attention = query is key
                key = value = key.transpose(1, 0)
                query = key if self_attention else query.transpose(1, 0)
            else:
                query, key, value = (x.transpose(1, 0) for x in (query, key, value))
        separate = {} if self._qkv_same_embed_dim else dict(
            use_separate_proj_weight=True, q_proj_weight=self.q_proj_weight,
            k_proj_weight=self.k_proj_weight, v_proj_weight=self.v_proj_weight)
        attn_output, attn_weights = multi_head_attention_forward(
            query, key, value, self.embed_dim, self.num_heads, self.in_proj_weight,
            self.in_proj_bias, self.bias_k, self.bias_v, self.add_zero_attn, self.dropout,
            self.out_proj.weight, self.out_proj.bias, training=self.training,
            key_padding_mask=key_padding_mask, need_weights=need_weights, attn_mask=attn_mask,
            average_attn_weights=average_attn_weights, is_causal=is_causal, **separate)
        if self.batch_first and is_batched:
            attn_output = attn_output.transpose(1, 0)
        return attn_output, attn_weights
