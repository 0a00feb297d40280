"""Ingest requests from Kafka, one document at a time against documents side by side.

Pages of the PostgreSQL manual go onto a topic of the real broker (Tansu) as ``IngestRequestEvent``s; the
ingest service's consumer takes them with ``parallel`` 1 and then with the default, into Qdrant's engine
in-process, each run on a topic, consumer group and store of its own. The runs alternate (1, N, N, 1) so that
the machine's drift falls on both sides alike.
"""

from __future__ import annotations

import os
import shutil
import statistics
import tempfile
import time
import uuid
from pathlib import Path

from kafka import KafkaProducer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from bench.pg15 import TENANT, pages
from bench.skeleton import NoEvents
from copilot.broker import start_tansu
from copilot.common.v1 import common_pb2
from copilot.embedding import MiniLmEmbedder, favour_embedding_threads
from copilot.events.v1 import events_pb2
from copilot.kafka import ensure_topics
from copilot.ports import free_port
from copilot.vectorstore.edge import EdgeChunkStore
from services.ingest.pipeline import IngestPipeline
from services.ingest.requests import IngestRequestConsumer
from services.ingest.settings import IngestSettings

PAGES = 40
MAX_REQUEST_BYTES = 64 * 1024 * 1024


def _publish(bootstrap: str, topic: str, files: list[Path]) -> None:
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", max_request_size=MAX_REQUEST_BYTES)
    for file in files:
        request = events_pb2.IngestRequestEvent(
            event_id=str(uuid.uuid4()),
            action=events_pb2.INGEST_ACTION_INGEST,
            uri=str(file),
            filename=file.name,
            content=file.read_bytes(),
            access=common_pb2.AccessControl(groups=["bench"]),
            tenant=TENANT,
            requested_by="bench",
        )
        producer.send(topic, request.SerializeToString())
    producer.flush()
    producer.close()


def _consume(
    bootstrap: str, files: list[Path], embedder: MiniLmEmbedder, parallel: int, home: Path, console: Console
) -> tuple[float, int]:
    """Seconds from the consumer's start until every request is handled and committed, and the chunks."""
    suffix = uuid.uuid4().hex[:8]
    topic, dead_letters = f"bench-requests-{suffix}", f"bench-dlq-{suffix}"
    ensure_topics(bootstrap, [topic, dead_letters], partitions=1)
    _publish(bootstrap, topic, files)
    store = EdgeChunkStore(home / f"store-{suffix}", embedder.dimension)
    pipeline = IngestPipeline(store, embedder, NoEvents())
    consumer = IngestRequestConsumer(
        bootstrap, topic, f"bench-{suffix}", dead_letters, pipeline, MAX_REQUEST_BYTES, parallel=parallel
    )
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, console=console, transient=True) as progress:
        task = progress.add_task(f"parallel {parallel}", total=len(files))
        started = time.perf_counter()
        consumer.start()
        while consumer.handled < len(files):
            progress.update(task, completed=consumer.handled)
            time.sleep(0.05)
        elapsed = time.perf_counter() - started
    consumer.stop()
    chunks = store.count()
    store.close()
    return elapsed, chunks


def run(console: Console | None = None) -> str:
    console = console or Console()
    favour_embedding_threads()
    default = IngestSettings().parallel_requests
    files = pages(PAGES)[:PAGES]
    home = Path(tempfile.mkdtemp(prefix="copilot-bench-requests-"))
    port = free_port()
    broker = start_tansu(port, home / "tansu.log")
    bootstrap = f"127.0.0.1:{port}"
    embedder = MiniLmEmbedder(threads=1)
    times: dict[int, list[float]] = {1: [], default: []}
    chunks = 0
    try:
        for parallel in (1, default, default, 1):
            elapsed, chunks = _consume(bootstrap, files, embedder, parallel, home, console)
            console.print(f"parallel {parallel}: {len(files)} pages, {chunks:,} chunks in {elapsed:.1f} s")
            times[parallel].append(elapsed)
    finally:
        broker.kill()
        shutil.rmtree(home, ignore_errors=True)
    one, side_by_side = statistics.mean(times[1]), statistics.mean(times[default])

    def row(parallel: int) -> str:
        runs = " / ".join(f"{t:.1f}" for t in times[parallel])
        mean = statistics.mean(times[parallel])
        return f"| {parallel} | {runs} | {mean:.1f} | {chunks / mean:.1f} |"

    return f"""## Ingest requests from Kafka: documents side by side (issue 3)

Command: `python -m bench.run ingest-requests`. {len(files)} pages of the PostgreSQL 15 manual
({chunks:,} chunks) as `IngestRequestEvent`s on the real broker (Tansu), consumed by the ingest service's
consumer into Qdrant's engine in-process, all-MiniLM-L6-v2 int8 on one thread per document. Time from
the consumer's start until every request is handled and its offset committed; runs alternate 1, {default},
{default}, 1.

| documents in flight | runs s | mean s | chunks/s |
|---|---|---|---|
{row(1)}
{row(default)}

Side by side ({default}, `COPILOT_INGEST_PARALLEL_REQUESTS`' default) / one at a time: **{one / side_by_side:.2f}x**
faster on {os.cpu_count()} cores.
"""
