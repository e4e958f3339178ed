"""Random number generators: `nbgrad.Generator`, the default generator and the global seeding
functions, and the streams the random functions draw from.

The streams are PyTorch's CPU streams, number for number: a seeded generator gives the values
`torch` gives for the same seed (`torch.Generator().manual_seed(2147483647)` then `rand`,
`randn`, `randint`, `randperm`, `multinomial`, `bernoulli`, ...), so that teaching material
that prints random numbers prints the same ones. PyTorch's CPU generator is MT19937 seeded by
`init_genrand`, which is NumPy's legacy MT19937 seeding, so NumPy's bit generator gives its raw
32-bit words; each distribution below transforms them as PyTorch's kernels do (ATen's
TransformationHelper.h, DistributionsHelper.h and cpu/DistributionTemplates.h).
"""
import math
import secrets

import numba
import numpy as np

from .._core import dtype as _dtype
from . import device as _device
from .tensor import Tensor

__all__ = ["Generator", "default_generator", "manual_seed", "seed", "initial_seed",
           "get_rng_state", "set_rng_state"]

_DEFAULT_SEED = 67280421310721  # PyTorch's seed of a new generator (default_rng_seed_val)
_STATE_N = 624  # MT19937's state words
_U64 = np.uint64

# The layout of PyTorch's CPU generator state (CPUGeneratorImplState, 5056 bytes), so that a
# state moves between torch and nbgrad: the seed, MT19937's `left` and `next`, its 624 state
# words (one uint64 each), the cached Box-Muller samples.
_STATE_LAYOUT = np.dtype([
    ("seed", "<u8"), ("left", "<i4"), ("seeded", "<i4"), ("next", "<u8"),
    ("state", "<u8", (_STATE_N,)), ("normal_x", "<f8"), ("normal_y", "<f8"),
    ("normal_rho", "<f8"), ("normal_is_valid", "<i4"), ("pad", "<i4"),
    ("next_float_normal", "<f4"), ("next_float_normal_is_valid", "u1"), ("pad2", "u1", (3,))])


def _as_seed(seed):
    """A seed as PyTorch stores it: an int taken modulo 2**64 (negative seeds wrap)."""
    if isinstance(seed, Tensor):
        seed = seed.item()
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise RuntimeError(f"manual_seed expected a long, but got {type(seed).__name__}")
    seed = int(seed)
    if not -2 ** 63 <= seed < 2 ** 64:
        raise ValueError("Overflow when unpacking long long")
    return seed % 2 ** 64


class Generator:
    """torch.Generator: a random stream of its own, for `generator=` arguments."""

    def __init__(self, device="cpu"):
        if _device.device(device).type == "cuda":
            raise RuntimeError("Cannot get CUDA generator without ATen_cuda library. nbgrad runs "
                               "on the CPU only.")
        self.device = _device.checked(device)
        self._bits = np.random.MT19937()
        self._next_normal = None  # the second Box-Muller sample, for the next scalar draw
        self.manual_seed(_DEFAULT_SEED)

    def manual_seed(self, seed):
        seed = _as_seed(seed)
        self._seed = seed
        # NOTE: PyTorch seeds MT19937 with the seed's low 32 bits (at::mt19937(seed)).
        self._bits._legacy_seeding(seed & 0xFFFFFFFF)
        self._next_normal = None
        return self

    def seed(self):
        """Seed with a non-deterministic random number and return it."""
        seed = secrets.randbits(64)
        self.manual_seed(seed)
        return seed

    def initial_seed(self):
        return self._seed

    def get_state(self):
        """The state as PyTorch's 5056-byte uint8 tensor."""
        mt = self._bits.state["state"]
        state = np.zeros((), _STATE_LAYOUT)
        state["seed"], state["seeded"] = self._seed, 1
        # MT19937 twists when `left` reaches 0 (PyTorch) or `pos` reaches 624 (NumPy).
        state["left"], state["next"] = _STATE_N + 1 - mt["pos"], mt["pos"]
        state["state"] = mt["key"]
        if self._next_normal is not None:
            state["normal_is_valid"], state["normal_y"] = 1, self._next_normal
        return Tensor._wrap(np.frombuffer(state.tobytes(), np.uint8).copy())

    def set_state(self, new_state):
        if not isinstance(new_state, Tensor) or new_state.dtype != _dtype.uint8:
            raise TypeError("RNG state must be a torch.ByteTensor")
        data = np.ascontiguousarray(new_state._data)
        if data.size != _STATE_LAYOUT.itemsize:
            raise RuntimeError(f"Expected a CPUGeneratorImplState of size "
                               f"{_STATE_LAYOUT.itemsize} but found the input RNG state size to be "
                               f"{data.size}")
        state = data.view(_STATE_LAYOUT)[0]
        self._bits.state = {"bit_generator": "MT19937", "state": {
            "key": state["state"].astype(np.uint32), "pos": _STATE_N + 1 - int(state["left"])}}
        self._seed = int(state["seed"])
        self._next_normal = float(state["normal_y"]) if state["normal_is_valid"] else None
        return self

    # --- raw words, as PyTorch's generator->random() and random64() ------------------------

    def _random32(self, n):
        """`n` 32-bit words (in uint64)."""
        return self._bits.random_raw(n)

    def _random64(self, n):
        """`n` 64-bit words, each made of two 32-bit words, the first one high."""
        words = self._bits.random_raw(2 * n)
        return (words[0::2] << _U64(32)) | words[1::2]


default_generator = Generator()


def resolve(generator):
    """The generator a `generator=` argument names (None: the default generator)."""
    if generator is None:
        return default_generator
    if not isinstance(generator, Generator):
        raise TypeError(f"expected a torch.Generator, got {type(generator).__name__}")
    return generator


def manual_seed(seed):
    """Seed the default generator (rand, randn, init functions, dropout, DataLoader shuffles)."""
    return default_generator.manual_seed(seed)


def seed():
    return default_generator.seed()


def initial_seed():
    return default_generator.initial_seed()


def get_rng_state():
    return default_generator.get_state()


def set_rng_state(new_state):
    default_generator.set_state(new_state)


# --- distributions: NumPy arrays drawn as PyTorch's CPU kernels draw them ------------------

# Mantissa digits of a floating dtype (random_()'s range).
_DIGITS = {"float64": 53, "float32": 24, "float16": 11, "bfloat16": 8}


def uniform(shape, dtype, low=0.0, high=1.0, generator=None):
    """Uniform values in [low, high) of nbgrad dtype `dtype` (uniform_real_distribution): 53
    random bits of a 64-bit word for float64, 24 of a 32-bit word otherwise (float16 and
    bfloat16 round a float32 draw, as PyTorch)."""
    gen, n = resolve(generator), int(np.prod(shape))
    digits = 53 if dtype.name == "float64" else 24
    words = gen._random64(n) if digits == 53 else gen._random32(n)
    unit = (words & _U64((1 << digits) - 1)) * (1.0 / (1 << digits))
    # The bounds and `high - low` in the dtype, the rest in float64 (PyTorch's accumulate type).
    low, high = np.asarray(low, dtype.np), np.asarray(high, dtype.np)
    return (unit * float(high - low) + float(low)).astype(dtype.np).reshape(shape)


def _unit_doubles(gen, n):
    """`n` float64 values in [0, 1), as uniform_real_distribution<double>."""
    return (gen._random64(n) & _U64((1 << 53) - 1)) * (1.0 / (1 << 53))


def bernoulli_mask(shape, p, generator=None):
    """True with probability `p` (a float): PyTorch's `bernoulli_(p)`, a float64 draw < p."""
    gen = resolve(generator)
    return (_unit_doubles(gen, int(np.prod(shape))) < p).reshape(shape)


def bernoulli_of(probabilities, generator=None):
    """True with each probability of the array `probabilities` (bernoulli_(p_tensor)): a draw
    of its dtype's precision below it."""
    dtype = _dtype.float64 if probabilities.dtype == np.float64 else _dtype.float32
    return uniform(probabilities.shape, dtype, generator=generator) < probabilities


@numba.njit(cache=True, fastmath={"contract"})
def _transformed(kind, uniforms, a, b):
    """PyTorch's transformations (TransformationHelper.h) of float64 uniforms, with libm's
    functions and multiply-adds fused as PyTorch's x86 build: kind 0 exponential (rate a),
    1 geometric (probability a), 2 Cauchy (median a, scale b)."""
    out = np.empty(uniforms.shape[0])
    for i in range(uniforms.shape[0]):
        u = uniforms[i]
        if kind == 0:
            out[i] = -1.0 / a * math.log1p(-u)
        elif kind == 1:
            out[i] = math.ceil(math.log(u) / math.log1p(-a))
        else:
            out[i] = a + b * math.tan(math.pi * (u - 0.5))
    return out


_TRANSFORMS = {"exponential": 0, "geometric": 1, "cauchy": 2}


def transformed_uniforms(kind, shape, np_dtype, a, b=0.0, generator=None):
    """Values of distribution `kind` ("exponential", "geometric", "cauchy") as PyTorch's
    serial CPU kernels draw them: one float64 uniform per value, transformed in float64, cast
    to `np_dtype`."""
    uniforms = _unit_doubles(resolve(generator), int(np.prod(shape)))
    values = _transformed(_TRANSFORMS[kind], uniforms, float(a), float(b))
    return _cast_double(values, np_dtype).reshape(shape)


def log_normal(shape, np_dtype, mean, std, generator=None):
    """exp of normal_distribution<double> values (lognormal_distribution): drawn one at a
    time, as `normal` draws fewer than 16 values."""
    gen, n = resolve(generator), int(np.prod(shape))
    normals = normal((n,), _dtype.float64, mean, std, contiguous=False, generator=gen)
    return _cast_double(_exp(normals), np_dtype).reshape(shape)


def _cast_double(values, np_dtype):
    """float64 values as C++'s static_cast gives them: float16 and bfloat16 through float."""
    if _dtype.is_half(np_dtype):
        values = values.astype(np.float32)
    return values.astype(np_dtype)


@numba.njit(cache=True)
def _exp(values):
    """libm's exp (NumPy's may differ in the last bit)."""
    out = np.empty_like(values)
    for i in range(values.shape[0]):
        out[i] = math.exp(values[i])
    return out


def integers(shape, low, high, generator=None):
    """Integers in [low, high), int64 (uniform_int_from_to_distribution: a word modulo the
    range, a 64-bit word from a range of 2**28 on)."""
    gen, n, span = resolve(generator), int(np.prod(shape)), high - low
    words = gen._random64(n) if span >= 1 << 28 else gen._random32(n)
    return ((words % _U64(span)).astype(np.int64) + low).reshape(shape)


def full_range(shape, dtype, generator=None):
    """`random_()`'s values of nbgrad dtype `dtype` (uniform_int_distribution): a word modulo
    max + 1 for an integer dtype, modulo 2**digits + 1 for a floating one; 64-bit words for
    int64 and float64."""
    gen, n = resolve(generator), int(np.prod(shape))
    wide = dtype.name in ("int64", "float64")
    words = gen._random64(n) if wide else gen._random32(n)
    if dtype.name == "bool":
        return (words & _U64(1)).astype(np.bool_).reshape(shape)
    if dtype.is_floating_point:
        modulus = (1 << _DIGITS[dtype.name]) + 1
    else:
        modulus = int(np.iinfo(dtype.np).max) + 1
    return (words % _U64(modulus)).astype(dtype.np).reshape(shape)


def permutation(n, generator=None):
    """A permutation of range(n), int64, as PyTorch's randperm on the CPU (a Fisher-Yates
    shuffle whose step i swaps i with i + word % (n - i))."""
    gen = resolve(generator)
    order = np.arange(n, dtype=np.int64)
    if n > 1:
        _shuffle(order, gen._random32(n - 1).astype(np.int64))
    return order


@numba.njit(cache=True)
def _shuffle(order, words):
    n = order.shape[0]
    for i in range(n - 1):
        j = i + words[i] % (n - i)
        order[i], order[j] = order[j], order[i]


def normal(shape, dtype, mean=0.0, std=1.0, contiguous=True, generator=None):
    """Normal values of nbgrad dtype `dtype` drawn as PyTorch's normal_ kernel does: 16 or
    more contiguous values by Box-Muller over blocks of 16 uniforms of the dtype (normal_fill),
    fewer one at a time from float64 uniforms, with the generator keeping each pair's second
    value for the next draw (normal_distribution<double>)."""
    gen, n = resolve(generator), int(np.prod(shape))
    if n >= 16 and contiguous:
        return _normal_fill(gen, n, dtype, mean, std).reshape(shape)
    kept = gen._next_normal is not None
    pairs = (n - kept + 1) // 2
    values, cached = _normal_values(n, gen._next_normal if kept else math.nan,
                                    _unit_doubles(gen, 2 * pairs), float(mean), float(std))
    gen._next_normal = None if math.isnan(cached) else cached
    return values.astype(dtype.np).reshape(shape)


def _normal_fill(gen, n, dtype, mean, std):
    """normal_fill: uniforms for all n values, Box-Muller on each block of 16 (the first 8 as
    1 - u1, the last 8 as u2), and, when 16 does not divide n, 16 new uniforms for the last 16
    values, overwriting what the blocks wrote there. float16 and bfloat16 compute in float32
    and, as PyTorch, draw uniforms for the whole blocks only."""
    half = dtype.name in ("float16", "bfloat16")
    compute = _dtype.float32 if half else dtype
    box_muller = _box_muller_float64 if compute.name == "float64" else _box_muller_float32
    mean, std = float(mean), float(std)
    full = n - n % 16
    drawn = full if half else n
    data = np.empty(n, compute.np)
    data[:drawn] = uniform((drawn,), compute, generator=gen)
    box_muller(data[:full].reshape(-1, 2, 8), mean, std)
    if n % 16:
        tail = uniform((16,), compute, generator=gen)
        box_muller(tail.reshape(1, 2, 8), mean, std)
        data[n - 16:] = tail
    return data.astype(dtype.np, copy=False)


# NOTE: `contract` lets LLVM fuse `a * b + c` into one FMA where PyTorch's compiler fuses it
# (its x86 kernels are built with FMA); math.log/sin/cos are libm's, as PyTorch's. NumPy's own
# float64 log and sincos differ from libm's in the last bit, so these loops are Numba's.
@numba.njit(cache=True, fastmath={"contract"})
def _box_muller_float64(blocks, mean, std):
    """normal_fill_16 on blocks of 16 float64 values (as (blocks, 2, 8)), in place."""
    for b in range(blocks.shape[0]):
        for j in range(8):
            radius = math.sqrt(-2.0 * math.log(1.0 - blocks[b, 0, j]))
            theta = 2.0 * math.pi * blocks[b, 1, j]
            blocks[b, 0, j] = radius * math.cos(theta) * std + mean
            blocks[b, 1, j] = radius * math.sin(theta) * std + mean


@numba.njit(cache=True, fastmath={"contract"})
def _normal_values(n, kept, uniforms, mean, std):
    """n values of normal_distribution<double>: the generator's kept value first (NaN: none),
    then Box-Muller on each pair of `uniforms` (u1, u2), the pair's second value kept for the
    next draw. Returns the values, scaled, and the value kept after them (NaN: none)."""
    values = np.empty(n)
    pair = 0
    for i in range(n):
        if math.isnan(kept):
            u1, u2 = uniforms[pair], uniforms[pair + 1]
            pair += 2
            radius = math.sqrt(-2.0 * math.log1p(-u2))
            theta = 2.0 * math.pi * u1
            value, kept = radius * math.cos(theta), radius * math.sin(theta)
        else:
            value, kept = kept, math.nan
        values[i] = value * std + mean
    return values, kept


# float32: PyTorch's x86 builds run normal_fill_16_AVX2, whose log and sincos are Cephes
# polynomials in float32 (avx_mathfun.h), compiled with multiply-adds fused where GCC fuses
# them; these kernels do the same float32 steps, so the values are PyTorch's bit for bit.
# NOTE: a PyTorch built without AVX2 (ARM) computes these with libm instead: its float32 values
# then differ in the last bit or two.
_F = np.float32
_LOG_POLYNOMIAL = np.array([
    7.0376836292E-2, -1.1514610310E-1, 1.1676998740E-1, -1.2420140846E-1, 1.4249322787E-1,
    -1.6668057665E-1, 2.0000714765E-1, -2.4999993993E-1, 3.3333331174E-1], _F)
_SIN_POLYNOMIAL = np.array([-1.9515295891E-4, 8.3321608736E-3, -1.6666654611E-1], _F)
_COS_POLYNOMIAL = np.array([2.443315711809948E-005, -1.388731625493765E-003,
                            4.166664568298827E-002], _F)
_PI_OVER_4_PARTS = np.array([-0.78515625, -2.4187564849853515625e-4, -3.77489497744594108e-8],
                            _F)
_SQRT_HALF, _FOUR_OVER_PI = _F(0.707106781186547524), _F(1.27323954473516)
_LOG2_LOW, _LOG2_HIGH = _F(-2.12194440e-4), _F(0.693359375)
_TWO_PI = _F(2.0 * np.pi)


@numba.njit(cache=True)
def _box_muller_float32(blocks, mean, std):
    """normal_fill_16_AVX2 on blocks of 16 float32 values (as (blocks, 2, 8)), in place.
    (The helpers are inner functions: one compilation instead of five.)"""

    def fma(a, b, c):
        """a * b + c rounded once to float32 (a float32 product is exact in float64)."""
        return np.float32(np.float64(a) * np.float64(b) + np.float64(c))

    def polynomial(coefficients, x):
        y = coefficients[0]
        for i in range(1, coefficients.shape[0]):
            y = fma(y, x, coefficients[i])
        return y

    def cephes_log(x):
        """log256_ps for x in (0, 1]: x = m * 2**e with m in [0.5, 1), then a polynomial in
        m - 1 (in 2m - 1 when m < sqrt(1/2))."""
        m, e = math.frexp(x)
        m, exponent = np.float32(m), np.float32(e)
        small = m < _SQRT_HALF
        if small:
            exponent = exponent - np.float32(1)
        m = (m - np.float32(1)) + (m if small else np.float32(0))
        z = m * m
        y = polynomial(_LOG_POLYNOMIAL, m) * m
        y = fma(y, z, exponent * _LOG2_LOW)
        y = fma(z, np.float32(-0.5), y)
        return fma(exponent, _LOG2_HIGH, m + y)

    def cephes_sincos(x):
        """sincos256_ps for x >= 0: reduce by pi/4 in three parts, evaluate the sine and
        cosine polynomials, and pick and sign them by the octant."""
        octant = np.int32(x * _FOUR_OVER_PI)
        octant = (octant + 1) & ~np.int32(1)
        y = np.float32(octant)
        for part in _PI_OVER_4_PARTS:
            x = fma(y, part, x)
        z = x * x
        cos = fma(polynomial(_COS_POLYNOMIAL, z) * z, z, -(z * np.float32(0.5))) + np.float32(1)
        sin = fma(polynomial(_SIN_POLYNOMIAL, z) * z, x, x)
        if octant & 2:
            sin, cos = cos, sin
        if octant & 4:
            sin = -sin
        if not (octant - 2) & 4:
            cos = -cos
        return sin, cos

    mean, std = np.float32(mean), np.float32(std)
    for b in range(blocks.shape[0]):
        for j in range(8):
            radius = np.sqrt(np.float32(-2) * cephes_log(np.float32(1) - blocks[b, 0, j]))
            sin, cos = cephes_sincos(_TWO_PI * blocks[b, 1, j])
            blocks[b, 0, j] = fma(radius * cos, std, mean)
            blocks[b, 1, j] = fma(radius * sin, std, mean)
