#!/usr/bin/env bash
# Main job on embedded defaults: set up, start a local Orthanc (Debian package) with the
# brainxai routing script, start `brainxai serve` (SQLite job store, local MLflow registry,
# bundled model), and print where to send studies. Stop with: bash scripts/stop.sh
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
mkdir -p var
ORTHANC_URL=${BRAINXAI_ORTHANC_URL:-http://127.0.0.1:8042}
API_PORT=${BRAINXAI_HTTP_PORT:-8000}

wait_for() {  # url, seconds
  local deadline=$((SECONDS + $2))
  until curl -fsS -o /dev/null "$1" 2>/dev/null; do
    [ $SECONDS -lt $deadline ] || { echo "start: $1 did not answer within $2 s" >&2; return 1; }
    sleep 0.5
  done
}

if curl -fsS "$ORTHANC_URL/system" >/dev/null 2>&1; then
  if ! curl -fsS "$ORTHANC_URL/system" | grep -q '"Name" : "brainxai-dev"'; then
    echo "start: another Orthanc answers at $ORTHANC_URL (e.g. the Debian system service)."
    echo "start: stop it (sudo systemctl stop orthanc) or declare brainxai in its config:"
    echo "start: see orthanc/README-admin.md"
    exit 1
  fi
  echo "start: Orthanc already running at $ORTHANC_URL"
else
  (cd orthanc && exec env TCP_NODELAY=1 Orthanc orthanc.json) >var/orthanc.log 2>&1 </dev/null &
  echo $! > var/orthanc.pid
  wait_for "$ORTHANC_URL/system" 60
fi

[ -s var/api-token ] || .venv/bin/python -c "import secrets; print(secrets.token_urlsafe(24))" > var/api-token
chmod 600 var/api-token
if curl -fsS "http://127.0.0.1:$API_PORT/healthz" >/dev/null 2>&1; then
  echo "start: brainxai already running"
else
  BRAINXAI_API_TOKEN=$(cat var/api-token) nohup .venv/bin/brainxai serve >var/brainxai.log 2>&1 </dev/null &
  echo $! > var/brainxai.pid
  wait_for "http://127.0.0.1:$API_PORT/healthz" 180
fi

cat <<MSG

brainxai is running (RESEARCH USE ONLY - NOT FOR DIAGNOSIS).
  Orthanc (send brain MR studies here): $ORTHANC_URL   DICOM: AET ORTHANC, port 4242
  brainxai DICOM node:                  AET BRAINXAI, port 11112 (Orthanc routes MR studies to it)
  brainxai web page and API:            http://127.0.0.1:$API_PORT   token: $(cat var/api-token)
  OHIF viewer (results over the MR):    $ORTHANC_URL/ohif/
      one study: $ORTHANC_URL/ohif/viewer.html?StudyInstanceUIDs=<StudyInstanceUID>
  Try it:  .venv/bin/brainxai demo --study ../shared/data/dicom/pgbm-001-t1post
  Logs:    var/orthanc.log, var/brainxai.log      Stop: bash scripts/stop.sh
MSG
