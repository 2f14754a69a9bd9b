"""Background batch preparation: `prefetch(iterable)` runs an iterable in one background thread, so that batch k+1 is
made while the model trains on batch k.

The items are those of the plain iteration, in its order: one producer thread runs the source as it is (its random
draws stay one sequential stream), and a bounded queue hands the items over. The corruption engine's and the
loaders' torch, numpy and OpenCV kernels release the GIL, so on a CPU the next batch is corrupted while the training
step computes.

- An exception raised by the source is raised by the consumer (the same exception object, its traceback through the
  producer's frames kept).
- When the consumer stops early (a `break`, an exception in the loop, `close()`), the producer is told to stop, the
  source is closed in its thread, and the thread is joined before control returns: no thread outlives the loop.
- Threads. The producer runs torch single-threaded, as the loaders do between steps. `torch.set_num_threads` sets
  the calling thread's OpenMP team size, which other threads keep once they have run torch; it also sets the
  default with which a thread that has not yet run torch starts (measured with torch 2.14, OpenMP backend: a thread
  setting 1 leaves an initialised thread at 2, and a new thread, or an uninitialised main thread, starts at 1).
  So `prefetch` initialises the consumer's threads first (`torch.get_num_threads()`), and the producer puts the
  default back as it ends: the training thread keeps its threads, and only a thread that starts torch while a
  producer runs would start single-threaded.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterable, Iterator
from typing import TypeVar, cast

import torch

T = TypeVar("T")

_ITEM, _DONE, _ERROR = "item", "done", "error"
_POLL_S = 0.1  # how often a producer blocked on a full queue checks whether the consumer has stopped


def prefetch(iterable: Iterable[T], depth: int = 2) -> Iterator[T]:
    """The items of `iterable`, made by one background thread at most `depth` items ahead of the consumer.

    Nothing starts before the first item is asked for. Closing the returned generator (or dropping it, or leaving a
    `for` loop over it) stops and joins the producer.
    """
    if isinstance(depth, bool) or not isinstance(depth, int) or depth < 1:
        raise ValueError(f"prefetch depth must be a positive integer, got {depth!r}")
    return _prefetched(iterable, depth)


def _prefetched(iterable: Iterable[T], depth: int) -> Iterator[T]:
    # Reading it initialises this thread's team size before the producer changes the default.
    threads = torch.get_num_threads()
    handoff: queue.Queue[tuple[str, object]] = queue.Queue(maxsize=depth)
    stop = threading.Event()
    producer = threading.Thread(
        target=_produce, args=(iterable, handoff, stop, threads), name="comprobust-prefetch", daemon=True
    )
    producer.start()
    try:
        while True:
            kind, value = handoff.get()
            if kind == _ITEM:
                yield cast(T, value)
            elif kind == _DONE:
                return
            else:
                assert isinstance(value, BaseException)
                raise value
    finally:
        stop.set()
        while producer.is_alive():
            _drain(handoff)  # unblocks a producer waiting on a full queue
            producer.join(_POLL_S)


def _produce(iterable: Iterable[object], handoff: queue.Queue, stop: threading.Event, threads: int) -> None:
    torch.set_num_threads(1)
    try:
        iterator = iter(iterable)
        try:
            for item in iterator:
                if not _put(handoff, (_ITEM, item), stop):
                    return
            _put(handoff, (_DONE, None), stop)
        finally:
            close = getattr(iterator, "close", None)
            if close is not None:
                close()
    except BaseException as err:  # noqa: BLE001 (handed to the consumer, which raises it)
        _put(handoff, (_ERROR, err), stop)
    finally:
        torch.set_num_threads(threads)  # the default for threads that start torch later, as it was


def _put(handoff: queue.Queue, entry: tuple[str, object], stop: threading.Event) -> bool:
    """Put `entry` once there is room; False once the consumer has stopped (the producer then ends)."""
    while not stop.is_set():
        try:
            handoff.put(entry, timeout=_POLL_S)
            return not stop.is_set()  # a consumer that stopped meanwhile wants no further item
        except queue.Full:
            continue
    return False


def _drain(handoff: queue.Queue) -> None:
    while True:
        try:
            handoff.get_nowait()
        except queue.Empty:
            return
