"""Docker images as cached build outputs, so tests that use them hit a shared cache.

Pants 2.17 runs `docker build` for a `docker_image` in every session (the process is never
cached), and a test that depends on the image is keyed on the image id the build prints. Docker
20.10 builds are not reproducible (timestamps in the image config), so on every other machine the
id, and with it the test's cache key, differs although nothing changed.

A `docker_image_archive` builds the same image (its `docker_image` target's own build context:
Dockerfile, packaged PEXes, build args, target stage) in an ordinary cacheable process whose
outputs are the saved image and a `docker-info.json` naming its id. The process's cache key is
what goes into the image, plus a setup script that prepares the image the Dockerfile starts
FROM. A machine that finds the archive in the (remote) cache builds nothing, and a test that
depends on it is keyed on the same bytes everywhere; a test that must run loads the archive into
the engine (see the repo's root `conftest.py`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from pants.backend.docker.goals.package_image import DockerPackageFieldSet
from pants.backend.docker.goals.package_image import get_build_options
from pants.backend.docker.subsystems.docker_options import DockerOptions
from pants.backend.docker.target_types import DockerImageSourceField
from pants.backend.docker.util_rules.docker_binary import DockerBinary
from pants.backend.docker.util_rules.docker_build_context import DockerBuildContext
from pants.backend.docker.util_rules.docker_build_context import DockerBuildContextRequest
from pants.core.goals.package import BuiltPackage
from pants.core.goals.package import BuiltPackageArtifact
from pants.core.goals.package import OutputPathField
from pants.core.goals.package import PackageFieldSet
from pants.core.target_types import FileSourceField
from pants.core.util_rules.source_files import SourceFiles
from pants.core.util_rules.source_files import SourceFilesRequest
from pants.core.util_rules.system_binaries import BashBinary
from pants.engine.addresses import Address
from pants.engine.addresses import AddressInput
from pants.engine.fs import CreateDigest
from pants.engine.fs import Digest
from pants.engine.fs import DigestContents
from pants.engine.fs import DigestSubset
from pants.engine.fs import FileContent
from pants.engine.fs import MergeDigests
from pants.engine.fs import PathGlobs
from pants.engine.process import Process
from pants.engine.process import ProcessResult
from pants.engine.rules import Get
from pants.engine.rules import MultiGet
from pants.engine.rules import collect_rules
from pants.engine.rules import rule
from pants.engine.target import COMMON_TARGET_FIELDS
from pants.engine.target import Dependencies
from pants.engine.target import FieldSet
from pants.engine.target import InferDependenciesRequest
from pants.engine.target import InferredDependencies
from pants.engine.target import InvalidFieldException
from pants.engine.target import StringField
from pants.engine.target import Target
from pants.engine.target import WrappedTarget
from pants.engine.target import WrappedTargetRequest
from pants.engine.unions import UnionRule
from pants.util.logging import LogLevel

# The process's PATH is part of its cache key: a fixed one keeps the key the same on every
# machine (the docker client itself is found by [docker].executable_search_paths).
_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

# Build without a tag (a tag is a mutable name on an engine other runs share), save by id.
_SCRIPT = """\
set -euo pipefail
docker=$1 setup=$2 iidfile=$3 archive=$4
shift 4
if [[ -n "${setup}" ]]; then
  # Builds run side by side: their setup steps (say, building a shared base image) take turns.
  flock "${TMPDIR:-/tmp}/labrador-image-setup.lock" bash "${setup}" >&2
fi
"${docker}" build --quiet --iidfile "${iidfile}" "$@" >&2
"${docker}" save --output "${archive}" "$(cat "${iidfile}")"
"""


class ImageField(StringField):
    alias = "image"
    required = True
    help = "The `docker_image` target whose build this archive caches."


class SetupField(StringField):
    alias = "setup"
    help = (
        "A `file` target holding a bash script run before the build, e.g. one that makes the image the "
        "Dockerfile starts FROM. Its content is part of the cache key: change it and the image is rebuilt."
    )


class DockerImageArchiveTarget(Target):
    alias = "docker_image_archive"
    core_fields = (*COMMON_TARGET_FIELDS, Dependencies, ImageField, SetupField, OutputPathField)
    help = (
        "A `docker_image` built in a cacheable process and saved to a tarball beside its docker-info.json.\n\n"
        "Tests that list it in `runtime_package_dependencies` are keyed on the image's inputs, not on the "
        "id of a build, so they hit a cache shared between machines."
    )


@dataclass(frozen=True)
class DockerImageArchiveFieldSet(PackageFieldSet):
    required_fields = (ImageField,)

    image: ImageField
    setup: SetupField
    output_path: OutputPathField


@dataclass(frozen=True)
class _InferenceFieldSet(FieldSet):
    required_fields = (ImageField,)

    image: ImageField
    setup: SetupField


class InferDockerImageArchiveDependencies(InferDependenciesRequest[_InferenceFieldSet]):
    infer_from = _InferenceFieldSet


def _address_input(owner: Address, field: StringField) -> AddressInput:
    assert field.value is not None
    return AddressInput.parse(
        field.value,
        relative_to=owner.spec_path,
        description_of_origin=f"the `{field.alias}` field of {owner}",
    )


@rule
async def infer_archive_dependencies(request: InferDockerImageArchiveDependencies) -> InferredDependencies:
    owner = request.field_set.address
    fields = [f for f in (request.field_set.image, request.field_set.setup) if f.value]
    addresses = await MultiGet(Get(Address, AddressInput, _address_input(owner, f)) for f in fields)
    return InferredDependencies(addresses)


@rule(desc="Building a Docker image archive", level=LogLevel.DEBUG)
async def package_docker_image_archive(
    field_set: DockerImageArchiveFieldSet,
    docker: DockerBinary,
    bash: BashBinary,
    options: DockerOptions,
) -> BuiltPackage:
    image_address = await Get(Address, AddressInput, _address_input(field_set.address, field_set.image))
    description = f"the `image` field of {field_set.address}"
    image_target = (await Get(WrappedTarget, WrappedTargetRequest(image_address, description))).target
    if not image_target.has_field(DockerImageSourceField):
        raise InvalidFieldException(
            f"{description} must name a `docker_image` target, but {image_address} is a `{image_target.alias}`."
        )
    image_field_set = DockerPackageFieldSet.create(image_target)
    context = await Get(
        DockerBuildContext, DockerBuildContextRequest(image_address, build_upstream_images=False)
    )

    setup_path = ""
    setup_digest = await Get(Digest, CreateDigest([]))
    if field_set.setup.value:
        setup_address = await Get(Address, AddressInput, _address_input(field_set.address, field_set.setup))
        setup_target = (
            await Get(
                WrappedTarget,
                WrappedTargetRequest(setup_address, f"the `setup` field of {field_set.address}"),
            )
        ).target
        if not setup_target.has_field(FileSourceField):
            raise InvalidFieldException(
                f"the `setup` field of {field_set.address} must name a `file` target, "
                f"but {setup_address} is a `{setup_target.alias}`."
            )
        setup_files = await Get(SourceFiles, SourceFilesRequest([setup_target[FileSourceField]]))
        setup_path = setup_files.files[0]
        setup_digest = setup_files.snapshot.digest

    info_path = field_set.output_path.value_or_default(file_ending="docker-info.json")
    archive_path = info_path[: -len("docker-info.json")] + "docker-image.tar"
    iid_path = f"{archive_path}.iid"
    build_args = [
        *get_build_options(context, image_field_set, options.build_target_stage, image_target),
        *(arg for build_arg in context.build_args for arg in ("--build-arg", build_arg)),
        "--file",
        context.dockerfile,
        image_field_set.get_context_root(options.default_context_root),
    ]
    input_digest = await Get(Digest, MergeDigests([context.digest, setup_digest]))
    result = await Get(
        ProcessResult,
        Process(
            argv=(
                bash.path,
                "-c",
                _SCRIPT,
                "docker-image-archive",
                docker.path,
                setup_path,
                iid_path,
                archive_path,
                *build_args,
            ),
            description=f"Building and saving the Docker image of {image_address}",
            env={**context.build_env.environment, "PATH": _PATH},
            input_digest=input_digest,
            immutable_input_digests=docker.extra_input_digests,
            output_files=(archive_path, iid_path),
            level=LogLevel.INFO,
        ),
    )

    iid_digest = await Get(Digest, DigestSubset(result.output_digest, PathGlobs([iid_path])))
    image_id = (await Get(DigestContents, Digest, iid_digest))[0].content.decode().strip()
    info = {"version": 1, "image_id": image_id, "registries": [], "archive": archive_path.rsplit("/", 1)[-1]}
    archive_digest = await Get(Digest, DigestSubset(result.output_digest, PathGlobs([archive_path])))
    info_digest = await Get(Digest, CreateDigest([FileContent(info_path, json.dumps(info).encode())]))
    digest = await Get(Digest, MergeDigests([archive_digest, info_digest]))
    return BuiltPackage(
        digest,
        (
            BuiltPackageArtifact(info_path, (f"Image id: {image_id}",)),
            BuiltPackageArtifact(archive_path),
        ),
    )


def target_types() -> list[type[Target]]:
    return [DockerImageArchiveTarget]


def rules() -> list[object]:
    return [
        *collect_rules(),
        UnionRule(PackageFieldSet, DockerImageArchiveFieldSet),
        UnionRule(InferDependenciesRequest, InferDockerImageArchiveDependencies),
    ]
