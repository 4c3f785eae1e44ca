#!/usr/bin/env bash
# Render build for c3-app (buildCommand in render.yaml): dependencies, the chat page's JS
# vendor files, static files. Migrations are NOT run here: render.yaml runs them once per
# deploy as the preDeployCommand, after the build and before the new instances start.
set -o errexit
set -o nounset
set -o pipefail

cd "$(dirname "${BASH_SOURCE[0]}")"

python -m pip install -r requirements.txt

# The vendor files (marked, DOMPurify, highlight.js) come from npm; Render's python runtime
# has node. They must exist before collectstatic, whose manifest records every file.
if [[ -f scripts/build_assets.sh ]]; then
    bash scripts/build_assets.sh
fi

python manage.py collectstatic --noinput
