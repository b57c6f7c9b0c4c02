#!/usr/bin/env bash
# Stop what scripts/start.sh started.
cd "$(dirname "$0")/.."
for name in brainxai orthanc; do
  if [ -s "var/$name.pid" ] && kill "$(cat "var/$name.pid")" 2>/dev/null; then
    echo "stopped $name"
  fi
  rm -f "var/$name.pid"
done
