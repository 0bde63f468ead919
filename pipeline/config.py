"""Run settings from a YAML file: the same keys as the flags, flags winning.

Keys the converter does not know are Apache Beam pipeline options (runner, project, region, ...), so
one file can describe a whole run, local or on Dataflow.
"""
from __future__ import annotations

import os
import stat
from typing import Any, Dict, List, Tuple

import yaml

from pipeline.errors import UsageError


def load_config(path: str) -> Dict[str, Any]:
    try:
        if "://" in path:  # gs:// and other Beam filesystems; a local file needs no Beam import
            from transforms.beam.read import read_file

            text = read_file(path)
        else:
            if not stat.S_ISREG(os.stat(path).st_mode):  # a named pipe would block the read
                raise OSError(f"{path} is not a regular file")
            with open(path, "rb") as handle:
                text = handle.read()
    except Exception as error:
        raise UsageError(f"cannot read config {path}: {error}") from None
    try:
        settings = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise UsageError(f"config {path} is not valid YAML: {str(error).splitlines()[0]}") from None
    if settings is None:
        return {}
    if not isinstance(settings, dict):
        raise UsageError(f"config {path} must be a mapping of setting: value")
    return {str(key).replace("-", "_"): value for key, value in settings.items()}


def beam_flags(settings: Dict[str, Any]) -> List[str]:
    """Beam options from a config as command-line flags: `runner: DataflowRunner` -> --runner=DataflowRunner.

    `key: true` is the switch --key and `key: false` is --no_key; a switch with no --no_ twin is
    refused when the options are checked, never silently dropped.
    """
    flags = []
    for key, value in settings.items():
        if value is None:
            continue
        if value is False:  # Beam's switches that default on have a --no_ twin (use_public_ips: false)
            flags.append(f"--no_{key}")
        elif value is True:
            flags.append(f"--{key}")
        elif isinstance(value, (list, tuple)):
            flags.extend(f"--{key}={item}" for item in value)
        else:
            flags.append(f"--{key}={value}")
    return flags


def split_settings(settings: Dict[str, Any], own_keys) -> Tuple[Dict[str, Any], Dict[str, Any]]:
    own = {key: value for key, value in settings.items() if key in own_keys}
    beam = {key: value for key, value in settings.items() if key not in own_keys}
    return own, beam


def effective_setting(settings: Dict[str, Any], argv: List[str], key: str) -> Any:
    """`key`'s value once `argv` (flags that override the config) is applied: the last flag wins.

    Accepts `--key value`, `--key=value` and `--key-name` spellings; a flag with no value is True.
    """
    value = settings.get(key)
    spellings = {f"--{key}", f"--{key.replace('_', '-')}"}
    for index, arg in enumerate(argv):
        name, equals, given = arg.partition("=")
        if name not in spellings:
            continue
        if equals:
            value = given
        elif index + 1 < len(argv) and not argv[index + 1].startswith("--"):
            value = argv[index + 1]
        else:
            value = True
    return value
