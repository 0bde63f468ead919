"""Counts that every step reports and the summary adds up: (name, n) pairs under one output tag.

Beam metrics are for watching a run; these counts are part of the output, so they travel as data and
are summed like any other PCollection, identically on every runner.
"""
from __future__ import annotations

import apache_beam as beam

TALLY = "tally"


def count(name, n: int = 1) -> beam.pvalue.TaggedOutput:
    """One contribution to the count `name` (a string or a tuple such as ("split_images", "train"))."""
    return beam.pvalue.TaggedOutput(TALLY, (name, n))
