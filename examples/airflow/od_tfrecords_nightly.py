"""Apache Airflow DAG: the nightly incremental conversion, then a verification of what was published.

Copy this file into your DAGs folder and install this package on the Airflow workers
(`pip install /path/to/od-tfrecords`) with `apache-airflow-providers-apache-beam[google]` (the Beam
operator refuses to load without the Google provider, even for the DirectRunner).

- Locally (the default, OD_TFRECORDS_RUNNER unset): the DirectRunner on the Airflow worker.
- In production: set OD_TFRECORDS_RUNNER=DataflowRunner and the OD_TFRECORDS_* variables below; the
  job runs on Dataflow (workers install this package from its setup.py, like run_dataflow.sh does)
  and the task waits for it to finish.

Every run is `convert --incremental`: only images not yet in the published dataset are written, class
ids and splits never move, and a run that finds nothing new changes nothing but its run log. Runs never
overlap (max_active_runs=1; OUTPUT/.lock refuses a second run anyway), and a failed or killed run is
simply retried: the next attempt finishes what was published and writes nothing twice.

Any exit but 0 fails the task, and Airflow alerts on a failed task (mail to OD_TFRECORDS_ALERT_EMAIL when
set). Exit 3 is a refusal: the night's result would have been empty, mostly rejected, or would have
deleted more than --max_deleted of the dataset (an unmounted or wrong images folder); nothing was
published, and the line in the task's log says why and where the run's report is. A retry refuses again
until the sources are fixed. Exit 2 is a setting to fix; exit 1 a run that failed (a full disk).
"""
from __future__ import annotations

import os
from datetime import datetime, timedelta

from airflow import DAG

try:
    from airflow.providers.standard.operators.bash import BashOperator  # Airflow 3
except ImportError:
    from airflow.operators.bash import BashOperator  # Airflow 2
from airflow.providers.apache.beam.operators.beam import BeamRunPythonPipelineOperator

RUNNER = os.environ.get("OD_TFRECORDS_RUNNER", "DirectRunner")
PACKAGE = os.environ.get("OD_TFRECORDS_HOME", "/opt/od-tfrecords")  # a checkout of this repository
ANNOTATIONS = os.environ.get("OD_TFRECORDS_ANNOTATIONS", "/data/labels/Annotations")
IMAGES = os.environ.get("OD_TFRECORDS_IMAGES", "/data/labels/JPEGImages")
OUTPUT = os.environ.get("OD_TFRECORDS_OUTPUT", "/data/tfrecords/nightly")
ALERT_EMAIL = [address for address in os.environ.get("OD_TFRECORDS_ALERT_EMAIL", "").split(",") if address]

PIPELINE_OPTIONS = {
    "annotations": ANNOTATIONS,
    "images": IMAGES,
    "output": OUTPUT,
    "name": "nightly",
    "splits": "train=0.8,val=0.1,test=0.1",  # never change it for an existing output (refused)
    "seed": 0,
    "incremental": True,  # rendered as the bare flag --incremental
    "update_changed": True,  # re-write items whose annotations changed; remove deleted ones
    "lock_timeout_hours": 20,  # a lock left by a crashed run elsewhere is stale before the next night
}
DATAFLOW_OPTIONS = {
    "project": os.environ.get("OD_TFRECORDS_PROJECT", "my-project"),
    "region": os.environ.get("OD_TFRECORDS_REGION", "europe-west4"),
    "temp_location": os.environ.get("OD_TFRECORDS_TEMP", "gs://my-temp-bucket/dataflow/temp"),
    "setup_file": f"{PACKAGE}/setup.py",
    "max_num_workers": 20,
}

with DAG(
    dag_id="od_tfrecords_nightly",
    description="Nightly incremental conversion of new labeled images to OD API TFRecords",
    schedule="@daily",
    start_date=datetime(2026, 1, 1),
    catchup=False,  # each run ingests everything new; missed nights need no backfill
    max_active_runs=1,
    default_args={"retries": 2, "retry_delay": timedelta(minutes=10), "email": ALERT_EMAIL,
                  "email_on_failure": bool(ALERT_EMAIL)},
    tags=["od-tfrecords"],
) as dag:
    convert = BeamRunPythonPipelineOperator(
        task_id="convert_incremental",
        runner=RUNNER,
        py_file=f"{PACKAGE}/flex_template/main.py",  # `python -m pipeline convert` with --name=value options
        pipeline_options=PIPELINE_OPTIONS if RUNNER == "DirectRunner" else {**PIPELINE_OPTIONS, **DATAFLOW_OPTIONS},
        py_interpreter="python3",
        dataflow_config={
            "job_name": "od-tfrecords-nightly",
            "project_id": DATAFLOW_OPTIONS["project"],
            "location": DATAFLOW_OPTIONS["region"],
            "wait_until_finished": True,
        } if RUNNER == "DataflowRunner" else None,
    )
    verify = BashOperator(
        task_id="verify_published",
        bash_command=f"cd {PACKAGE} && python3 -m pipeline verify {OUTPUT}",
    )
    convert >> verify
