from __future__ import annotations

from pathlib import Path

import pytest

from services.ingest.access import Access, access_for, is_sidecar, load_sidecar
from services.ingest.errors import IngestError, InvalidAccessFile

CORPUS = Path(__file__).resolve().parents[2] / "sample" / "corpus"


def write(path: Path, text: str = "") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def test_principals_are_sorted_and_deduplicated() -> None:
    access = Access("acme", groups=("legal", "finance", "legal"), users=("bob",), public=True)

    assert access.principals() == ["everyone", "group:finance", "group:legal", "user:bob"]
    assert not access.is_empty()


@pytest.mark.parametrize(
    ("access", "empty"),
    [
        (Access("acme"), True),
        (Access("acme", classification="secret"), True),
        (Access("acme", groups=("finance",)), False),
        (Access("acme", users=("alice",)), False),
        (Access("acme", public=True), False),
    ],
)
def test_access_without_readers_is_empty(access: Access, empty: bool) -> None:
    assert access.is_empty() is empty


def test_load_sidecar_reads_every_field(tmp_path: Path) -> None:
    sidecar = write(
        tmp_path / "access.yaml",
        "groups: [finance, audit]\nusers:\n  - alice\npublic: false\nclassification: confidential\n",
    )

    assert load_sidecar(sidecar, "acme") == Access(
        "acme", ("finance", "audit"), ("alice",), False, "confidential"
    )


def test_load_sidecar_defaults_and_missing_file(tmp_path: Path) -> None:
    assert load_sidecar(write(tmp_path / "access.yaml", "public: true\n"), "acme") == Access(
        "acme", (), (), True, "internal"
    )
    assert load_sidecar(tmp_path / "nowhere" / "access.yaml", "acme") is None


@pytest.mark.parametrize("text", ["", "# only a comment\n", "groups: []\n", "classification: secret\n"])
def test_sidecar_without_readers_loads_as_empty_access(tmp_path: Path, text: str) -> None:
    access = load_sidecar(write(tmp_path / "access.yaml", text), "acme")

    assert access is not None and access.is_empty()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("groups: [finance\n", "not valid YAML"),
        ("- finance\n- legal\n", "expected a mapping"),
        ("group: [finance]\n", "unknown keys ['group']"),
        ("groups: finance\n", "'groups' must be a list"),
        ("users: [alice, 7]\n", "'users' must be a list"),
        ("groups: ['']\n", "'groups' must be a list"),
        ("public: yes please\n", "'public' must be true or false"),
        ("classification: ''\n", "'classification' must be a non-empty string"),
        ("groups: !!python/object/apply:os.system ['true']\n", "not valid YAML"),
    ],
)
def test_malformed_sidecar_is_rejected(tmp_path: Path, text: str, expected: str) -> None:
    sidecar = write(tmp_path / "access.yaml", text)

    with pytest.raises(InvalidAccessFile) as caught:
        load_sidecar(sidecar, "acme")

    assert expected in str(caught.value)
    assert str(sidecar) in str(caught.value)
    assert isinstance(caught.value, IngestError)


def test_non_utf8_sidecar_is_rejected(tmp_path: Path) -> None:
    sidecar = tmp_path / "access.yaml"
    sidecar.write_bytes(b"groups: [caf\xe9]\n")

    with pytest.raises(InvalidAccessFile, match="not UTF-8"):
        load_sidecar(sidecar, "acme")


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    write(tmp_path / "access.yaml", "groups: [staff]\n")
    write(tmp_path / "finance" / "access.yaml", "groups: [finance]\nclassification: confidential\n")
    write(tmp_path / "finance" / "q3" / "budget.md", "# Budget\n")
    write(tmp_path / "finance" / "q3" / "salaries.md", "# Salaries\n")
    write(tmp_path / "finance" / "q3" / "salaries.md.access.yaml", "users: [dana]\nclassification: secret\n")
    write(tmp_path / "handbook.md", "# Handbook\n")
    return tmp_path


def test_nearest_folder_sidecar_wins_without_merging(tree: Path) -> None:
    access = access_for(tree / "finance" / "q3" / "budget.md", tree, "acme", None)

    assert access == Access("acme", ("finance",), (), False, "confidential")


def test_file_sidecar_overrides_folder(tree: Path) -> None:
    access = access_for(tree / "finance" / "q3" / "salaries.md", tree, "acme", None)

    assert access == Access("acme", (), ("dana",), False, "secret")


def test_root_sidecar_applies_to_files_in_root(tree: Path) -> None:
    access = access_for(tree / "handbook.md", tree, "acme", None)

    assert access is not None and access.principals() == ["group:staff"]


def test_missing_sidecars_fall_back_to_default(tmp_path: Path) -> None:
    document = write(tmp_path / "docs" / "a.md", "# A\n")
    default = Access("acme", groups=("everyone-in-ops",))

    assert access_for(document, tmp_path, "acme", None) is None
    assert access_for(document, tmp_path, "acme", default) is default


def test_sidecars_above_root_are_ignored(tmp_path: Path) -> None:
    write(tmp_path / "access.yaml", "public: true\n")
    root = tmp_path / "corpus"
    document = write(root / "a.md", "# A\n")

    assert access_for(document, root, "acme", None) is None


def test_file_outside_root_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        access_for(tmp_path / "elsewhere" / "a.md", tmp_path / "corpus", "acme", None)


def test_malformed_sidecar_on_the_way_up_is_reported(tree: Path) -> None:
    write(tree / "finance" / "q3" / "access.yaml", "groups: [finance\n")

    with pytest.raises(InvalidAccessFile):
        access_for(tree / "finance" / "q3" / "budget.md", tree, "acme", None)


@pytest.mark.parametrize(
    ("name", "sidecar"),
    [
        ("access.yaml", True),
        ("salaries.md.access.yaml", True),
        ("access.yaml.md", False),
        ("access.yml", False),
        ("budget.md", False),
    ],
)
def test_is_sidecar(name: str, sidecar: bool) -> None:
    assert is_sidecar(Path("corpus") / name) is sidecar


@pytest.mark.parametrize(
    ("path", "principals", "classification"),
    [
        ("everyone/vacation-policy.md", ["everyone"], "internal"),
        ("everyone/expense-policy.html", ["everyone"], "internal"),
        ("finance/q3-2026-budget-memo.md", ["group:finance"], "confidential"),
        ("finance/approval-limits.pdf", ["group:finance"], "confidential"),
        ("engineering/deploy-process.md", ["group:engineering"], "internal"),
        ("legal/contract-review-process.docx", ["group:legal"], "confidential"),
    ],
)
def test_sample_corpus_access(path: str, principals: list[str], classification: str) -> None:
    access = access_for(CORPUS / path, CORPUS, "acme", None)

    assert access is not None
    assert (access.tenant, access.principals(), access.classification) == ("acme", principals, classification)


def test_every_sample_document_has_readers() -> None:
    documents = [path for path in CORPUS.rglob("*") if path.is_file() and not is_sidecar(path)]

    assert len(documents) == 11
    for document in documents:
        access = access_for(document, CORPUS, "acme", None)
        assert access is not None and not access.is_empty(), document
