"""Gather the next batch on a background thread while the current one trains (the data path never stalls the loop).

Only pure work goes to the thread (index -> token rows from the token store or the replay source): everything that
draws random numbers (MLM masking) stays on the loop's thread in step order, so a run is bit-identical with and
without prefetching, and a checkpoint never holds an RNG state that is ahead of its step. Token gathers are NumPy /
torch copies that release the GIL, so they overlap with the step's compute.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")


def prefetched(load: Callable[[Item], Result], items: Iterable[Item], enabled: bool = True) -> Iterator[Result]:
    """`load(item)` for each item in order, the next one computed in the background while the caller uses the
    current; errors in `load` surface at the item that raised. Closing the iterator early waits for at most the
    one gather in flight."""
    if not enabled:
        for item in items:
            yield load(item)
        return
    iterator = iter(items)
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="sleeptrain-prefetch") as pool:
        pending = next((pool.submit(load, item) for item in iterator), None)
        while pending is not None:
            current = pending.result()
            pending = next((pool.submit(load, item) for item in iterator), None)
            yield current
