"""The convert command's settings: flags, config file and defaults merged, checked, resolved.

Everything a user can get wrong is caught here, before a pipeline is built, as one UsageError line.
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import difflib
import importlib
import io
import os
import re
import time
from typing import Any, Dict, List, Optional, Sequence, Tuple

import yaml
from apache_beam.options.pipeline_options import PipelineOptions

from pipeline.config import beam_flags, load_config, split_settings
from pipeline.errors import UsageError
from pipeline.local_runner import LocalOptions  # noqa: F401  (registers --local_processes with Beam)
from pipeline.sources import Source, absolute, as_list, resolve_sources
from transforms import storage
from transforms.records.encode import ImagePolicy
from transforms.formats import FORMATS
from transforms.formats import DEFAULT_MAX_ANNOTATION_BYTES
from transforms.images.prep import DEFAULT_MAX_PIXELS, EXIF_AUTO, EXIF_MODES, VALIDATE_MODES, VALIDATE_STRUCTURE
from transforms.label_map import LabelMapError, parse_label_map
from transforms.beam.read import read_file
from transforms.splits import SplitError, Splits, parse_splits

DEFAULTS: Dict[str, Any] = {
    "format": None,
    "annotations": None,
    "images": None,
    "output": None,
    "splits": "train=0.8,val=0.1,test=0.1",
    "seed": 0,
    "num_shards": 0,
    "name": "dataset",
    "label_map": None,
    "exif_orientation": EXIF_AUTO,
    "validate_images": VALIDATE_STRUCTURE,
    "drop_duplicates": False,
    "include_masks": False,
    "classes": None,
    "class_map": None,
    "incremental": False,
    "update_changed": False,
    "resplit": False,
    "lock_timeout_hours": 24,
    "class_ids": "source",
    "skip_difficult": False,
    "keep_unlabeled": False,
    "replace": False,
    "max_rejected": 0.5,
    "max_deleted": 0.1,
    "max_pixels": DEFAULT_MAX_PIXELS,
    "max_annotation_bytes": DEFAULT_MAX_ANNOTATION_BYTES,
    "allow_local_paths": False,
}
SWITCHES = tuple(name for name, default in DEFAULTS.items() if isinstance(default, bool))  # on/off flags
_DATASET_NAME = re.compile(r"^[A-Za-z0-9_]+$")
SOURCE_SPLITS = "source"
CLASS_ID_RULES = ("source", "sorted")


@dataclasses.dataclass(frozen=True)
class ConvertJob:
    sources: Tuple[Source, ...]
    output: str
    splits: Optional[Splits]  # None: each image keeps the split its source names (--splits source)
    seed: int
    num_shards: int  # 0: sized from the data
    name: str
    label_map_seed: Dict[str, int]
    image_policy: ImagePolicy
    drop_duplicates: bool
    class_map: Dict[str, Optional[str]]
    settings: Dict[str, Any]  # the effective settings, recorded in summary.json
    beam_args: List[str]
    started_at: float
    incremental: bool = False  # add only what is new to the published dataset (manifest.json)
    update_changed: bool = False  # rewrite shards holding changed or deleted source items
    resplit: bool = False  # incremental, but the splits/seed/name changed: write a new dataset, ids kept
    lock_timeout_hours: float = 24.0
    class_ids: str = "source"  # --class_ids: label ids as the source numbers its classes, or sorted by name
    replace: bool = False  # replace a dataset of another --name in --output
    max_rejected: float = 0.5  # refuse to publish when more of the annotated images are rejected
    max_deleted: float = 0.1  # refuse an incremental run that would delete more of the published images
    manifest: Optional[Dict[str, Any]] = None  # the published state an incremental run starts from
    run_log: Optional[str] = None  # incremental runs: OUTPUT/runs/STAMP-ID.json, this run's summary


def refresh_incremental(job: ConvertJob) -> ConvertJob:
    """The job with the manifest read again (after the lock is held and a killed run's publish finished)."""
    manifest, label_map_seed = _incremental_state(
        job.settings, job.output, job.name, job.seed, _label_map_seed(job.settings.get("label_map"))
    )
    return dataclasses.replace(job, manifest=manifest, label_map_seed=label_map_seed)


def add_convert_arguments(parser: argparse.ArgumentParser) -> None:
    """The convert flags. Defaults are applied after the config file, so flags are SUPPRESSed here."""
    add = lambda *names, **kwargs: parser.add_argument(*names, default=argparse.SUPPRESS, **kwargs)
    add("--format", metavar="FORMAT", help=f"one of {', '.join(FORMATS)}; detected from the files when omitted")
    add("--annotations", metavar="PATH", action="append",
        help="annotation folder, file or glob (local or gs://); repeat it to merge sources, "
        "optionally prefixed with their format (coco:path/instances.json)")
    add("--images", metavar="PATH", action="append",
        help="folder the annotations' image file names are relative to; once, or once per --annotations")
    add("--output", metavar="PATH", help="output folder or gs:// prefix")
    add("--splits", metavar="SPEC",
        help=f"NAME=FRACTION,... summing to 1 (default {DEFAULTS['splits']}), or `source` to keep the "
        "splits the dataset came with (train/ valid/ test/ folders, instances_train.json, CVAT subsets)")
    add("--seed", type=int, metavar="N", help="seed of the split and shard assignment (default 0)")
    add("--num_shards", type=int, metavar="N", help="shards per split; 0 sizes them from the data (default)")
    add("--name", metavar="NAME", help="dataset name, the prefix of the shard files (default dataset)")
    add("--label_map", metavar="FILE", help="existing label_map.pbtxt whose ids are kept; new classes get the next ids")
    add("--classes", metavar="FILE",
        help="class names by index for YOLO: a names file (one per line) or a data.yaml; found beside the labels when omitted")
    add("--class_map", metavar="YAML",
        help="rename classes across sources: `source name: target name`, or `: null` to drop that class's boxes")
    add("--exif_orientation", metavar="MODE",
        help="auto (default): rotate photos upright unless the annotation states the stored size; "
        "apply: always rotate; ignore: never")
    add("--validate_images", metavar="MODE",
        help="structure (default): headers and end markers; full: decode every pixel too")
    add("--drop_duplicates", action="store_true",
        help="keep one of each set of byte-identical images (the first by path); costs a second read of each image")
    add("--include_masks", action="store_true",
        help="write image/object/mask: COCO polygon and RLE segmentations as PNG instance masks (needs pycocotools)")
    add("--incremental", action="store_true",
        help="add to the dataset already in --output: write only images not yet ingested, in new shard files; "
        "class ids and splits never move; the published state is OUTPUT/manifest.json")
    add("--update_changed", action="store_true",
        help="with --incremental: re-write images whose annotations changed and remove deleted ones "
        "(the shards holding them are rewritten); without it they are only reported")
    add("--resplit", action="store_true",
        help="with --incremental: accept changed --splits/--seed/--name by writing the whole dataset anew (class ids kept)")
    add("--lock_timeout_hours", type=float, metavar="H",
        help="a run's OUTPUT/.lock older than this is stale and taken over (default 24)")
    add("--class_ids", metavar="RULE",
        help="source (default): label ids as the source numbers its classes (COCO category_id, YOLO index + 1, "
        "CVAT label order), other formats sorted by name; sorted: every class sorted by name, 1..N")
    add("--skip_difficult", action="store_true",
        help="drop boxes marked difficult (VOC <difficult>1</difficult>), counted as boxes.dropped_difficult")
    add("--keep_unlabeled", action="store_true",
        help="write an image whose boxes were all rejected as a negative example (default: reject it, "
        "image_boxes_all_rejected: it would teach the model that nothing is there)")
    add("--replace", action="store_true",
        help="replace the dataset of another --name that --output holds (default: refused, one dataset per folder)")
    add("--max_rejected", type=float, metavar="FRACTION",
        help="publish nothing (exit 3) when more than this fraction of the images the annotations name is "
        "rejected (default 0.5; 1 turns the check off)")
    add("--max_deleted", type=float, metavar="FRACTION",
        help="with --incremental --update_changed: publish nothing (exit 3) when the run would delete more than "
        "this fraction of the published images (default 0.1; 1 turns the check off)")
    add("--max_pixels", type=int, metavar="N",
        help=f"images with more pixels (width x height from the header, a GIF's screen too) are rejected "
        f"before decoding (default {DEFAULT_MAX_PIXELS:,})")
    add("--max_annotation_bytes", type=int, metavar="N",
        help=f"annotation files larger than this are rejected unread (default {DEFAULT_MAX_ANNOTATION_BYTES:,}); "
        "streamed COCO files are exempt")
    add("--allow_local_paths", action="store_true",
        help="let a runner other than the DirectRunner (Flink, Spark, a portable job service, ...) read and write "
        "local paths: right when every worker runs on this host (a single-host cluster); on several hosts each "
        "would read and write its own disk, so local paths are refused without it")
    add("--config", metavar="YAML", help="YAML file with any of these settings and Beam options; flags win")


def _required(settings: Dict[str, Any], key: str) -> str:
    value = settings.get(key)
    if value in (None, ""):
        raise UsageError(f"--{key} is required (or `{key}:` in the --config file)")
    return str(value)


def _class_map(path: Optional[str]) -> Dict[str, Optional[str]]:
    if not path:
        return {}
    try:
        mapping = yaml.safe_load(read_file(absolute(path)))
    except Exception as error:
        raise UsageError(f"cannot read --class_map {path}: {' '.join(str(error).split())[:200]}") from None
    if not isinstance(mapping, dict) or not all(
        isinstance(target, (str, type(None))) for target in mapping.values()
    ):
        raise UsageError(f"--class_map {path} must map class names to class names or null")
    return {str(source): target for source, target in mapping.items()}


def _label_map_seed(path: Optional[str]) -> Dict[str, int]:
    if not path:
        return {}
    try:
        return parse_label_map(read_file(absolute(path)).decode("utf-8"))
    except LabelMapError as error:
        raise UsageError(f"--label_map {path}: {error}") from None
    except Exception as error:
        raise UsageError(f"cannot read --label_map {path}: {error}") from None


def _check_incremental_flags(settings: Dict[str, Any]) -> None:
    for flag in ("update_changed", "resplit"):
        if settings[flag] and not settings["incremental"]:
            raise UsageError(f"--{flag} works with --incremental only")


def _incremental_state(settings: Dict[str, Any], output: str, name: str, seed: int,
                       label_map_seed: Dict[str, int]) -> Tuple[Optional[Dict[str, Any]], Dict[str, int]]:
    """The published manifest an incremental run extends, checked against this run's settings, and the
    label map seed (the manifest's ids, never renumbered; --label_map may only add to them)."""
    from transforms.incremental.manifest import is_plain, read_manifest

    if not settings["incremental"]:
        return None, label_map_seed
    try:
        manifest = read_manifest(output)
    except Exception as error:
        raise UsageError(f"cannot read {output}/manifest.json: {' '.join(str(error).split())[:200]}") from None
    if manifest is None or is_plain(manifest):  # a plain run's dataset is replaced whole by the first incremental run
        return None, label_map_seed
    ids = dict(manifest["label_map"])
    for class_name, class_id in label_map_seed.items():
        if class_name in ids and ids[class_name] != class_id:
            raise UsageError(
                f"--label_map gives {class_name!r} id {class_id}, but the dataset in {output} has it as {ids[class_name]}; "
                "class ids of a published dataset never change"
            )
        if class_name not in ids and class_id in ids.values():
            raise UsageError(f"--label_map gives id {class_id} to {class_name!r}, but it is taken in {output}")
        ids[class_name] = class_id
    if not settings["resplit"]:
        for key, now in (("splits", str(settings["splits"])), ("seed", seed), ("name", name)):
            if manifest[key] != now:
                raise UsageError(
                    f"--{key} {now} differs from the dataset in {output} (written with {manifest[key]}): "
                    "images would move between splits or files; keep it, or add --resplit to write the dataset anew"
                )
    return manifest, ids


def _fraction(settings: Dict[str, Any], key: str) -> float:
    try:
        value = float(settings[key])
    except (TypeError, ValueError):
        raise UsageError(f"--{key} must be a fraction from 0 to 1, not {settings[key]!r}") from None
    if not 0 <= value <= 1:
        raise UsageError(f"--{key} must be a fraction from 0 to 1, not {value:g}")
    return value


def _integer(settings: Dict[str, Any], key: str, minimum: int) -> int:
    value = settings[key]
    if isinstance(value, bool) or not isinstance(value, int):
        try:
            value = int(str(value))
        except ValueError:
            raise UsageError(f"--{key} must be a whole number, not {value!r}") from None
    if value < minimum:
        raise UsageError(f"--{key} must be at least {minimum}, not {value}")
    return value


def _choice(settings: Dict[str, Any], key: str, choices: Sequence[str]) -> str:
    value = str(settings[key])
    if value not in choices:
        raise UsageError(f"--{key} {value!r}: choose one of {', '.join(choices)}")
    return value


def _parsed_beam_options(flags: List[str]) -> Dict[str, Any]:
    """Beam's own parse of its options; a value it refuses is one line, not argparse's page of usage."""
    refused = io.StringIO()
    try:
        with contextlib.redirect_stderr(refused):
            return PipelineOptions(flags).get_all_options(retain_unknown_options=True)
    except SystemExit:
        lines = refused.getvalue().strip().splitlines() or ["a Beam option could not be read"]
        raise UsageError(f"{lines[-1].split('error: ', 1)[-1]} (see `python -m pipeline convert --help`)") from None


# Runners whose options Beam defines beside the runner, not in pipeline_options (Flink, Spark, Prism and
# Dataflow options are there): the flag prefix, the module, the runner and the extra that installs it.
RUNNER_OPTION_MODULES = (("dask_", "apache_beam.runners.dask.dask_runner", "DaskRunner", "apache-beam[dask]"),)


def _import_runner_options(flags: List[str]) -> Dict[str, str]:
    """Import the modules that define the options of Beam's runners, and of the runner `--runner` names by its
    dotted path, so that their options are known. A runner whose extra is not installed has none: {module:
    why not}. Imported only when a flag is not known already, so a plain run pays nothing."""
    modules = [module for _, module, _, _ in RUNNER_OPTION_MODULES]
    runner = _parsed_beam_options(flags).get("runner")
    if isinstance(runner, str) and "." in runner:
        modules.append(runner.rsplit(".", 1)[0])
    failed = {}
    for module in modules:
        try:
            importlib.import_module(module)
        except Exception as error:  # ImportError, mostly; a broken module must not stop the check either
            failed[module] = " ".join(str(error).split())[:200] or type(error).__name__
    return failed


def _checked_beam_args(flags: List[str]) -> List[str]:
    known = set(PipelineOptions([]).get_all_options())  # LocalOptions (--local_processes) included: imported above
    given = _parsed_beam_options(flags)
    unknown = sorted(set(given) - known)
    if unknown:  # perhaps a runner's own option, defined in a module not imported yet
        failed = _import_runner_options(flags)
        known = set(PipelineOptions([]).get_all_options())
        given = _parsed_beam_options(flags)
        unknown = sorted(set(given) - known)
        for prefix, module, runner, extra in RUNNER_OPTION_MODULES:
            if unknown and unknown[0].startswith(prefix) and module in failed:
                raise UsageError(f"--{unknown[0]} is an option of Beam's {runner}, which is not installed here "
                                 f"({failed[module]}): pip install '{extra}'")
    if unknown:
        switch = unknown[0][len("no_"):]
        if unknown[0].startswith("no_") and switch in known:
            raise UsageError(f"`{switch}: false`: Beam's --{switch} is off unless given; remove it from the config")
        close = difflib.get_close_matches(unknown[0], sorted(known | set(DEFAULTS) | {"config"}), n=1)
        suggestion = f"did you mean --{close[0]}? " if close else ""
        raise UsageError(f"unknown option --{unknown[0]}; {suggestion}see `python -m pipeline convert --help` and "
                         "Beam's pipeline options")
    return flags


def _refuse_local_paths(settings: Dict[str, Any], output: str, runner: Optional[str]) -> None:
    """A runner that may spread its workers over several hosts gets no local --output, --annotations or
    --images: each host would read and write its own disk (the shards on one, the publish on another)."""
    from pipeline.local_runner import runs_on_this_host

    if runs_on_this_host(runner):
        return
    paths = [("output", output)] + [(key, str(path)) for key in ("annotations", "images") for path in as_list(settings[key])]
    for key, path in paths:
        if storage.is_local(path):
            raise UsageError(
                f"--{key} {path} is a local path, but --runner {runner} runs the job on its own workers: on a cluster "
                "of several hosts each would read and write its own disk; give gs:// paths, or add --allow_local_paths "
                "if every worker runs on this host (a single-host cluster)"
            )


def is_dry_run(beam_args: List[str]) -> bool:
    """Beam's --dry_run: the job graph is built (and on Dataflow checked) but nothing runs."""
    return bool(_parsed_beam_options(beam_args).get("dry_run"))


def resolve_convert(given: Dict[str, Any], extra_beam_args: List[str]) -> ConvertJob:
    """Merge defaults < config file < flags, check every value, and resolve paths."""
    file_settings = load_config(absolute(given["config"])) if given.get("config") else {}
    own_file, beam_file = split_settings(file_settings, set(DEFAULTS) | {"config"})
    settings = {**DEFAULTS, **own_file, **{key: value for key, value in given.items() if key != "config"}}

    _required(settings, "annotations")
    _required(settings, "images")
    output = absolute(_required(settings, "output")).rstrip("/")
    beam_args = _checked_beam_args(beam_flags(beam_file) + list(extra_beam_args))
    offline = is_dry_run(beam_args)
    if not settings["allow_local_paths"] and not offline:  # a dry run runs nothing: it shows the graph
        _refuse_local_paths(settings, output, _parsed_beam_options(beam_args).get("runner"))
    sources = resolve_sources(
        as_list(settings["annotations"]), as_list(settings["images"]), settings["format"], settings["classes"],
        max_annotation_bytes=_integer(settings, "max_annotation_bytes", 1), offline=offline,
    )
    if storage.is_local(output) and os.path.exists(output) and not os.path.isdir(output):
        raise UsageError(f"--output {output} is a file; give a folder")

    splits = None
    if str(settings["splits"]) != SOURCE_SPLITS:
        try:
            splits = parse_splits(str(settings["splits"]))
        except SplitError as error:
            raise UsageError(f"--splits: {error}") from None
    exif_orientation = _choice(settings, "exif_orientation", EXIF_MODES)
    validate_images = _choice(settings, "validate_images", VALIDATE_MODES)
    for flag in SWITCHES:
        if not isinstance(settings[flag], bool):
            raise UsageError(f"{flag} must be true or false, not {settings[flag]!r}")
    if settings["include_masks"]:
        try:
            import pycocotools.mask  # noqa: F401  (checked here so a missing install is one clear line)
        except ImportError:
            raise UsageError("--include_masks needs pycocotools: pip install pycocotools") from None
    name = str(settings["name"])
    if not _DATASET_NAME.match(name):
        raise UsageError(f"--name {name!r}: use letters, digits and _ only (it starts every shard file name)")

    seed = _integer(settings, "seed", 0)
    if "://" in output and not output.startswith("gs://"):  # the lock needs an exclusive create: O_EXCL or a generation match
        raise UsageError(f"--output must be a local folder or a gs:// prefix (for its lock and manifest), not {output}")
    try:
        lock_timeout_hours = float(settings["lock_timeout_hours"])
    except (TypeError, ValueError):
        raise UsageError(f"--lock_timeout_hours must be a number, not {settings['lock_timeout_hours']!r}") from None
    if lock_timeout_hours <= 0:
        raise UsageError(f"--lock_timeout_hours must be positive, not {lock_timeout_hours:g}")
    label_map_seed = _label_map_seed(settings["label_map"])
    _check_incremental_flags(settings)
    manifest = None
    if not offline:  # a dry run reads no manifest: it shows a full run's graph (the command says so)
        manifest, label_map_seed = _incremental_state(settings, output, name, seed, label_map_seed)

    started_at = time.time()
    run_log = None
    if settings["incremental"]:
        from transforms.incremental.manifest import run_log_name

        run_log = f"{output}/{run_log_name(started_at)}"
    settings.update(
        format=sorted({source.format.name for source in sources}),
        annotations=[source.annotations for source in sources],
        images=[source.images for source in sources],
        output=output,
        splits=str(settings["splits"]),
    )
    return ConvertJob(
        sources=sources,
        output=output,
        splits=splits,
        seed=seed,
        num_shards=_integer(settings, "num_shards", 0),
        name=name,
        label_map_seed=label_map_seed,
        image_policy=ImagePolicy(
            exif_orientation=exif_orientation, validate=validate_images, include_masks=settings["include_masks"],
            max_pixels=_integer(settings, "max_pixels", 1), keep_unlabeled=settings["keep_unlabeled"],
            skip_difficult=settings["skip_difficult"],
        ),
        drop_duplicates=settings["drop_duplicates"],
        class_map=_class_map(settings["class_map"]),
        settings=settings,
        beam_args=beam_args,
        started_at=started_at,
        run_log=run_log,
        incremental=settings["incremental"],
        update_changed=settings["update_changed"],
        resplit=settings["resplit"],
        lock_timeout_hours=lock_timeout_hours,
        class_ids=_choice(settings, "class_ids", CLASS_ID_RULES),
        replace=settings["replace"],
        max_rejected=_fraction(settings, "max_rejected"),
        max_deleted=_fraction(settings, "max_deleted"),
        manifest=manifest,
    )
