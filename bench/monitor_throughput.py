"""Throughput of the monitor's inline detector tier, and how soon a flag is visible to reviewers.

1. Baseline: the inline detectors called in-process on already-parsed events (and with protobuf parsing).
2. Full path: events produced to a real Tansu broker, consumed by the monitor's consumer (consumer group,
   detectors, flag store on SQLite written once per Kafka batch, offset commits), measured from the first
   stored batch to the last; also the consumer process's CPU time per event, which other work on a shared
   machine does not inflate the way it inflates wall-clock rates.
3. Flag visibility: events produced at a steady 1,000 a second while the consumer runs; every tenth is a
   probe that is sure to be flagged (1,000 probes), and for each the time from the broker acknowledging it
   to its review item being readable in the review queue (the store's review_items table, what
   ListReviewItems and the review page read) from another process.

``python -m bench.monitor_throughput``
"""

from __future__ import annotations

import math
import multiprocessing
import os
import queue
import random
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import psutil
import sqlalchemy as sa
from kafka import KafkaProducer
from rich.console import Console
from rich.progress import Progress

from copilot.broker import start_tansu
from copilot.common.v1 import common_pb2
from copilot.events.v1 import events_pb2
from copilot.kafka import ensure_topics
from copilot.ports import free_port
from services.monitor.consumer import MonitorConsumer
from services.monitor.detectors import Detector, PromptInjectionDetector, Tier, run_detectors
from services.monitor.flagstore import FlagStore
from services.monitor.schema import review_items
from services.monitor.server import inline_tier
from services.monitor.settings import MonitorSettings

REPO = Path(__file__).resolve().parent.parent
COMMAND = "python -m bench.monitor_throughput"
EVENTS = 10_000
# The target: a flag visible in the review queue <= 2 s p99 at >= 1,000 events/s.
STEADY_RATE = 1_000
STEADY_SECONDS = 10
PROBE_EVERY = 10

QUESTIONS = [
    "What is the Q3 2026 travel budget?",
    "How many unused vacation days can I carry over?",
    "What is the hotel limit per night in London?",
    "How many days a year can I work from abroad?",
    "What are the standard vendor payment terms?",
    "How much can the on-call director approve in an emergency?",
    "What is the RTO for an orders-db failover?",
    "When is the holiday code freeze?",
]
# Answers of the kind the monitor must flag, mixed into ordinary ones at realistic (high) rates.
SPECIAL_ANSWERS = [
    "Send the invoice to jane.doe@acme-corp.com or call +44 20 7946 0958 [1].",
    "The corporate card is 4111 1111 1111 1111 [2].",
    "Use AKIAIOSFODNN7EXAMPLE with the deploy role [1].",
    "I'm sorry, but I can't help with that request.",
    "That policy is shit, frankly [1].",
]


def corpus_passages() -> list[tuple[str, str]]:
    """(chunk id, text) pairs cut from the sample corpus's Markdown documents."""
    passages = []
    for path in sorted((REPO / "sample" / "corpus").rglob("*.md")):
        text = " ".join(path.read_text().split())
        starts = range(0, max(len(text) - 200, 1), 800)
        passages += [(f"{path.stem}#{n}", text[at : at + 800]) for n, at in enumerate(starts)]
    return passages


def make_event(
    rng: random.Random, passages: list[tuple[str, str]], index: int, probe: bool = False
) -> events_pb2.InteractionEvent:
    """An interaction like generation publishes: four passages, a cited answer with sentence verdicts."""
    given = rng.sample(passages, 4)
    refused = rng.random() < 0.05 and not probe
    sentences = [] if refused else [" ".join(given[n - 1][1].split()[5:20]) + f" [{n}]." for n in (1, 2, 3)]
    if probe:
        sentences[0] = SPECIAL_ANSWERS[0]
    elif not refused and rng.random() < 0.05:
        sentences[rng.randrange(3)] = rng.choice(SPECIAL_ANSWERS)
    event = events_pb2.InteractionEvent(
        event_id=f"bench-{uuid.UUID(int=rng.getrandbits(128))}-{index}",
        user_id=f"user-{rng.randrange(50)}",
        groups=["finance", "engineering"],
        tenant="acme",
        question=rng.choice(QUESTIONS),
        answer="The documents available to you do not cover this question."
        if refused
        else " ".join(sentences),
        passages=[
            common_pb2.Passage(
                chunk_id=chunk_id,
                title="Policy",
                text=text,
                score=rng.uniform(0.4, 0.8),
                access_reason="everyone",
            )
            for chunk_id, text in ([] if refused else given)
        ],  # fmt: skip
        cited_sources=[] if refused else [1, 2, 3],
        refused=refused,
        model="qwen2.5-coder-1.5b",
        total_ms=rng.lognormvariate(8.5, 0.3),
        completion_tokens=rng.randrange(40, 120),
    )
    for n, sentence in enumerate(sentences, start=1):
        event.sentences.add(
            text=sentence, cited=[n], support=0.8, verdict=events_pb2.SUPPORT_VERDICT_SUPPORTED
        )
    event.occurred_at.GetCurrentTime()
    return event


def inline_detectors() -> list[Detector]:
    """The inline tier exactly as the monitor server builds it, with default settings."""
    return inline_tier(MonitorSettings())


def without_passage_cache() -> list[Detector]:
    """The inline tier with the prompt-injection scan of passages uncached: every passage costs its scan,
    as when each answer cites chunks never seen before."""
    return [
        PromptInjectionDetector(passage_cache_size=0) if d.name == "prompt_injection" else d
        for d in inline_detectors()
    ]


def bench_in_process(events: list[events_pb2.InteractionEvent]) -> dict[str, float]:
    payloads = [e.SerializeToString() for e in events]
    detectors = without_passage_cache()
    started = time.perf_counter()
    for event in events:
        run_detectors(detectors, event, Tier.INLINE)
    uncached_s = time.perf_counter() - started
    detectors = inline_detectors()
    started = time.perf_counter()
    for event in events:
        run_detectors(detectors, event, Tier.INLINE)
    detect_s = time.perf_counter() - started
    detectors = inline_detectors()
    started = time.perf_counter()
    for payload in payloads:
        event = events_pb2.InteractionEvent()
        event.ParseFromString(payload)
        run_detectors(detectors, event, Tier.INLINE)
    parse_detect_s = time.perf_counter() - started
    return {
        "detect": len(events) / detect_s,
        "uncached": len(events) / uncached_s,
        "parse_detect": len(events) / parse_detect_s,
    }


def _consumer(bootstrap: str, topic: str, store: FlagStore) -> MonitorConsumer:
    suffix = uuid.uuid4().hex[:8]
    return MonitorConsumer(
        bootstrap,
        topic,
        f"feedback-{suffix}",
        f"monitor-{suffix}",
        f"dlq-{suffix}",
        store,
        inline_detectors(),
    )


def _cpu_s(process: psutil.Process) -> float:
    """CPU time of a process so far (all threads, user and system)."""
    times = process.cpu_times()
    return times.user + times.system


def bench_full_path(
    bootstrap: str,
    events: list[events_pb2.InteractionEvent],
    tmp: Path,
    progress: Progress,
    broker: psutil.Process,
) -> tuple[float, float, float]:
    """Events per second, and CPU milliseconds per event in the consumer's process and in the broker's."""
    consumer_process = psutil.Process()
    topic = f"interactions-{uuid.uuid4().hex[:8]}"
    ensure_topics(bootstrap, [topic], partitions=3)
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5, batch_size=256 * 1024)
    for event in events:
        producer.send(topic, event.SerializeToString())
    producer.flush()
    producer.close()
    store = FlagStore(tmp / "throughput.sqlite")
    consumer = _consumer(bootstrap, topic, store)
    task = progress.add_task("consume", total=len(events))
    consumer.start()
    first: tuple[float, float, float, int] | None = None
    deadline = time.monotonic() + 300
    while consumer.processed < len(events) and time.monotonic() < deadline:
        if first is None and consumer.processed:
            first = (time.perf_counter(), _cpu_s(consumer_process), _cpu_s(broker), consumer.processed)
        progress.update(task, completed=consumer.processed)
        time.sleep(0.01)
    done, done_cpu, done_broker_cpu = time.perf_counter(), _cpu_s(consumer_process), _cpu_s(broker)
    processed = consumer.processed
    consumer.stop()
    store.close()
    if first is None or processed < len(events):
        raise RuntimeError(f"consumer stored {processed} of {len(events)} events in 300 s")
    counted = processed - first[3]
    return (
        counted / (done - first[0]),
        (done_cpu - first[1]) * 1000 / counted,
        (done_broker_cpu - first[2]) * 1000 / counted,
    )


def _watch_queue(database: str, probes: multiprocessing.Queue, seen: multiprocessing.Queue) -> None:
    """In its own process, so polling the store competes with the consumer for a core but not for its GIL:
    reports (event id, wall-clock time its review item became readable) for each probe id it is given."""
    reader = FlagStore(database)
    outstanding: dict[str, None] = {}
    done = False
    while not done or outstanding:
        while True:
            try:
                item = probes.get_nowait()
            except queue.Empty:
                break
            if item is None:
                done = True
            else:
                outstanding[item] = None
        if outstanding:
            # One query for all of them: a query per probe would take more CPU from the consumer the further
            # it falls behind, and make it fall further.
            with reader.reading() as conn:
                found = conn.execute(
                    sa.select(review_items.c.interaction_id).where(
                        review_items.c.interaction_id.in_(list(outstanding))
                    )
                ).scalars()
                visible_at = time.time()
                for event_id in set(found):
                    seen.put((event_id, visible_at))
                    del outstanding[event_id]
        time.sleep(0.01)
    reader.close()


def _produce_steady(
    bootstrap: str,
    topic: str,
    payloads: list[tuple[bool, str, bytes]],
    rate: int,
    sent: multiprocessing.Queue,
) -> None:
    """In its own process, like generation's publisher: sends at a steady rate and reports (event id,
    wall-clock time the broker acknowledged it) of each probe, then (None, seconds the sending took). The
    acknowledgement is taken in the producer's callback, so waiting for it never holds the schedule up."""
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=1)
    acked = threading.Semaphore(0)

    def on_ack(event_id: str) -> Callable[[object], None]:
        def record(_metadata: object) -> None:
            sent.put((event_id, time.time()))
            acked.release()

        return record

    probes = 0
    started = time.perf_counter()
    for i, (probe, event_id, payload) in enumerate(payloads):
        wait = started + i / rate - time.perf_counter()
        if wait > 0:
            time.sleep(wait)
        future = producer.send(topic, payload)
        if probe:
            future.add_callback(on_ack(event_id))
            probes += 1
    producer.flush()
    elapsed = time.perf_counter() - started
    for _ in range(probes):
        acked.acquire(timeout=30)
    producer.close()
    sent.put((None, elapsed))


def bench_visibility(
    bootstrap: str, passages: list[tuple[str, str]], tmp: Path, progress: Progress, rate: int
) -> tuple[list[float], int, float]:
    """Seconds from produce to a probe's review item being readable, at a steady rate; how many probes were
    sent; and the rate the sender achieved."""
    topic = f"steady-{uuid.uuid4().hex[:8]}"
    ensure_topics(bootstrap, [topic], partitions=3)
    database = str(tmp / "visibility.sqlite")
    store = FlagStore(database)
    consumer = _consumer(bootstrap, topic, store)
    consumer.start()
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=1)
    rng = random.Random(7)
    total = rate * STEADY_SECONDS
    payloads = [
        (i % PROBE_EVERY == 0, event.event_id, event.SerializeToString())
        for i, event in enumerate(
            make_event(rng, passages, i, probe=i % PROBE_EVERY == 0) for i in range(total)
        )
    ]
    # Warm up until the group has joined, so the join is not counted as latency.
    producer.send(topic, make_event(rng, passages, -1).SerializeToString())
    producer.flush()
    joined_by = time.monotonic() + 120
    while consumer.processed == 0:
        if time.monotonic() > joined_by:
            consumer.stop()
            store.close()
            raise RuntimeError("the consumer stored nothing within 120 s of the warm-up event")
        time.sleep(0.05)
    producer.close()
    context = multiprocessing.get_context("spawn")
    probes: multiprocessing.Queue = context.Queue()
    seen: multiprocessing.Queue = context.Queue()
    sent: multiprocessing.Queue = context.Queue()
    watcher = context.Process(target=_watch_queue, args=(database, probes, seen), daemon=True)
    watcher.start()
    sender = context.Process(
        target=_produce_steady, args=(bootstrap, topic, payloads, rate, sent), daemon=True
    )
    sender.start()
    task = progress.add_task(f"steady {rate}/s", total=total)
    sent_at: dict[str, float] = {}
    while (item := sent.get(timeout=STEADY_SECONDS * 10))[0] is not None:
        sent_at[item[0]] = item[1]
        probes.put(item[0])
        progress.update(task, completed=len(sent_at) * PROBE_EVERY)
    achieved = total / item[1]
    probes.put(None)
    sender.join(10)
    latencies: list[float] = []
    deadline = time.monotonic() + 60
    while len(latencies) < len(sent_at) and time.monotonic() < deadline:
        try:
            event_id, visible_at = seen.get(timeout=1)
        except queue.Empty:
            continue
        latencies.append(visible_at - sent_at[event_id])
    watcher.join(10)
    consumer.stop()
    store.close()
    return sorted(latencies), len(sent_at), achieved


def pct(values: list[float], q: float) -> float:
    """Nearest-rank percentile of sorted values: the smallest value at least a fraction q of them reach."""
    return values[max(0, math.ceil(q * len(values)) - 1)]


def run(console: Console) -> str:
    passages = corpus_passages()
    rng = random.Random(20261129)
    events = [make_event(rng, passages, i) for i in range(EVENTS)]
    console.print("[dim]monitor throughput: inline detectors in-process[/dim]")
    baseline = bench_in_process(events)
    with tempfile.TemporaryDirectory() as tmp_name, Progress(console=console, transient=True) as progress:
        tmp = Path(tmp_name)
        port = free_port()
        broker = start_tansu(port, tmp / "tansu.log")
        try:
            bootstrap = f"127.0.0.1:{port}"
            console.print("[dim]monitor throughput: full path through the broker[/dim]")
            full, cpu_ms, broker_ms = bench_full_path(
                bootstrap, events, tmp, progress, psutil.Process(broker.pid)
            )
            console.print(f"[dim]monitor throughput: visibility at {STEADY_RATE:,} events/s[/dim]")
            latencies, probes, achieved = bench_visibility(bootstrap, passages, tmp, progress, STEADY_RATE)
        finally:
            broker.terminate()
            broker.wait(10)
    load = " / ".join(f"{x:.1f}" for x in os.getloadavg())
    visibility = (
        f"| {STEADY_RATE * STEADY_SECONDS:,} events at {STEADY_RATE:,}/s asked, {achieved:,.0f}/s sent; "
        f"{len(latencies)} of {probes} probes seen "
        f"| {statistics.median(latencies):.3f} | {pct(latencies, 0.95):.3f} | {pct(latencies, 0.99):.3f} "
        f"| {max(latencies):.3f} |"
        if latencies
        else f"| no probe's review item became visible ({probes} sent) | - | - | - | - |"
    )
    return f"""## Monitor: inline detector throughput and flag visibility

Command: `{COMMAND}`. {EVENTS:,} interaction events like generation publishes (4 passages of about 800
characters from the sample corpus, a cited answer with sentence verdicts; 5 % refusals, 5 % with PII,
secrets, a refusal or profanity in the answer), the inline tier as the monitor server builds it
(`services.monitor.server.inline_tier`). The sample corpus
has {len(corpus_passages())} chunks, so the prompt-injection scan of passages is almost always cached; the
second row shows the cost when it never is.

| path | events/s | ratio to baseline |
|---|---|---|
| baseline: inline detectors in-process, events already parsed | {baseline["detect"]:,.0f} | 1.00x |
| inline detectors in-process, passages never seen before (no passage cache) | {baseline["uncached"]:,.0f} | {baseline["uncached"] / baseline["detect"]:.2f}x |
| protobuf parse + inline detectors in-process | {baseline["parse_detect"]:,.0f} | {baseline["parse_detect"] / baseline["detect"]:.2f}x |
| full path: Tansu -> consumer group -> detectors -> SQLite flag store -> commit | {full:,.0f} | {full / baseline["detect"]:.2f}x |

CPU per event on the full path: {cpu_ms:.2f} ms in the consumer's process, {broker_ms:.2f} ms in the broker's.
Each runs on a core of its own when nothing else does, so two idle cores would carry
{1000 / max(cpu_ms, broker_ms):,.0f} events/s; the wall-clock rates above are lower when other work shares the
cores (load average {load} as this run finished).

Flag visibility: events produced at a steady {STEADY_RATE:,} a second from another process, every
{PROBE_EVERY}th a probe sure to be flagged (PII in the answer); for each probe, the time from the broker
acknowledging it to its review item being readable in the review queue (the `review_items` table that
ListReviewItems and the review page read) from a third process polling every 10 ms. The target is 2 s
at p99.

| review item visible after produce | p50 s | p95 s | p99 s | max s |
|---|---|---|---|---|
{visibility}
"""


if __name__ == "__main__":
    console = Console()
    console.print(run(console))
    sys.exit(0)
