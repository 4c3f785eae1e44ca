#!/usr/bin/env bash
# Install the chat page's browser libraries with npm (exact versions from
# frontend/package-lock.json) and copy their prebuilt browser files into
# ai_features/static/ai_features/vendor/ (gitignored). No bundler, no CDN.
#
# Locally (make run) the page still works without them: answers are shown as plain text, and
# a failed install is one warning line. With C3_REQUIRE_ASSETS=1 (set by build.sh for the
# deploy and by .ci/run) it is an error instead: a deploy must never ship a page without
# Markdown because npm failed.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
FRONTEND="$ROOT/frontend"
VENDOR="$ROOT/ai_features/static/ai_features/vendor"

unavailable() {  # unavailable <reason>: fail when the assets are required, else warn
    if [[ "${C3_REQUIRE_ASSETS:-0}" == "1" ]]; then
        echo "ERROR: $1: the chat page's Markdown assets (marked, DOMPurify, highlight.js)" \
            "could not be built, and C3_REQUIRE_ASSETS=1 requires them. Fix npm and rerun." >&2
        exit 1
    fi
    echo "WARNING: $1: Markdown rendering assets are unavailable (answers will be shown as plain text)." >&2
    exit 0
}

if ! command -v npm >/dev/null 2>&1; then
    unavailable "npm not found"
fi

cd "$FRONTEND"
# npm writes node_modules/.package-lock.json after a successful install; when it is newer
# than the lock file, node_modules already matches the lock and `npm ci` can be skipped.
if [[ -f node_modules/.package-lock.json && node_modules/.package-lock.json -nt package-lock.json ]]; then
    echo "frontend/node_modules is up to date."
elif ! npm ci --no-audit --no-fund; then
    unavailable "npm ci failed"
fi

copy() {  # copy <source under node_modules> <name in vendor/>, with its source map if any
    local src="$FRONTEND/node_modules/$1" dest="$VENDOR/$2"
    cp "$src" "$dest"
    # Django's ManifestStaticFilesStorage (collectstatic with DEBUG off) follows
    # sourceMappingURL comments and fails when the map is missing.
    local map
    map="$(sed -n 's|.*//# sourceMappingURL=\([^ ]*\).*|\1|p' "$src" | tail -n 1)"
    if [[ -n "$map" ]]; then
        if [[ -f "$(dirname "$src")/$map" ]]; then
            cp "$(dirname "$src")/$map" "$VENDOR/$map"
        else
            sed -i '/\/\/# sourceMappingURL=/d' "$dest"
        fi
    fi
}

rm -rf "$VENDOR"
mkdir -p "$VENDOR"
copy marked/lib/marked.umd.js marked.umd.js
copy dompurify/dist/purify.min.js purify.min.js
copy @highlightjs/cdn-assets/highlight.min.js highlight.min.js
for package in marked dompurify @highlightjs/cdn-assets; do
    for license in "$FRONTEND/node_modules/$package"/LICENSE*; do
        if [[ -f "$license" ]]; then
            cp "$license" "$VENDOR/LICENSE.$(echo "$package" | tr -d '@' | tr '/' '-').txt"
        fi
    done
done
echo "Copied browser assets to ${VENDOR#"$ROOT"/}:"
ls -1 "$VENDOR" | sed 's/^/  /'
