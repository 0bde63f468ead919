"""The docs and the code say the same thing: README.md and docs/*.md against the real command-line parsers.

- every flag of `convert`, `inspect` and `verify` (and `--local_processes`, which convert takes as a Beam
  option of ours) is written somewhere in the docs;
- every `--flag` the docs write is one of ours, or on the short list of other tools' flags below; on a
  command line in a code block it must belong to that very command (`inspect` flags on an inspect line,
  a benchmark's on its script's line);
- every relative link points to a file that exists (and a `#fragment` to a heading of it);
- docs/design.md keeps its numbered sections, which code and tests cite as "docs/design.md section N";
- the README stays short.

Fast: the parsers are built in this process (no subprocess, no TensorFlow, no pipeline run).
"""
from __future__ import annotations

import argparse
import functools
import re
from pathlib import Path
from typing import Dict, Iterator, List, Set, Tuple

import pytest

REPO = Path(__file__).resolve().parent.parent
README = REPO / "README.md"
README_MAX_BYTES = 12_500
DOC_FILES = [README] + sorted((REPO / "docs").glob("*.md"))

# Apache Beam pipeline options the docs name. `convert` passes any Beam option on to Beam; each name here
# is also checked to be a real Beam option (test_allowed_beam_options_are_beams_own), so a typo cannot hide.
BEAM_OPTIONS = {
    "runner", "direct_num_workers", "direct_running_mode",  # choosing and sizing a runner
    "project", "region", "temp_location", "max_num_workers", "setup_file",  # Dataflow
    "sdk_container_image", "dry_run", "no_auth", "sdk_location",  # Dataflow: the image; the offline dry run
    "flink_master", "spark_master_url", "job_endpoint", "environment_type", "environment_config",  # portable runners
}
# Flags of other tools that the docs name in prose.
OTHER_TOOLS = {
    "dask_client_address", "dask_*",  # Beam's DaskRunner: defined only once apache-beam[dask] is installed
    "fast",  # pytest: the edit-test cycle's option, added by tests/conftest.py
}
# Programs whose command lines in the docs' code blocks are left unchecked: their flags are their own.
OTHER_PROGRAMS = ("gcloud ", "pip ", "python -m apache_beam.", "python3 -m apache_beam.")
# The programs whose command lines in the docs are ours, with the flags each accepts (see _command_flags).
OUR_PROGRAMS = ("python -m pipeline", "python3 -m pipeline", "od-tfrecords", "./run_dataflow.sh",
                "python benchmarks/", "python3 benchmarks/", "make")

_FLAG = re.compile(r"(?<![\w/-])--([A-Za-z][\w-]*\*?)")
_LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
_FENCE = re.compile(r"^\s*```")


def _normal(flag: str) -> str:
    """`--max-rejected` is `--max_rejected`: the CLI (pipeline/cli.py `underscored`) and Beam accept both."""
    return flag.replace("-", "_")


def _parser_flags(parser: argparse.ArgumentParser) -> Set[str]:
    return {option[2:] for action in parser._actions for option in action.option_strings
            if option.startswith("--") and option != "--help"}


@functools.lru_cache(maxsize=None)
def _cli_flags() -> Dict[str, Set[str]]:
    """{command: its flags, without the dashes}, from the parsers `python -m pipeline` itself builds."""
    from pipeline.cli import _build_parser
    from pipeline.local_runner import LocalOptions

    parser = _build_parser()
    commands = next(action for action in parser._actions if isinstance(action, argparse._SubParsersAction))
    flags = {name: _parser_flags(sub) for name, sub in commands.choices.items()}
    local = argparse.ArgumentParser()
    LocalOptions._add_argparse_args(local)  # --local_processes: a Beam option this project defines
    flags["local"] = _parser_flags(local)
    return flags


@functools.lru_cache(maxsize=None)
def _run_dataflow_flags() -> Set[str]:
    """The flags run_dataflow.sh handles itself (its `case` patterns); the rest go to convert."""
    text = (REPO / "run_dataflow.sh").read_text()
    patterns = re.findall(r"^\s*((?:--[\w-]+\|?)+)(?:=\*)?\)", text, re.MULTILINE)
    return {flag[2:] for pattern in patterns for flag in pattern.split("|")}


@functools.lru_cache(maxsize=None)
def _benchmark_flags(script: str) -> Set[str]:
    """A benchmark script's flags, exactly as its argparse spells them (hyphens are not underscores there)."""
    path = REPO / "benchmarks" / script
    if not path.is_file():
        return set()
    return set(re.findall(r"add_argument\(\s*\"--([\w-]+)\"", path.read_text()))


def _ours() -> Set[str]:
    flags = set().union(*_cli_flags().values()) | _run_dataflow_flags() | {"help"}  # every command has --help
    return {_normal(flag) for flag in flags}


def _all_benchmark_flags() -> Set[str]:
    return set().union(*(_benchmark_flags(path.name) for path in (REPO / "benchmarks").glob("*.py")))


def _command_flags(command: str) -> Tuple[str, Set[str], bool]:
    """(which command, the flags it accepts, whether hyphen and underscore spellings are one) for a command
    line of ours."""
    cli = {name: flags | {"help"} for name, flags in _cli_flags().items()}
    words = command.split()
    if words[0] in ("python", "python3") and words[1:2] == ["-m"]:
        words = ["od-tfrecords"] + words[3:]
    if words[0] == "od-tfrecords":
        sub = words[1] if len(words) > 1 else ""
        if sub in ("inspect", "verify"):
            return sub, {_normal(flag) for flag in cli[sub]}, True
        return "convert", {_normal(flag) for flag in cli["convert"] | cli["local"] | BEAM_OPTIONS}, True
    if words[0] == "./run_dataflow.sh":
        accepted = cli["convert"] | cli["local"] | BEAM_OPTIONS | _run_dataflow_flags()
        return "run_dataflow.sh", {_normal(flag) for flag in accepted}, True
    if words[0] == "make":
        return "make", set(), False
    script = words[1].split("/", 1)[1]
    return script, _benchmark_flags(script) | {"help"}, False


def _split(text: str) -> Tuple[List[str], List[str]]:
    """(prose lines, command lines) of a doc. Command lines are those of the shell code blocks, continuation
    lines joined (a trailing backslash, or an indented line under a command: the synopsis of design.md
    section 1); their comments count as prose. Python and YAML snippets are neither."""
    prose, commands, in_block, shell = [], [], False, False
    for line in text.splitlines():
        if _FENCE.match(line):
            in_block = not in_block
            shell = in_block and line.strip().strip("`") in ("", "sh", "bash", "shell", "console")
            continue
        if not in_block:
            prose.append(line)
            continue
        if not shell or not line.strip():
            continue
        code, _, comment = line.partition(" #") if not line.lstrip().startswith("#") else ("", "", line)
        prose.append(comment)
        code = code.rstrip()
        if not code:
            continue
        if commands and (commands[-1].endswith("\\") or line[:1].isspace()):
            commands[-1] = commands[-1].rstrip("\\").rstrip() + " " + code.strip()
        else:
            commands.append(code.strip())
    return prose, commands


def _code_commands(text: str) -> Iterator[str]:
    return iter(_split(text)[1])


def _is_ours(command: str) -> bool:
    return command.startswith(OUR_PROGRAMS)


def _prose(text: str) -> str:
    """What is checked against every flag we know: prose, tables, comments, and code lines that are
    neither a command of ours (checked per command) nor of another program (not checked)."""
    prose, commands = _split(text)
    return "\n".join(prose + [command for command in commands
                              if not _is_ours(command) and not command.startswith(OTHER_PROGRAMS)])


def _docs() -> List[Tuple[Path, str]]:
    return [(path, path.read_text(encoding="utf-8")) for path in DOC_FILES]


def test_every_cli_flag_is_documented():
    text = "\n".join(body for _, body in _docs())
    written = {_normal(match) for match in _FLAG.findall(text)}
    cli = _cli_flags()
    missing = sorted(f"{command}: --{flag}" for command, flags in cli.items() for flag in flags
                     if _normal(flag) not in written)
    assert not missing, f"flags of the CLI that README.md and docs/*.md never mention: {missing}"


def test_every_flag_in_the_prose_exists():
    ours, benchmarks = _ours(), _all_benchmark_flags()
    allowed = {_normal(flag) for flag in BEAM_OPTIONS | OTHER_TOOLS}
    unknown = []
    for path, text in _docs():
        for flag in _FLAG.findall(_prose(text)):
            if flag in benchmarks or _normal(flag) in ours | allowed:
                continue
            unknown.append(f"{path.relative_to(REPO)}: --{flag}")
    assert not unknown, f"flags the docs name that no command of ours has (nor the allow-lists): {sorted(set(unknown))}"


def test_code_commands_use_flags_of_that_command():
    wrong = []
    for path, text in _docs():
        for command in _code_commands(text):
            if not _is_ours(command):
                continue  # gcloud, pip, python -m apache_beam...: not ours to check
            name, accepted, hyphens_too = _command_flags(command)
            for flag in _FLAG.findall(command):
                if (_normal(flag) if hyphens_too else flag) not in accepted:
                    wrong.append(f"{path.relative_to(REPO)}: --{flag} is not a flag of {name}: {command[:80]}")
    assert not wrong, "\n".join(wrong)


def test_allowed_beam_options_are_beams_own():
    from apache_beam.options.pipeline_options import PipelineOptions

    known = set(PipelineOptions([]).get_all_options())
    assert not sorted(BEAM_OPTIONS - known), "BEAM_OPTIONS names options Beam does not define"
    cli = {_normal(flag) for flags in _cli_flags().values() for flag in flags}
    assert not BEAM_OPTIONS & cli, "a flag of the CLI needs no allow-listing"


def test_allow_lists_hold_only_what_the_docs_use():
    """An entry no doc mentions any more is dropped, so the lists stay short."""
    written = {_normal(flag) for _, text in _docs() for flag in _FLAG.findall(text)}
    unused = sorted(flag for flag in BEAM_OPTIONS | OTHER_TOOLS if _normal(flag) not in written)
    assert not unused, f"allow-listed flags no doc mentions: {unused}"


def _slug(heading: str) -> str:
    """A heading's anchor as GitHub makes it: lower case, punctuation dropped, spaces as hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def _anchors(text: str) -> Set[str]:
    anchors, in_block = set(), False
    for line in text.splitlines():
        if _FENCE.match(line):
            in_block = not in_block
        elif not in_block and line.startswith("#"):
            anchors.add(_slug(line.lstrip("#")))
    return anchors


def test_relative_links_resolve():
    broken = []
    for path, text in _docs():
        for target in _LINK.findall(text):
            if re.match(r"^[a-z]+:", target):  # https:, mailto:
                continue
            file_part, _, fragment = target.partition("#")
            linked = (path.parent / file_part).resolve() if file_part else path
            where = f"{path.relative_to(REPO)}: ({target})"
            if not linked.exists():
                broken.append(f"{where}: no such file")
            elif fragment and linked.suffix == ".md" and fragment not in _anchors(linked.read_text(encoding="utf-8")):
                broken.append(f"{where}: no heading #{fragment} in {linked.name}")
    assert not broken, "\n".join(broken)


def test_design_doc_keeps_the_numbered_sections_code_cites():
    headings = re.findall(r"^## (\d+)\. ", (REPO / "docs" / "design.md").read_text(encoding="utf-8"), re.MULTILINE)
    numbers = [int(number) for number in headings]
    assert numbers[:6] == [1, 2, 3, 4, 5, 6], numbers
    cited = set()
    for folder in ("pipeline", "transforms", "tests"):
        for source in (REPO / folder).rglob("*.py"):
            for match in re.finditer(r"docs/design\.md,? sections? ([\d, and]+)", source.read_text(encoding="utf-8")):
                cited.update(int(number) for number in re.findall(r"\d+", match.group(1)))
    assert cited <= set(numbers), f"sections cited that docs/design.md does not have: {sorted(cited - set(numbers))}"


def test_readme_is_short():
    size = README.stat().st_size
    assert size <= README_MAX_BYTES, f"README.md is {size} bytes; keep it under {README_MAX_BYTES}: move detail to docs/"


@pytest.mark.parametrize("bogus", ["--no_such_flag", "--max-rejectd"])
def test_a_made_up_flag_is_caught(bogus):
    """The checks above find drift: a flag that does not exist, in prose and on a command line."""
    assert bogus.lstrip("-") not in _ours()
    prose = _prose(f"Use `{bogus}` to do it.\n")
    assert any(_normal(flag) not in _ours() for flag in _FLAG.findall(prose))
    command = next(_code_commands(f"```\npython -m pipeline convert --output o \\\n    {bogus} 1\n```\n"))
    name, accepted, _ = _command_flags(command)
    assert name == "convert" and _normal(bogus[2:]) not in accepted
