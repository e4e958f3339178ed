"""The fused-kernel pipeline (`nbgrad.fuse.kernel`) and what its two front ends share.

`nbgrad.compile` and deferred graphs are front ends on one pipeline: each supplies how the
call function names and fetches the kernel's arguments and what it returns (a `FrontEnd`);
both keep one kind of stats record and one kind of failure log.
"""
import numpy as np
import pytest
import torch

import nbgrad
from nbgrad.fuse import graph as fused_graph
from nbgrad.fuse.call import MISMATCH
from nbgrad.fuse.kernel import (MAX_FAILURES, FailureLog, FrontEnd, Kernel, KernelStats,
                                traced_run)
from nbgrad.ops.primitive import Unfusable
from conftest import assert_close, rng_for


class ByPosition(FrontEnd):
    """The least a front end supplies: tensor arguments by position, other tensors the
    step reads (a number made a tensor) by identity, the first output returned as a new
    array."""

    def __init__(self, leaves):
        self.leaves = leaves

    def fetch(self, writer, argument):
        name, kind, source, traced = argument
        if kind == "arg":
            expression = f"leaf_{source}._data"
        else:
            assert kind == "data", argument
            expression = f"{writer.bind(source, 'tensor')}._data"
        writer.lines += writer.fetch(name, expression, traced.shape, traced.dtype)
        return traced

    def after_call(self, writer, tracer, outputs):
        writer.lines.append(f"return {writer.bind(outputs[0], 'output')}.copy()")


def step(x, w):
    return ((x * 2 + 1) * w).sum()


def traced_step(x, w):
    with nbgrad.no_grad():
        return traced_run(lambda: step(x, w), [x, w])


def test_a_front_end_supplies_only_fetches_and_the_return():
    rng = rng_for("pipeline")
    x, w = (nbgrad.tensor(rng.standard_normal((3, 4)).astype(np.float32)) for _ in range(2))
    tracer, result = traced_step(x, w)
    stats = KernelStats()
    kernel = Kernel(tracer, [result._data], ByPosition(2), stats)
    assert "def fused_step(" in kernel.source and "def call(leaves)" in kernel.call_source
    assert stats["specializations"] == 1
    assert stats["cache_hits"] + stats["cache_misses"] == 1
    for _ in range(2):  # new arguments each call: the kernel reads them
        a, b = (rng.standard_normal((3, 4)).astype(np.float32) for _ in range(2))
        got = kernel.call((nbgrad.tensor(a), nbgrad.tensor(b)))
        assert_close(got, step(torch.tensor(a), torch.tensor(b)).numpy())
    # The fetches check shape and dtype: another shape does not fit.
    other = nbgrad.tensor(np.zeros((4, 3), np.float32))
    assert kernel.call((other, other)) is MISMATCH


def test_a_front_end_that_cannot_fetch_an_argument_stops_the_pipeline_before_compiling():
    class Refuses(ByPosition):
        def fetch(self, writer, argument):
            raise Unfusable("no fetch for this argument")

    rng = rng_for("pipeline refuses")
    x, w = (nbgrad.tensor(rng.standard_normal((2, 2)).astype(np.float32)) for _ in range(2))
    tracer, result = traced_step(x, w)
    stats = KernelStats()
    with pytest.raises(Unfusable, match="no fetch"):
        Kernel(tracer, [result._data], Refuses(2), stats)
    assert stats == KernelStats()  # nothing compiled, nothing counted


def test_both_front_ends_keep_one_kind_of_stats_and_failure_log():
    compiled = nbgrad.compile(lambda x: x)
    assert type(compiled.stats) is type(fused_graph.stats) is KernelStats
    assert compiled.stats.keys() == fused_graph.stats.keys()
    assert type(compiled.breaks) is type(fused_graph.unfused) is FailureLog


def test_the_failure_log_keeps_the_latest_reasons():
    log = FailureLog()
    for number in range(MAX_FAILURES + 5):
        log.append(f"reason {number}")
    assert log == [f"reason {number}" for number in range(5, MAX_FAILURES + 5)]
