"""The scan: stream every sample of every shard once, check it, count it, forget it."""

from __future__ import annotations

import os
import sys
import time
from collections import Counter
from contextlib import closing

from tqdm import tqdm

from mmtrain.data.inspect import checks, manifests
from mmtrain.data.inspect.report import (
    KEYS_PER_SHARD,
    BadExample,
    Report,
    ShardReport,
    top_sizes,
)
from mmtrain.data.inspect.sheet import SheetCollector
from mmtrain.data.shards import ShardReadError, read_shard
from mmtrain.data.sources import expand_shards


def inspect_shards(
    pattern: str,
    family: str | None = None,
    limit: int | None = None,
    *,
    resolution: int | None = None,
    sheet: SheetCollector | None = None,
    progress: bool = False,
) -> Report:
    """Reads the shards `pattern` names (a directory, glob, brace range or `pipe:`
    command) and reports what they hold and which samples are bad, by reason.

    family: check samples with `mmtrain.families.<family>.batch.decoder` (its reasons);
        None checks every field generically (images decode, json parses, ...).
    limit: stop after this many samples (None: read everything).
    resolution: passed to the family decoder (default: the family config's default).
    sheet: a SheetCollector to offer samples to (for a contact sheet).
    Raises DataError (with the fix) for a pattern that names no readable shards, or an
    unknown family.
    """
    if limit is not None and limit < 1:
        raise ValueError(f"limit must be >= 1, got {limit}")
    check, family_fields = (checks.family_check(family, resolution) if family
                            else (checks.generic_check, None))
    shards = expand_shards(pattern, what="inspect")
    report = Report(pattern=pattern, family=family, limit=limit, shards_matched=len(shards))
    if family_fields is not None:
        report.family_fields = dict.fromkeys(family_fields, 0)
    sizes: Counter = Counter()
    kinds = _FieldSets() if family is None else None
    started = time.perf_counter()
    bar = tqdm(total=limit, unit="sample", desc="inspect", file=sys.stderr,
               disable=not progress, mininterval=0.5, dynamic_ncols=True)
    with bar:
        for number, url in enumerate(shards, start=1):
            if limit is not None and report.samples >= limit:
                break
            bar.set_postfix_str(f"shard {number}/{len(shards)}, bad {sum(report.bad.values())}")
            budget = None if limit is None else limit - report.samples
            shard = _scan_shard(url, report, check, family_fields, sizes, sheet, budget, bar,
                                kinds)
            report.finish_shard(shard)
    if kinds is not None:
        kinds.report_missing(report)
        for tile in sheet.tiles if sheet is not None else []:
            tile.reason = tile.reason or kinds.reasons.get(tile.fields)
    report.image_sizes = top_sizes(sizes)
    manifests.compare(report, manifests.find_manifests([s.shard for s in report.shards]))
    report.seconds = round(time.perf_counter() - started, 3)
    return report


def _scan_shard(url: str, report: Report, check, family_fields: dict | None,
                sizes: Counter, sheet: SheetCollector | None, budget: int | None,
                bar: tqdm, kinds: _FieldSets | None) -> ShardReport:
    shard = ShardReport(shard=url)
    if not url.startswith("pipe:"):
        shard.file_bytes = os.path.getsize(url)
    fields = Counter()
    last_key = None
    try:
        with closing(read_shard(url)) as samples:
            for _, raw in samples:
                key = raw.get("__key__")
                last_key = key
                shard.samples += 1
                data = checks.payload(raw)
                shard.bytes += sum(len(v) for v in data.values() if isinstance(v, bytes))
                fields.update(data.keys())
                if len(shard.example_keys) < KEYS_PER_SHARD:
                    shard.example_keys.append(str(key))
                if family_fields is not None:
                    for name, exts in family_fields.items():
                        report.family_fields[name] += any(e in raw for e in exts)
                size = checks.image_size(raw)
                if size:
                    sizes[size] += 1
                problem = check(raw)
                if problem:
                    report.add_bad(shard, problem[0], key, problem[1])
                elif kinds is not None:
                    kinds.add(shard, key, data)
                if sheet is not None and not sheet.full:
                    sheet.add(raw, problem[0] if problem else None)
                bar.update()
                if budget is not None and shard.samples >= budget:
                    break
            else:
                shard.complete = True
    except ShardReadError as err:
        where = f"after {err.samples_read} sample(s)" + (
            f" (last good key {last_key})" if last_key is not None else "")
        shard.error = f"{where}: {type(err.cause).__name__}: {err.cause}"
        report.add_bad(shard, "unreadable_shard", None, shard.error)
    shard.fields = dict(sorted(fields.items(), key=lambda kv: (-kv[1], kv[0])))
    return shard


class _FieldSets:
    """Without a family nothing says which fields a sample needs, so the fields most good
    samples carry define it: a sample lacking one of them counts as `missing_<field>`
    (images of any format count as one field, `image`). Kept per field set, which are
    few, so this streams."""

    def __init__(self) -> None:
        self.counts: Counter = Counter()  # field set -> good samples
        self.per_shard: dict[int, Counter] = {}  # id(shard report) -> field set -> samples
        self.shards: dict[int, ShardReport] = {}
        self.examples: dict[frozenset, list[tuple[str, str]]] = {}
        self.reasons: dict[frozenset, str] = {}  # field set -> reason, once measured

    def add(self, shard: ShardReport, key, data: dict) -> None:
        kind = checks.field_set(data)
        self.counts[kind] += 1
        self.shards.setdefault(id(shard), shard)
        self.per_shard.setdefault(id(shard), Counter())[kind] += 1
        examples = self.examples.setdefault(kind, [])
        if len(examples) < 5:
            examples.append((shard.shard, str(key)))

    def report_missing(self, report: Report) -> None:
        if not self.counts:
            return
        common, n = self.counts.most_common(1)[0]
        total = sum(self.counts.values())
        if 2 * n <= total:
            return  # no field set most samples share: nothing to measure against
        lacking = {kind: sorted(common - kind) for kind in self.counts if common - kind}
        for kind, fields in lacking.items():
            reason = self.reasons[kind] = f"missing_{fields[0]}"
            detail = f"lacks {', '.join(fields)}, which {n} of {total} good samples carry"
            for shard_id, kinds in self.per_shard.items():
                shard = self.shards[shard_id]
                shard.bad[reason] = shard.bad.get(reason, 0) + kinds.get(kind, 0)
                if not shard.bad[reason]:
                    del shard.bad[reason]
            report.bad[reason] = report.bad.get(reason, 0) + self.counts[kind]
            examples = report.bad_examples.setdefault(reason, [])
            for shard_name, key in self.examples[kind][: 5 - len(examples)]:
                examples.append(BadExample(shard_name, key, detail))
