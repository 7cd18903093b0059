#!/bin/sh
# The entrypoint of an app image built with infra/docker/Dockerfile. One image
# plays both roles, so runners always run the parent's exact build:
#
#   a command is given        run it: `docker run <image> <command>`, or a Fly
#                             machine's init.cmd (FlyBackend's default is the
#                             runner agent with the pool's entry)
#   FLAME_PARENT is set       a runner (Ec2Backend's boot script runs
#                             `docker run -e FLAME_PARENT -e FLAME_ENTRY ... <image>`
#                             with no command): run the runner agent, which
#                             imports FLAME_ENTRY (the image sets a default)
#   otherwise                 the app itself, the parent: node "$APP_MAIN"
#
# Paths are relative to the image's WORKDIR.
set -eu

if [ "$#" -gt 0 ]; then
  exec "$@"
fi
if [ -n "${FLAME_PARENT:-}" ]; then
  exec node node_modules/flame-ts/dist/runner-agent/main.js
fi
exec node "${APP_MAIN:?is not set: the image names the main module of the app in APP_MAIN}"
