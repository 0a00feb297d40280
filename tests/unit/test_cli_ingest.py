"""`copilot ingest` keeps several documents in flight; these check the window, not the service."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from copilot.cli import MAX_PARALLEL_INGESTS, _sent_side_by_side, build_parser
from copilot.ingest.v1 import ingest_pb2


def test_every_file_is_sent_once_with_at_most_parallel_in_flight() -> None:
    files = [Path(f"doc-{i:02}.md") for i in range(25)]
    lock = threading.Lock()
    in_flight = peak = 0
    sent: list[Path] = []

    def send(file: Path) -> ingest_pb2.IngestDocumentResponse:
        nonlocal in_flight, peak
        with lock:
            in_flight += 1
            peak = max(peak, in_flight)
            sent.append(file)
        time.sleep(0.01 * (int(file.stem[-2:]) % 3))
        with lock:
            in_flight -= 1
        if file.stem.endswith("7"):
            raise OSError(f"cannot read {file}")
        return ingest_pb2.IngestDocumentResponse(chunk_count=int(file.stem[-2:]))

    results = dict(_sent_side_by_side(files, send, 3))

    assert sorted(sent) == files and peak == 3
    assert set(results) == set(files)
    for file, outcome in results.items():
        if file.stem.endswith("7"):
            assert isinstance(outcome, OSError) and str(file) in str(outcome)
        else:
            assert isinstance(outcome, ingest_pb2.IngestDocumentResponse)
            assert outcome.chunk_count == int(file.stem[-2:])


def test_stopping_early_sends_no_more_files() -> None:
    files = [Path(f"doc-{i}.md") for i in range(20)]
    sent: list[Path] = []

    def send(file: Path) -> ingest_pb2.IngestDocumentResponse:
        sent.append(file)
        return ingest_pb2.IngestDocumentResponse()

    for _ in _sent_side_by_side(files, send, 4):
        break
    # The first window was in flight; nothing was sent after the caller stopped.
    assert len(sent) == 4


@pytest.mark.parametrize("value", ["0", "-2", "many", str(MAX_PARALLEL_INGESTS + 1)])
def test_parallel_out_of_range_is_refused_with_the_range(
    value: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args(["ingest", "docs", "--parallel", value])
    assert exit_info.value.code == 2
    assert f"from 1 to {MAX_PARALLEL_INGESTS}" in capsys.readouterr().err
