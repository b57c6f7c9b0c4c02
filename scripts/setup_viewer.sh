#!/usr/bin/env bash
# The OHIF viewer (npm package @ohif/app, its built dist/) unpacked under var/ohif/ (outside
# git) and configured for Orthanc's DICOMweb on the same origin: Orthanc's ServeFolders plugin
# serves it at /ohif/ (orthanc/orthanc.json). Idempotent: the pinned tarball is fetched and
# checked once; our app-config.js and the sub-path rewrite of index.html are applied each run.
set -euo pipefail
cd "$(dirname "$0")/.."

OHIF_VERSION=3.13.2
OHIF_INTEGRITY="sha512-WZdxmpmG7rqFgW9ZJLcbgr3XCtLi1KDNPoMaeY5PPe6j4G4fjEjjkycZM6C6Zk2F87BKxFfpq+jd5xXZB9E8EA=="
BASE=/ohif/  # the URL path Orthanc serves the viewer at (ServeFolders key + "/")
ROOT=var/ohif
DIST=$ROOT/$OHIF_VERSION
MARK="$DIST/.complete-${BASE//\//_}"

if [ ! -f "$MARK" ]; then
  if ! command -v npm >/dev/null 2>&1; then
    echo "setup: installing Debian package npm (to fetch the OHIF viewer)"
    SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    $SUDO apt-get update -q
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends npm
  fi
  echo "setup: fetching @ohif/app@$OHIF_VERSION"
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  (cd "$tmp" && npm pack --silent "@ohif/app@$OHIF_VERSION" >/dev/null)
  tgz="$tmp/ohif-app-$OHIF_VERSION.tgz"
  got="sha512-$(openssl dgst -sha512 -binary "$tgz" | base64 -w0)"
  if [ "$got" != "$OHIF_INTEGRITY" ]; then
    echo "setup: @ohif/app@$OHIF_VERSION integrity mismatch ($got)" >&2
    exit 1
  fi
  tar -xzf "$tgz" -C "$tmp" package/dist
  rm -rf "$DIST"
  mkdir -p "$ROOT"
  mv "$tmp/package/dist" "$DIST"
  cp "$DIST/index.html" "$DIST/index.orig.html"
  # The bundles load their chunks, workers and images from a public path fixed at build
  # time ("/"); the viewer lives under $BASE.
  grep -l '__webpack_require__.p = "/"' "$DIST"/*.js | xargs sed -i "s#__webpack_require__.p = \"/\"#__webpack_require__.p = \"$BASE\"#"
  sed -i "s#url(/#url($BASE#g" "$DIST"/*.css
  touch "$MARK"
fi

# Our configuration (DICOMweb on the same origin) and the sub-path: OHIF's index.html loads
# everything from "/" (window.PUBLIC_URL and absolute href/src); rewrite them to $BASE.
cp orthanc/ohif/app-config.js "$DIST/app-config.js"
sed -e "s#window.PUBLIC_URL=\"/\"#window.PUBLIC_URL=\"$BASE\"#" \
    -e "s#\(href\|src\)=\"/\([^/]\)#\1=\"$BASE\2#g" \
    "$DIST/index.orig.html" > "$DIST/index.html"
# OHIF routes /viewer?StudyInstanceUIDs=... on the client; ServeFolders only serves files, so
# viewer.html is the app's page that first renames its own URL to the route OHIF expects.
sed -e "s#<head>#<head><script>history.replaceState(null,'','${BASE}viewer'+location.search+location.hash)</script>#" \
    "$DIST/index.html" > "$DIST/viewer.html"
ln -sfn "$OHIF_VERSION" "$ROOT/current"
echo "setup: OHIF viewer $OHIF_VERSION ready in $ROOT/current (served by Orthanc at $BASE)"
