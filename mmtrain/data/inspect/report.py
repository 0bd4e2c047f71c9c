"""What `inspect` found, as dataclasses (the Python API and `--json`) and as text."""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import asdict, dataclass, field

EXAMPLES_PER_REASON = 5  # bad-sample examples kept per reason (the counts are exact)
KEYS_PER_SHARD = 3
SHARDS_SHOWN = 20  # text output lists at most this many shards; --json lists all


@dataclass
class BadExample:
    shard: str
    key: str | None  # None for an unreadable shard that broke before its first sample
    detail: str


@dataclass
class ShardReport:
    shard: str
    samples: int = 0
    bytes: int = 0  # payload bytes of the samples read (tar headers not counted)
    file_bytes: int | None = None  # size on disk; None for a `pipe:` shard
    fields: dict[str, int] = field(default_factory=dict)  # extension -> samples carrying it
    bad: dict[str, int] = field(default_factory=dict)  # reason -> samples
    example_keys: list[str] = field(default_factory=list)
    complete: bool = False  # read to its end (False: --limit stopped it, or it broke)
    error: str | None = None  # why the shard stopped being readable


@dataclass
class ManifestMismatch:
    manifest: str
    shard: str
    problem: str  # what differs, in words


@dataclass
class Report:
    pattern: str
    family: str | None
    limit: int | None
    shards_matched: int  # shards the pattern names
    shards: list[ShardReport] = field(default_factory=list)  # the ones read, in order
    samples: int = 0
    bytes: int = 0
    file_bytes: int = 0
    fields: dict[str, int] = field(default_factory=dict)
    family_fields: dict[str, int] | None = None  # family field -> samples carrying it
    image_sizes: dict[str, int] = field(default_factory=dict)  # "WxH" -> samples (top 5)
    bad: dict[str, int] = field(default_factory=dict)  # reason -> samples (or shards)
    bad_examples: dict[str, list[BadExample]] = field(default_factory=dict)
    example_keys: list[str] = field(default_factory=list)
    manifests: list[str] = field(default_factory=list)  # manifests compared with the shards
    manifest_shards: int = 0  # shards whose counts were compared
    manifest_mismatches: list[ManifestMismatch] = field(default_factory=list)
    sheet: str | None = None  # contact sheet path, when one was written
    seconds: float = 0.0

    @property
    def bad_samples(self) -> int:
        return sum(n for reason, n in self.bad.items() if reason != "unreadable_shard")

    @property
    def ok(self) -> bool:
        """No bad sample, no unreadable shard, no manifest mismatch."""
        return not self.bad and not self.manifest_mismatches

    def to_dict(self) -> dict:
        return {**asdict(self), "bad_samples": self.bad_samples, "ok": self.ok}

    # ---- building it while streaming ---------------------------------------------------
    def add_bad(self, shard: ShardReport, reason: str, key: str | None, detail: str) -> None:
        shard.bad[reason] = shard.bad.get(reason, 0) + 1
        self.bad[reason] = self.bad.get(reason, 0) + 1
        examples = self.bad_examples.setdefault(reason, [])
        if len(examples) < EXAMPLES_PER_REASON:
            examples.append(BadExample(shard.shard, key, detail))

    def finish_shard(self, shard: ShardReport) -> None:
        self.shards.append(shard)
        self.samples += shard.samples
        self.bytes += shard.bytes
        self.file_bytes += shard.file_bytes or 0
        for ext, n in shard.fields.items():
            self.fields[ext] = self.fields.get(ext, 0) + n
        for key in shard.example_keys:
            if len(self.example_keys) < 5:
                self.example_keys.append(key)


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"  # pragma: no cover


def _fields(fields: dict[str, int], samples: int) -> str:
    items = sorted(fields.items(), key=lambda kv: (-kv[1], kv[0]))
    return "  ".join(
        f"{ext} {n}" + ("" if n == samples else f" ({100 * n / max(samples, 1):.0f}%)")
        for ext, n in items
    ) or "(none)"


def _namer(report: Report):
    """Shard names relative to their common directory, when the shards share one."""
    local = [s.shard for s in report.shards if not s.shard.startswith("pipe:")]
    base = os.path.commonpath([os.path.dirname(s) for s in local]) if local else ""
    return (lambda s: os.path.relpath(s, base) if base and not s.startswith("pipe:") else s), base


def format_text(report: Report) -> str:
    name, base = _namer(report)
    limit = f", --limit {report.limit}" if report.limit is not None else ""
    lines = [
        f"inspect {report.pattern}" + (f"  (family {report.family})" if report.family else ""),
        f"  shards:   {len(report.shards)} read of {report.shards_matched} matched{limit}"
        + (f"  (in {base})" if base else ""),
        f"  samples:  {report.samples}  in {report.seconds:.1f} s",
        f"  bytes:    {human_bytes(report.bytes)} of sample data"
        + (f", {human_bytes(report.file_bytes)} on disk" if report.file_bytes else ""),
        f"  fields:   {_fields(report.fields, report.samples)}",
    ]
    if report.family_fields is not None:
        lines.append(f"  {report.family} fields: " + "  ".join(
            f"{f} {n}/{report.samples}" for f, n in report.family_fields.items()))
    if report.image_sizes:
        lines.append("  image sizes: " + "  ".join(
            f"{size} {n}" for size, n in report.image_sizes.items()))
    lines.append(f"  example keys: {', '.join(report.example_keys) or '(none)'}")

    lines += ["", "per shard:"]
    shown = sorted(report.shards, key=lambda s: not (s.bad or s.error))[:SHARDS_SHOWN]
    for s in (s for s in report.shards if s in shown):
        state = "" if s.complete else ("  BROKEN" if s.error else "  (stopped by --limit)")
        bad = f"  bad {sum(s.bad.values())}" if s.bad else ""
        lines.append(f"  {name(s.shard)}: {s.samples} samples, {human_bytes(s.bytes)}{bad}{state}")
        lines.append(f"      fields {_fields(s.fields, s.samples)}")
        lines.append(f"      keys   {', '.join(s.example_keys) or '(none)'}")
    if len(report.shards) > len(shown):
        lines.append(f"  ... {len(report.shards) - len(shown)} more clean shard(s); "
                     "--json lists every shard")

    lines.append("")
    if report.bad:
        pct = 100 * report.bad_samples / max(report.samples, 1)
        unreadable = report.bad.get("unreadable_shard", 0)
        lines.append(f"bad samples: {report.bad_samples} of {report.samples} ({pct:.1f}%)"
                     + (f"; unreadable shards: {unreadable}" if unreadable else ""))
        width = max(len(r) for r in report.bad)
        for reason, n in sorted(report.bad.items(),
                                  key=lambda kv: (kv[0] == "unreadable_shard", -kv[1])):
            lines.append(f"  {reason:<{width}}  {n}")
            for ex in report.bad_examples.get(reason, []):
                lines.append(f"      {name(ex.shard)}  {ex.key or '-'}: {ex.detail}")
    else:
        lines.append("bad samples: none")

    if report.manifests:
        lines.append("")
        lines.append(f"manifest(s): {', '.join(report.manifests)}")
        if report.manifest_mismatches:
            lines.append(f"  {len(report.manifest_mismatches)} mismatch(es) "
                         f"({report.manifest_shards} shard(s) compared):")
            lines += [f"  {name(m.shard)}: {m.problem}" for m in report.manifest_mismatches]
        else:
            lines.append(f"  {report.manifest_shards} shard(s) compared: sample counts and "
                         "sizes match")
    if report.sheet:
        lines += ["", f"contact sheet: {report.sheet}"]
    return "\n".join(lines)


def top_sizes(sizes: Counter, n: int = 5) -> dict[str, int]:
    return {size: count for size, count in sizes.most_common(n)}
