"""Counts that every step reports and the summary adds up, as (name, n) pairs on the TALLY output.

Beam metrics are for watching a run; these counts are part of the output, so they travel as data and
are summed like any other PCollection, identically on every runner. A DoFn adds to them with
`self.count(...)`; they are summed per bundle and emitted once when the bundle ends, so counting
costs no extra elements per image.
"""
from __future__ import annotations

from collections import Counter

import apache_beam as beam
from apache_beam.transforms.window import GlobalWindow
from apache_beam.utils.windowed_value import WindowedValue

TALLY = "tally"


class CountingDoFn(beam.DoFn):
    """A DoFn with `count(name, n)`; names are strings or tuples such as ("split_images", "train")."""

    def start_bundle(self):
        self._counts = Counter()

    def count(self, name, n: int = 1) -> None:
        if n:
            self._counts[name] += n

    def finish_bundle(self):
        window = GlobalWindow()
        for name, n in self._counts.items():
            yield beam.pvalue.TaggedOutput(TALLY, WindowedValue((name, n), window.max_timestamp(), [window]))
        self._counts = Counter()
