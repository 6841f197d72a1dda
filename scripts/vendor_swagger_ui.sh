#!/usr/bin/env bash
# Refresh the API docs' scripts served from the package (backend/spatia/service/static/vendor/
# swagger-ui) from the npm package swagger-ui-dist, at development time: nothing is fetched when
# the service runs. Source-map comments are stripped (the maps are not shipped).
#   scripts/vendor_swagger_ui.sh [VERSION]     (default: the version recorded in VERSION there)
set -euo pipefail
cd "$(dirname "$0")/.."
target=backend/spatia/service/static/vendor/swagger-ui
version=${1:-$(cat "$target/VERSION")}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
(cd "$work" && npm pack --silent "swagger-ui-dist@$version" >/dev/null && tar xzf swagger-ui-dist-*.tgz)
for name in swagger-ui-bundle.js swagger-ui.css; do
    sed '/^\/\/# sourceMappingURL=/d; s#/\*\# sourceMappingURL=[^*]*\*/##' "$work/package/$name" > "$target/$name"
done
cp "$work/package/LICENSE" "$work/package/NOTICE" "$work/package/swagger-ui-bundle.js.LICENSE.txt" \
   "$work/package/favicon-32x32.png" "$target/"
echo "$version" > "$target/VERSION"
echo "swagger-ui-dist $version in $target"
