"""The local runner's machinery, used only when pipeline/local_runner.py runs the job on this machine:
per-image metadata spilled to disk by shard (spill), heavy steps on every core (pool), and progress
notes a person can watch (progress). On a remote runner none of it runs."""
