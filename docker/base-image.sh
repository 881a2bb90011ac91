#!/usr/bin/env bash
# Builds the Python 3.11 base image every service image starts FROM.
#
# Prefers the official python:3.11-slim-bookworm image; where no registry can be reached it
# builds an equivalent Debian bookworm root with debootstrap and imports it. The image is
# labelled with a hash of this recipe: an up-to-date image is kept, a stale one rebuilt.
set -euo pipefail

image="${LABRADOR_BASE_IMAGE:-labrador/python-base:3.11}"
upstream="python:3.11-slim-bookworm"
recipe_hash="$(sha256sum "${BASH_SOURCE[0]}" | cut -c1-16)"
label="org.labrador.base-recipe"

current="$(docker image inspect --format "{{ index .Config.Labels \"${label}\" }}" "${image}" 2>/dev/null || true)"
if [[ "${current}" == "${recipe_hash}" ]]; then
  echo "base image ${image} is up to date (recipe ${recipe_hash})"
  exit 0
fi

work="$(mktemp -d)"
trap 'rm -rf "${work}"' EXIT

if timeout 120 docker pull --quiet "${upstream}" >/dev/null 2>&1; then
  echo "base image: using ${upstream}"
  source_image="${upstream}"
else
  echo "base image: ${upstream} cannot be pulled; building it with debootstrap" >&2
  command -v debootstrap >/dev/null || {
    echo "debootstrap is needed to build the base image without a registry: apt-get install debootstrap" >&2
    exit 1
  }
  # Use the Debian mirror this machine's apt already uses, if it names one.
  mirror="$(sed -n 's/^URIs: *\([^ ]*debian\)$/\1/p' /etc/apt/sources.list.d/debian.sources 2>/dev/null | head -n1 || true)"
  rootfs="${work}/rootfs"
  debootstrap --variant=minbase --include=python3,ca-certificates bookworm "${rootfs}" ${mirror:+"${mirror}"} >"${work}/debootstrap.log" 2>&1 || {
    tail -n 30 "${work}/debootstrap.log" >&2
    exit 1
  }
  # Documentation, locales and apt lists are dead weight in a test image.
  rm -rf "${rootfs}"/usr/share/{doc,man,locale} "${rootfs}"/var/lib/apt/lists/* "${rootfs}"/var/cache/apt/*
  source_image="labrador/python-base-rootfs:${recipe_hash}"
  tar -C "${rootfs}" -c . | docker import - "${source_image}" >/dev/null
fi

# One small build on top gives both sources the same label, env and entry point.
cat >"${work}/Dockerfile" <<DOCKERFILE
FROM ${source_image}
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 LANG=C.UTF-8
LABEL ${label}="${recipe_hash}"
CMD ["python3"]
DOCKERFILE
# The legacy builder prints a deprecation notice on every build: show output only on failure.
docker build --quiet --tag "${image}" "${work}" >"${work}/build.log" 2>&1 || { cat "${work}/build.log" >&2; exit 1; }
if [[ "${source_image}" != "${upstream}" ]]; then
  docker rmi "${source_image}" >/dev/null
fi
echo "base image ${image} built (recipe ${recipe_hash})"
