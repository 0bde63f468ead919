"""The Flex Template's entry point: `python -m pipeline convert` with the template's parameters.

The launcher passes every parameter as `--name=value`; the convert command's on/off flags
(`--drop_duplicates`, `--include_masks`, `--incremental`, `--update_changed`, `--resplit`) take no
value, so `=true` becomes the bare flag and `=false` drops it; any other value is one error line.
Everything else (Beam and Dataflow options the service adds) passes through unchanged.
"""
from __future__ import annotations

import sys

from pipeline.cli import main
from pipeline.errors import UsageError
from pipeline.options import SWITCHES

_ON, _OFF = ("true", "1", "yes"), ("false", "0", "no", "")


def template_args(argv):
    args = []
    for arg in argv:
        name, equals, value = arg.partition("=")
        if equals and name.lstrip("-") in SWITCHES:
            given = value.strip().lower()
            if given not in _ON + _OFF:
                raise UsageError(f"{name} is a switch: true or false, not {value!r}")
            if given in _ON:
                args.append(name)
            continue
        args.append(arg)
    return args


if __name__ == "__main__":
    try:
        argv = template_args(sys.argv[1:])
    except UsageError as error:
        sys.exit(f"error: {error}")
    sys.exit(main(["convert", *argv]))
