#!/usr/bin/env bash
# Assembles a self-contained build directory for this repository's example app
# (examples/image-service): its sources, flame-ts packed from this repository,
# the Dockerfile, .dockerignore and fly.toml. The example depends on flame-ts
# through "file:../..", which a Docker build context (or Fly's remote builder)
# cannot reach; in the staged copy the dependency is the packed tarball.
#
#   infra/docker/stage-example.sh DIR
#   docker build -t image-service DIR        # or: cd DIR && fly deploy
#
# Needs npm and the npm registry (the lock file is refreshed for the tarball).
set -euo pipefail

if [ "$#" -ne 1 ]; then
  echo "usage: $0 DIR   (DIR must not exist, or be empty)" >&2
  exit 2
fi
repo=$(cd "$(dirname "$0")/../.." && pwd)
app="$repo/examples/image-service"
mkdir -p "$1"
if [ -n "$(ls -A "$1")" ]; then
  echo "$0: $1 is not empty" >&2
  exit 2
fi
target=$(cd "$1" && pwd)

# flame-ts as npm would publish it: built, then packed (package.json "files").
(cd "$repo" && npm run build --silent)
mkdir "$target/vendor"
tarball=$(cd "$repo" && npm pack --silent --pack-destination "$target/vendor" | tail -n 1)

cp "$app/package.json" "$app/tsconfig.json" "$target/"
if [ -f "$app/package-lock.json" ]; then cp "$app/package-lock.json" "$target/"; fi
cp -R "$app/src" "$target/src"
if [ -f "$app/README.md" ]; then cp "$app/README.md" "$target/"; fi
cp "$repo/infra/docker/Dockerfile" "$repo/infra/docker/.dockerignore" "$repo/infra/fly/fly.toml" "$target/"

cd "$target"
npm pkg set "dependencies.flame-ts=file:vendor/$tarball"
npm install --package-lock-only --no-audit --no-fund
echo "staged in $target: docker build -t image-service $target, or cd $target && fly deploy"
