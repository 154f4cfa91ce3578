"""The Prometheus text exposition format, version 0.0.4: metric families in, text out.

This module owns the format only -- names, ``# HELP`` and ``# TYPE`` lines, label escaping,
number spelling, histogram series -- so that what is measured (:mod:`aidp.app.metrics`) never
writes a quote or a newline itself. It is pure: no I/O, no clock. A family whose samples
repeat a label set is merged (values added), so the text never holds a duplicate series.

Rules of the format followed here (https://prometheus.io/docs/instrumenting/exposition_formats/):

* metric names match ``[a-zA-Z_:][a-zA-Z0-9_:]*``, label names ``[a-zA-Z_][a-zA-Z0-9_]*`` and
  never start with ``__``; a bad name is a programming error (``ValueError``);
* ``# HELP`` escapes ``\\`` and newline; label values escape ``\\``, ``"`` and newline;
* values are Go floats: ``+Inf``, ``-Inf``, ``NaN``; integers are written without a point;
* a histogram is ``NAME_bucket{le=...}`` (cumulative, ending with ``le="+Inf"``),
  ``NAME_sum`` and ``NAME_count`` per label set;
* the text ends with a newline.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

__all__ = ["CONTENT_TYPE", "Family", "Histogram", "escape_label_value", "format_value",
           "render"]

#: The Content-Type of the text this module writes.
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

_METRIC_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*\Z")
_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*\Z")

Labels = tuple[tuple[str, str], ...]


@dataclass
class Histogram:
    """Observations of one label set: bucket counts (not yet cumulative) by upper bound, their
    sum and their count. ``counts[i]`` is how many fell in ``(bounds[i-1], bounds[i]]``; those
    above the last bound count only in ``count``."""

    counts: list[int]
    total: float = 0.0
    count: int = 0


@dataclass
class Family:
    """One metric family: a name, its type, a help text and its samples by label set.

    ``kind`` is ``counter`` (the name should end in ``_total``), ``gauge`` or ``histogram``
    (``bounds``: the buckets' upper bounds, ascending; samples via :meth:`observe_many`)."""

    name: str
    kind: Literal["counter", "gauge", "histogram"]
    help: str
    bounds: tuple[float, ...] = ()
    values: dict[Labels, float] = field(default_factory=dict)
    histograms: dict[Labels, Histogram] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not _METRIC_NAME.match(self.name):
            raise ValueError(f"bad metric name {self.name!r}")
        if self.kind == "histogram" and list(self.bounds) != sorted(set(self.bounds)):
            raise ValueError(f"{self.name}: bucket bounds must ascend without repeats")

    def add(self, value: float, **labels: str) -> Family:
        """Add ``value`` to the sample of ``labels`` (a new sample starts at 0)."""
        key = _labels(labels)
        self.values[key] = self.values.get(key, 0.0) + value
        return self

    def observe_many(self, counts: Sequence[int], total: float, count: int,
                     **labels: str) -> Family:
        """Add pre-counted observations to the histogram of ``labels``: ``counts`` per bucket
        (see :class:`Histogram`), their ``total`` and ``count``."""
        if len(counts) != len(self.bounds):
            raise ValueError(f"{self.name}: {len(counts)} counts for {len(self.bounds)} buckets")
        key = _labels(labels)
        found = self.histograms.setdefault(key, Histogram([0] * len(self.bounds)))
        found.counts = [a + b for a, b in zip(found.counts, counts, strict=True)]
        found.total += total
        found.count += count
        return self


def _labels(labels: Mapping[str, str]) -> Labels:
    for name in labels:
        if not _LABEL_NAME.match(name) or name.startswith("__") or name == "le":
            raise ValueError(f"bad label name {name!r}")
    return tuple(sorted((name, str(value)) for name, value in labels.items()))


def escape_label_value(value: str) -> str:
    """``value`` inside a label's double quotes."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def format_value(value: float) -> str:
    """A sample value as the format spells it (``+Inf``, ``NaN``, ``3``, ``0.25``)."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if float(value).is_integer() and abs(value) < 1e15:
        return str(int(value))
    return repr(float(value))


def _series(name: str, labels: Iterable[tuple[str, str]], value: float) -> str:
    inner = ",".join(f'{k}="{escape_label_value(v)}"' for k, v in labels)
    return f"{name}{{{inner}}} {format_value(value)}" if inner else \
        f"{name} {format_value(value)}"


def render(families: Iterable[Family]) -> str:
    """The exposition text of ``families`` (each once, in the given order; samples sorted by
    label set so that equal input gives equal text)."""
    lines: list[str] = []
    seen: set[str] = set()
    for family in families:
        if family.name in seen:
            raise ValueError(f"metric family {family.name!r} twice")
        seen.add(family.name)
        lines.append(f"# HELP {family.name} {_escape_help(family.help)}")
        lines.append(f"# TYPE {family.name} {family.kind}")
        if family.kind != "histogram":
            lines.extend(_series(family.name, labels, value)
                         for labels, value in sorted(family.values.items()))
            continue
        for labels, histogram in sorted(family.histograms.items()):
            running = 0
            for bound, count in zip(family.bounds, histogram.counts, strict=True):
                running += count
                lines.append(_series(f"{family.name}_bucket",
                                     (*labels, ("le", format_value(bound))), running))
            lines.append(_series(f"{family.name}_bucket", (*labels, ("le", "+Inf")),
                                 histogram.count))
            lines.append(_series(f"{family.name}_sum", labels, histogram.total))
            lines.append(_series(f"{family.name}_count", labels, histogram.count))
    return "\n".join(lines) + "\n"
