"""Worker processes of a DataLoader (`num_workers > 0`), as PyTorch's: the main process samples
the indices and hands each batch to a worker, round robin, which fetches and collates it; the
batches come back in the order they were asked for, so a loader yields the batches it yields
with `num_workers=0`. An iterable dataset is copied into every worker (shard it with
`get_worker_info()`), and its workers' batches are taken round robin until each runs out.

Each worker seeds Python's `random`, nbgrad's default generator (base seed + worker id, the
base seed drawn as PyTorch draws it) and NumPy's legacy global generator (from the same two
numbers; PyTorch derives NumPy's seed another way), then calls `worker_init_fn(worker_id)`.
NOTE: Numba's thread pool is not fork-safe: kernels in a forked worker run serially
(`nbgrad._core.threads`).
"""
import itertools
import multiprocessing
import os
import queue
import random
import traceback
import warnings

import numpy as np

from .._tensor import random as _random

__all__ = ["get_worker_info", "WorkerInfo"]

_CHECK_EVERY = 5.0  # seconds between checks that the workers are alive, while waiting


class WorkerInfo:
    """What `get_worker_info()` tells a worker: its id, the number of workers, its seed and
    its copy of the dataset."""

    __slots__ = ("id", "num_workers", "seed", "dataset")

    def __init__(self, id, num_workers, seed, dataset):
        self.id, self.num_workers, self.seed, self.dataset = id, num_workers, seed, dataset

    def __repr__(self):
        return (f"WorkerInfo(id={self.id}, num_workers={self.num_workers}, seed={self.seed}, "
                f"dataset={self.dataset!r})")


_info = None  # this process's WorkerInfo, in a worker process


def get_worker_info():
    """The WorkerInfo of the worker process calling it; None in the main process."""
    return _info


class _Failure:
    """An exception raised in a worker, carried to the main process and raised there with
    PyTorch's message ("Caught ValueError in DataLoader worker process 1. Original ...")."""

    def __init__(self, error, worker_id):
        self.type = type(error)
        self.where = f"in DataLoader worker process {worker_id}"
        self.text = traceback.format_exc()

    def reraise(self):
        message = f"Caught {self.type.__name__} {self.where}.\nOriginal {self.text}"
        try:
            error = self.type(message)
        except Exception:  # noqa: BLE001  (an exception type that wants other arguments)
            error = RuntimeError(message)
        raise error


class _Exhausted:
    """A worker's answer when its copy of an iterable dataset has no batch left."""


def _work(worker_id, num_workers, seed, dataset, fetch, init_fn, tasks, results):
    """A worker's loop: seed, initialize, then answer each (number, indices) task until None."""
    global _info
    _info = WorkerInfo(worker_id, num_workers, seed, dataset)
    random.seed(seed)
    _random.manual_seed(seed)
    np.random.seed([worker_id, seed & 0xFFFFFFFF, seed >> 32])
    failure = None
    if init_fn is not None:
        try:
            init_fn(worker_id)
        except Exception as error:  # noqa: BLE001  (carried to the main process)
            failure = _Failure(error, worker_id)
    while (task := tasks.get()) is not None:
        number, indices = task
        if failure is not None:
            results.put((number, failure))
            continue
        try:
            results.put((number, fetch(indices)))
        except StopIteration:
            results.put((number, _Exhausted()))
        except Exception as error:  # noqa: BLE001  (carried to the main process)
            results.put((number, _Failure(error, worker_id)))


def batches(loader, fetch, tasks, base_seed):
    """The batches of `loader` made by its worker processes: `tasks` yields what each batch
    is made from (lists of indices; for an iterable dataset, endless Nones)."""
    context = loader.multiprocessing_context
    if context is None or isinstance(context, str):
        context = multiprocessing.get_context(context)
    n = loader.num_workers
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    if n > cores:
        warnings.warn(f"This DataLoader will create {n} worker processes in total. Our suggested "
                      f"max number of worker in current system is {cores}, which is smaller than "
                      f"what this DataLoader is going to create. Please be aware that excessive "
                      f"worker creation might get DataLoader running slow or even freeze, lower "
                      f"the worker number to avoid potential slowness/freeze if necessary.",
                      stacklevel=3)
    results = context.Queue()
    task_queues = [context.Queue() for _ in range(n)]
    workers = [context.Process(target=_work, daemon=True, args=(
        i, n, base_seed + i, loader.dataset, fetch, loader.worker_init_fn, task_queues[i],
        results)) for i in range(n)]
    for worker in workers:
        worker.start()
    try:
        yield from _in_order(loader, workers, task_queues, results, tasks)
    finally:
        for task_queue in task_queues:
            task_queue.put(None)
        for worker in workers:
            worker.join(timeout=_CHECK_EVERY)
            if worker.is_alive():
                worker.terminate()


def _in_order(loader, workers, task_queues, results, tasks):
    """Hand tasks to the live workers round robin (at most prefetch_factor each in flight) and
    yield the answers in the order of the tasks."""
    live = list(range(len(workers)))
    turn = itertools.cycle(range(len(workers)))
    owner, ready = {}, {}
    numbers = itertools.count()
    tasks = iter(tasks)
    in_flight_limit = loader.prefetch_factor * len(workers)

    def hand_out():
        while len(owner) < in_flight_limit and live:
            task = next(tasks, StopIteration)
            if task is StopIteration:
                return
            worker = next(w for w in turn if w in live)
            number = next(numbers)
            owner[number] = worker
            task_queues[worker].put((number, task))

    hand_out()
    next_number = 0
    while owner:
        while next_number not in ready:
            number, answer = _receive(loader, workers, results)
            ready[number] = answer
        answer = ready.pop(next_number)
        worker = owner.pop(next_number)
        next_number += 1
        if isinstance(answer, _Exhausted):
            if worker in live:  # its later tasks answer _Exhausted too
                live.remove(worker)
        elif isinstance(answer, _Failure):
            answer.reraise()
        hand_out()
        if not isinstance(answer, _Exhausted):
            yield answer


def _receive(loader, workers, results):
    """The next (number, answer) from the workers, with PyTorch's errors for a timeout and
    for a worker that died."""
    waited = 0.0
    while True:
        wait = _CHECK_EVERY if not loader.timeout else min(_CHECK_EVERY, loader.timeout - waited)
        try:
            return results.get(timeout=wait)
        except queue.Empty:
            waited += wait
            if loader.timeout and waited >= loader.timeout:
                raise RuntimeError(f"DataLoader timed out after {loader.timeout} seconds") \
                    from None
            dead = [w.pid for w in workers if not w.is_alive()]
            if dead:
                raise RuntimeError(f"DataLoader worker (pid(s) "
                                   f"{', '.join(map(str, dead))}) exited unexpectedly") from None
