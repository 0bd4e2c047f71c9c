"""A family's samples for one reader slot: sources mixed by weight, a seeded shuffle
buffer, decoding, and the accounting of skipped samples.

Everything random draws from one generator whose state is part of the position, and the
buffer is saved as sample references, so `load_state_dict(state_dict())` continues with
exactly the samples the uninterrupted pipeline would have produced.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict

import numpy as np

from mmtrain.data.readers import ReaderPosition, SampleRef, SourceReader, name_key
from mmtrain.data.shards import BadSample, Sample
from mmtrain.data.sources import DataError

log = logging.getLogger(__name__)

LOGGED_PER_REASON = 10  # then every 1000th, so a broken shard cannot flood the log


class FamilyPipeline:
    def __init__(
        self,
        family: str,
        sources: dict[str, list[str]],
        weights: dict[str, float],
        decode: Callable[[Sample], Sample],
        *,
        seed: int,
        slot: int,
        n_slots: int,
        resampled: bool = False,
        shuffle_buffer: int = 0,
        max_skip_rate: float = 0.1,
        min_samples_for_rate: int = 200,
        max_epochs: int | None = None,
        first_epoch: int = 0,
    ) -> None:
        self.family, self.decode, self.weights = family, decode, weights
        self.names = sorted(sources)
        self.readers = {
            name: SourceReader(name, sources[name], seed=seed, slot=slot, n_slots=n_slots,
                               resampled=resampled, max_epochs=max_epochs, first_epoch=first_epoch)
            for name in self.names
        }
        self.shuffle_buffer = shuffle_buffer
        self.max_skip_rate, self.min_samples_for_rate = max_skip_rate, min_samples_for_rate
        self.rng = np.random.default_rng([seed, name_key(family), slot, 11])
        self.iters: dict[str, object] = {}
        self.exhausted: set[str] = set()
        self.buffer: list[tuple[str, SampleRef, Sample]] = []
        self.seen = 0
        self.skipped: Counter[str] = Counter()

    # ---- reading ----------------------------------------------------------------------
    def _pull(self) -> tuple[str, SampleRef, Sample] | None:
        while live := [n for n in self.names if n not in self.exhausted]:
            if len(live) == 1:
                name = live[0]
            else:
                p = np.array([self.weights[n] for n in live], dtype=np.float64)
                name = live[int(self.rng.choice(len(live), p=p / p.sum()))]
            if name not in self.iters:
                self.iters[name] = iter(self.readers[name])
            item = next(self.iters[name], None)
            if item is not None:
                return name, *item
            self.exhausted.add(name)  # a finite (max_epochs) reader ran out
        return None

    def _next_raw(self) -> tuple[str, SampleRef, Sample] | None:
        while len(self.buffer) < max(1, self.shuffle_buffer):
            item = self._pull()
            if item is None:
                break
            self.buffer.append(item)
        if not self.buffer:
            return None
        i = int(self.rng.integers(len(self.buffer))) if self.shuffle_buffer > 1 else 0
        self.buffer[i], self.buffer[-1] = self.buffer[-1], self.buffer[i]
        return self.buffer.pop()

    def next_sample(self) -> Sample | None:
        """The next usable decoded sample; None once a finite pipeline is exhausted."""
        while (item := self._next_raw()) is not None:
            source, _, raw = item
            self.seen += 1
            try:
                return self.decode(raw)
            except BadSample as bad:
                self._skip(bad, source, raw)
        return None

    def _skip(self, bad: BadSample, source: str, raw: Sample) -> None:
        self.skipped[bad.reason] += 1
        count = self.skipped[bad.reason]
        if count <= LOGGED_PER_REASON or count % 1000 == 0:
            log.warning("skipped sample %s in %s (source %s): %s [%d so far for this reason]",
                        raw.get("__key__"), raw.get("__url__"), source, bad, count)
        total = sum(self.skipped.values())
        if self.seen >= self.min_samples_for_rate and total > self.max_skip_rate * self.seen:
            reasons = ", ".join(f"{r} {n}" for r, n in self.skipped.most_common())
            raise DataError(
                f"family {self.family}: {total} of the {self.seen} samples read so far were "
                f"skipped ({reasons}), more than data.max_skip_rate={self.max_skip_rate}. "
                "The data is mostly broken: look at it with `python -m mmtrain.data inspect "
                "SHARDS`, fix or drop the bad shards, or raise data.max_skip_rate")

    # ---- position -----------------------------------------------------------------------
    def counts(self) -> dict[str, int]:
        """Samples read and skipped (by reason) so far, plus unreadable shard tails."""
        out = {"seen": self.seen, **{f"skipped/{r}": n for r, n in self.skipped.items()}}
        shard_errors = sum(r.shard_errors for r in self.readers.values())
        if shard_errors:
            out["unreadable_shards"] = shard_errors
        return out

    def state_dict(self) -> dict:
        return {
            "readers": {n: asdict(r.pos) for n, r in self.readers.items()},
            "shard_errors": {n: r.shard_errors for n, r in self.readers.items()},
            "exhausted": sorted(self.exhausted),
            "rng": self.rng.bit_generator.state,
            "buffer": [(source, ref) for source, ref, _ in self.buffer],
            "seen": self.seen,
            "skipped": dict(self.skipped),
        }

    def load_state_dict(self, state: dict) -> None:
        if sorted(state["readers"]) != self.names:
            raise DataError(f"family {self.family}: the saved data position has sources "
                            f"{sorted(state['readers'])}, the config has {self.names}")
        for name, pos in state["readers"].items():
            self.readers[name].pos = ReaderPosition(**pos)
            self.readers[name].shard_errors = state["shard_errors"][name]
        self.iters = {}
        self.exhausted = set(state["exhausted"])
        self.rng.bit_generator.state = state["rng"]
        self.seen, self.skipped = state["seen"], Counter(state["skipped"])
        refs = [(source, tuple(ref)) for source, ref in state["buffer"]]
        fetched = {name: self.readers[name].fetch([r for s, r in refs if s == name])
                   for name in {s for s, _ in refs}}
        self.buffer = [(source, ref, fetched[source][ref]) for source, ref in refs]
