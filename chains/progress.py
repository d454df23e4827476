"""Progress of a multi-step chain: a tqdm bar that names the step ("chunk 3 of 12"), or your callback.

    from chains.progress import Progress
    progress = Progress(True)              # or a callback(done, total) / callback(done, total, label)
    progress.plan(13)
    progress.begin("chunk 1 of 12")        # shown while the step runs
    progress.tick("chunk 1 of 12")         # done
"""

from __future__ import annotations

import inspect
import logging
from typing import Any

log = logging.getLogger(__name__)


class Progress:
    """Steps done out of a total that may grow (a map-reduce may need extra collapse steps).

    Args:
        target: True for a tqdm bar on stderr, a callable ``(done, total)`` or ``(done, total, label)``,
            or None / False for nothing.
    """

    def __init__(self, target: Any = None) -> None:
        self.done = self.total = 0
        self.callback = target if callable(target) else None
        self.with_label = self.callback is not None and _arity(self.callback) >= 3
        self.bar = None
        if target is True:
            from tqdm.auto import tqdm

            self.bar = tqdm(desc="summarizing", unit="step", disable=None)

    def plan(self, total: int) -> None:
        """Set (or raise) the number of steps."""
        self.total = max(total, self.done)
        if self.bar is not None:
            self.bar.total = self.total
            self.bar.refresh()

    def begin(self, label: str) -> None:
        """A step starts: the bar shows ``label`` while it runs."""
        if self.bar is not None:
            self.bar.set_description_str(label)

    def tick(self, label: str) -> None:
        """One step finished; ``label`` says which (logged, and passed to a 3-argument callback)."""
        self.done += 1
        self.total = max(self.total, self.done)
        log.info("step %d of %d: %s", self.done, self.total, label)
        if self.bar is not None:
            self.bar.total = self.total
            self.bar.update(1)
            if self.done >= self.total:
                self.bar.close()
        elif self.callback is not None:
            if self.with_label:
                self.callback(self.done, self.total, label)
            else:
                self.callback(self.done, self.total)


def _arity(fn: Any) -> int:
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return 2
    if any(p.kind is p.VAR_POSITIONAL for p in params):
        return 3
    return sum(p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) for p in params)


__all__ = ["Progress"]
