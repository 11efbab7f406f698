#!/usr/bin/env bash
# The documentation builds without a warning: the API docs (`cargo doc`,
# broken intra-doc links included) and the user guide in docs/ (mkdocs
# --strict, broken links and anchors included; mkdocs.yml).
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$repo"

RUSTDOCFLAGS="-D warnings" cargo doc --no-deps --locked
python3 -m venv "$work/venv"
"$work/venv/bin/pip" install --quiet --disable-pip-version-check "mkdocs==1.6.1"
"$work/venv/bin/mkdocs" build --strict --quiet --site-dir "$work/site"
echo "docs: api docs and user guide ($(ls "$work/site"/*.html | wc -l) pages) build without warnings"
