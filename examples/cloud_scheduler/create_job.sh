#!/usr/bin/env bash
# Cloud Scheduler -> Dataflow Flex Template, every night at 02:00: the incremental conversion.
# Build the template first (docs/runners.md: gcloud dataflow flex-template build ...), replace
# PROJECT, REGION, my-temp-bucket and my-data-bucket in launch_body.json, then run this once.
# The scheduler's service account needs roles/dataflow.developer and roles/iam.serviceAccountUser on
# the workers' service account. A launch while last night's job still runs is refused by OUTPUT/.lock
# (the job fails fast with "another run is writing this output"); nothing is lost: the next night adds it.
set -euo pipefail
PROJECT=${PROJECT:?set PROJECT}
REGION=${REGION:?set REGION}
SCHEDULER_SA=${SCHEDULER_SA:-od-tfrecords-scheduler@$PROJECT.iam.gserviceaccount.com}
HERE=$(cd "$(dirname "$0")" && pwd)

gcloud scheduler jobs create http od-tfrecords-nightly \
    --project "$PROJECT" --location "$REGION" \
    --schedule "0 2 * * *" --time-zone "Etc/UTC" \
    --http-method POST \
    --uri "https://dataflow.googleapis.com/v1b3/projects/$PROJECT/locations/$REGION/flexTemplates:launch" \
    --oauth-service-account-email "$SCHEDULER_SA" \
    --oauth-token-scope "https://www.googleapis.com/auth/cloud-platform" \
    --headers "Content-Type=application/json" \
    --message-body-from-file "$HERE/launch_body.json"
