"""The Beam steps of the graph: list and parse, shard, write, aggregate, stage rejections, publish.

Each composes the pure layers (formats, images, records, incremental) and counts what it does on a
TALLY output (tally.py), which publish adds up into summary.json.
"""
