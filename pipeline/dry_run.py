"""A dry run: the job graph built (on Dataflow, checked and translated to a job) and shown; nothing runs.

`python -m pipeline convert ... --runner DataflowRunner --dry_run=True --no_auth --sdk_location=container`
and `./run_dataflow.sh --dry-run` both come here. Offline: the sources' remote paths are neither listed
nor read (pipeline/sources.py), no lock is taken, no manifest read, nothing staged.
"""
from __future__ import annotations

from typing import List


def describe_dry_run(job, options) -> str:
    """Build the job (without running it) and describe its steps, and what a dry run could not check."""
    import apache_beam as beam

    from pipeline.graph import build_convert_pipeline

    pipeline = beam.Pipeline(options=options)
    build_convert_pipeline(pipeline, job)
    result = pipeline.run()
    job_proto = getattr(result, "job", None)
    if job_proto is None:  # a runner without a job to show: the graph Beam built
        proto, title = pipeline.to_runner_api(), "job graph (dry run, nothing launched)"
    else:
        proto, title = job_proto.proto_pipeline, f"Dataflow job graph (dry run, nothing launched): {job_proto.proto.name}"
    transforms = proto.components.transforms

    def leaves(transform_id) -> int:
        children = transforms[transform_id].subtransforms
        return sum(leaves(child) for child in children) if children else 1

    (root,) = proto.root_transform_ids
    lines: List[str] = [title]
    for step_id in transforms[root].subtransforms:
        step = transforms[step_id]
        lines.append(f"  {step.unique_name}")
        lines.extend(f"    {transforms[child].unique_name}" for child in step.subtransforms)
    lines.append(f"{len(transforms[root].subtransforms)} steps, {leaves(root)} primitive transforms; output "
                 f"{job.output}; workers install this package from setup.py (--setup_file)")
    unchecked = ["that the annotation and image paths exist and what they hold (not listed offline)",
                 "the shard count (sized from the image bytes when the job runs)" if not job.num_shards else None,
                 "OUTPUT's lock and what it holds (read when the job is launched)"]
    if job.incremental:
        unchecked.append("incremental: shown as a full run (a dry run reads no manifest and takes no lock)")
    lines.append("not checked by a dry run: " + "; ".join(item for item in unchecked if item))
    return "\n".join(lines)
