#!/usr/bin/env bash
# Build the KBS image with buildah, without a Docker daemon or registry access.
#
#   deploy/scripts/build-image.sh [TAG]          (default tag: localhost/trustee-py:dev)
#
# BASE_IMAGE selects the base (default: a local Debian bookworm image made with debootstrap the
# first time, because registries may be out of reach). The wheelhouse (our wheel built with
# maturin plus its dependencies for CPython 3.11) is made on the host and installed offline.
set -euo pipefail
cd "$(dirname "$0")/../.."
TAG=${1:-localhost/trustee-py:dev}
PY=${PYTHON:-.venv/bin/python}
export STORAGE_DRIVER=${STORAGE_DRIVER:-vfs}
export BUILDAH_ISOLATION=${BUILDAH_ISOLATION:-chroot}
LOCAL_BASE=localhost/trustee-base:bookworm
BASE_IMAGE=${BASE_IMAGE:-$LOCAL_BASE}

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

if [ "$BASE_IMAGE" = "$LOCAL_BASE" ] && ! buildah inspect --type image "$LOCAL_BASE" >/dev/null 2>&1; then
  echo "building $LOCAL_BASE with debootstrap" >&2
  debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
    bookworm "$work/rootfs" http://deb.debian.org/debian >"$work/debootstrap.log" 2>&1 \
    || { tail -20 "$work/debootstrap.log" >&2; exit 1; }
  rm -rf "$work/rootfs/var/cache/apt/archives"/*.deb "$work/rootfs/var/lib/apt/lists"/*
  tar -C "$work/rootfs" -cf "$work/base.tar" .
  ctr=$(buildah from scratch)
  buildah add "$ctr" "$work/base.tar" / >/dev/null
  buildah commit --rm "$ctr" "$LOCAL_BASE" >/dev/null
fi

mkdir -p "$work/context/wheelhouse"
VIRTUAL_ENV=$(dirname "$(dirname "$PY")") "$(dirname "$PY")/maturin" build --release -q \
  -o "$work/context/wheelhouse"
"$PY" -m pip download -q --only-binary :all: --implementation cp --python-version 3.11 \
  --platform manylinux_2_34_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux2014_x86_64 -d "$work/context/wheelhouse" \
  "$(ls "$work"/context/wheelhouse/trustee_py-*.whl)[operator]"
cp deploy/images/Containerfile.kbs "$work/context/Containerfile"
buildah bud --quiet --build-arg "BASE_IMAGE=$BASE_IMAGE" -t "$TAG" "$work/context" >/dev/null
echo "$TAG"
