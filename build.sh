#!/usr/bin/env bash
# Render build for c3-app (buildCommand in render.yaml): dependencies, the chat page's JS
# vendor files, static files. Migrations are NOT run here: render.yaml runs them once per
# deploy as the preDeployCommand, after the build and before the new instances start.
set -o errexit
set -o nounset
set -o pipefail

cd "$(dirname "${BASH_SOURCE[0]}")"

# Exactly the locked runtime set: pinned versions, sha256 hashes checked, wheels only (no
# build step runs code from an sdist). Regenerate the lock with `make lock`.
python -m pip install --require-hashes --only-binary :all: -r requirements.lock.txt

# The vendor files (marked, DOMPurify, highlight.js) come from npm; Render's python runtime
# has node. They must exist before collectstatic, whose manifest records every file.
# C3_REQUIRE_ASSETS=1: a failed npm install fails the deploy instead of shipping a page
# without Markdown.
C3_REQUIRE_ASSETS=1 bash scripts/build_assets.sh

python manage.py collectstatic --noinput
