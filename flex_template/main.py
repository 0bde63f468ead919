"""The Flex Template's entry point: `python -m pipeline convert` with the template's parameters.

The launcher passes every parameter as `--name=value`; the convert command's on/off flags
(`--drop_duplicates`, `--include_masks`, `--incremental`, `--update_changed`, `--resplit`) take no value, so `=true` becomes the bare flag and `=false`
drops it. Everything else (Beam and Dataflow options the service adds) passes through unchanged.
"""
from __future__ import annotations

import sys

from pipeline.cli import main

SWITCHES = ("drop_duplicates", "include_masks", "incremental", "update_changed", "resplit")


def template_args(argv):
    args = []
    for arg in argv:
        name, equals, value = arg.partition("=")
        if equals and name.lstrip("-") in SWITCHES:
            if value.strip().lower() in ("true", "1", "yes"):
                args.append(name)
            continue
        args.append(arg)
    return args


if __name__ == "__main__":
    sys.exit(main(["convert", *template_args(sys.argv[1:])]))
