#!/usr/bin/env bash
# Launch `python -m pipeline convert` on Google Cloud Dataflow from a config file plus overrides.
#
#   ./run_dataflow.sh [--config configs/dataflow.yaml] [--dry-run] [convert flags / Beam options ...]
#
#   --config FILE   the run's settings (default configs/dataflow.yaml); any later flag overrides a key
#   --dry-run       offline: check the settings and build the whole Dataflow job graph without
#                   credentials or network (--dry_run=True --no_auth --sdk_location=container), then
#                   print its steps. Nothing is uploaded, nothing is launched.
#
# Before a real launch it checks, with one clear line each: gcloud is installed and has application
# default credentials, project and region are set, and the temp and output buckets are reachable.
# Examples:
#   ./run_dataflow.sh --config configs/my-run.yaml --dry-run
#   ./run_dataflow.sh --config configs/my-run.yaml --max_num_workers 50 --job_name voc-2024-06
set -euo pipefail
cd "$(dirname "$0")"
PYTHON="${PYTHON:-python3}"

config=configs/dataflow.yaml
dry_run=false
args=()
while [ $# -gt 0 ]; do
  case "$1" in
    --dry-run|--dry_run) dry_run=true ;;
    --config) [ $# -ge 2 ] || { echo "error: --config needs a file" >&2; exit 2; }; config="$2"; shift ;;
    --config=*) config="${1#--config=}" ;;
    -h|--help) sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) args+=("$1") ;;
  esac
  shift
done

fail() { echo "error: $*" >&2; exit 2; }

# The settings that decide where the job runs: the config's values, overridden by flags.
settings="$("$PYTHON" - "$config" "${args[@]+"${args[@]}"}" <<'PY'
import sys
from pipeline.config import effective_setting, load_config
from pipeline.errors import UsageError
try:
    config = load_config(sys.argv[1])
except UsageError as error:
    sys.exit(f"error: {error}")
for key in ("project", "region", "temp_location", "staging_location", "output", "runner"):
    print(f"{key}={effective_setting(config, sys.argv[2:], key) or ''}")
PY
)" || exit 2
get() { printf '%s\n' "$settings" | sed -n "s/^$1=//p"; }
project="$(get project)"; region="$(get region)"; temp="$(get temp_location)"; output="$(get output)"

[ -n "$project" ] || fail "no project: set \`project:\` in $config or pass --project"
[ -n "$region" ] || fail "no region: set \`region:\` in $config or pass --region (e.g. europe-west1, next to the data)"
[ -n "$temp" ] || fail "no temp_location: set \`temp_location: gs://BUCKET/dataflow/temp\` in $config"
case "$temp" in gs://*) ;; *) fail "temp_location must be a gs:// path, not $temp" ;; esac
case "$output" in gs://*) ;; *) fail "--output must be a gs:// path on Dataflow (workers cannot write to $output)" ;; esac
for value in "$project" "$region" "$temp" "$output"; do
  case "$value" in *YOUR-*) fail "$config still has a placeholder ($value): copy it and fill in your project and buckets" ;; esac
done
[ "$(get runner)" = "DataflowRunner" ] || fail "runner is '$(get runner)', not DataflowRunner (set \`runner: DataflowRunner\` in $config)"

if $dry_run; then
  # Offline: no credentials (--no_auth), no SDK download (--sdk_location=container), no submission
  # (--dry_run=True), and the convert command lists and reads no remote path, takes no lock and reads
  # no manifest. A valid temp_location bucket name is still required, or Beam tries to create a
  # default bucket over the network.
  exec "$PYTHON" -m pipeline convert --config "$config" "${args[@]+"${args[@]}"}" \
    --dry_run=True --no_auth --sdk_location=container
fi

# A real launch: check what would otherwise fail minutes later, on the service.
command -v gcloud >/dev/null 2>&1 || fail "gcloud is not installed: https://cloud.google.com/sdk/docs/install"
gcloud auth application-default print-access-token >/dev/null 2>&1 \
  || fail "no application default credentials: run \`gcloud auth application-default login\` (or set GOOGLE_APPLICATION_CREDENTIALS)"
for location in "$temp" "$output"; do
  bucket="gs://$(printf '%s' "${location#gs://}" | cut -d/ -f1)"
  gcloud storage buckets describe "$bucket" --project "$project" >/dev/null 2>&1 \
    || fail "bucket $bucket is not reachable with your credentials (does it exist? do you have storage.objectAdmin on it?)"
done
gcloud services list --enabled --project "$project" --filter="config.name=dataflow.googleapis.com" --format="value(config.name)" 2>/dev/null \
  | grep -q dataflow || fail "the Dataflow API is not enabled in $project: gcloud services enable dataflow.googleapis.com --project $project"

echo "Launching on Dataflow: project $project, region $region (the job's page: https://console.cloud.google.com/dataflow/jobs?project=$project)"
exec "$PYTHON" -m pipeline convert --config "$config" "${args[@]+"${args[@]}"}"
