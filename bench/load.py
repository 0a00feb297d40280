"""``make load``: concurrent gRPC clients mixing search, answer and ingest against the embedded stack.

Starts the stack (`copilot up` in a temporary home, on free ports), ingests the sample corpus, then runs
``--clients`` threads for ``--minutes``, each a different user (its own token subject, so the per-user rate
limit applies per client as it would per person), picking each call by the ``--mix`` weights:

- search: a sample question as a reader (alice, bob or carol by turn);
- answer: the same through GenerationService, streamed to the end;
- ingest: rewrites one of the client's own documents with new content (parse, embed, replace, event), so
  the store keeps a constant size and memory growth means a leak, not more data.

Reports throughput, p50/p95/p99 per RPC, errors by status code, and the resident memory (RSS, with
children: Ray's workers count for generation) of every process of the stack over time, as a table and a
PNG. Memory growth compares the median of the first window after warm-up with the median of the last one.

Answers use SmolLM2-135M by default (``--model``): Qwen2.5-Coder-1.5B takes seconds per answer on two
cores, which would make the run measure the model's queue rather than the services.

``python -m bench.load --clients 20 --minutes 10 --mix search=85,answer=10,ingest=5``
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import psutil
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

from copilot.common.v1 import common_pb2
from copilot.devissuer import DevIssuer, load_or_create_key, load_users
from copilot.generation.v1 import generation_pb2, generation_pb2_grpc
from copilot.grpc_client import bearer, open_channel
from copilot.ingest.v1 import ingest_pb2, ingest_pb2_grpc
from copilot.launcher import LauncherSettings, Stack, down, up
from copilot.ports import free_base_port, free_port
from copilot.retrieval.v1 import retrieval_pb2, retrieval_pb2_grpc
from services.ingest.access import access_for, is_sidecar

REPO = Path(__file__).resolve().parent.parent
CORPUS = REPO / "sample" / "corpus"
DOCS = REPO / "docs"
# Where `make bench` keeps each benchmark's section (bench/run.py); the PNG goes next to it.
SECTIONS = DOCS / "bench"
COMMAND = "python -m bench.load"
DEFAULT_MIX = {"search": 85, "answer": 10, "ingest": 5}
DEFAULT_MODEL = "smollm2-135m"
READERS = ["alice", "bob", "carol"]
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
TIMEOUTS_S = {"search": 30.0, "answer": 300.0, "ingest": 120.0}
MEMORY_PERIOD_S = 5.0
# Growth above this between the first window after warm-up and the last one fails the target.
MEMORY_GROWTH_LIMIT = 0.10


@dataclass(frozen=True)
class Call:
    op: str
    finished_s: float  # since the start of the load
    latency_ms: float
    code: str  # "OK" or the gRPC status code's name
    detail: str = ""


@dataclass
class Results:
    calls: list[Call] = field(default_factory=list)
    # component -> [(seconds since start, RSS bytes)]
    memory: dict[str, list[tuple[float, int]]] = field(default_factory=lambda: defaultdict(list))
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, call: Call) -> None:
        with self.lock:
            self.calls.append(call)


def parse_mix(text: str) -> dict[str, int]:
    mix: dict[str, int] = {}
    for part in text.split(","):
        name, _, weight = part.partition("=")
        name = name.strip()
        if name not in DEFAULT_MIX:
            raise argparse.ArgumentTypeError(f"unknown operation {name!r}; use {', '.join(DEFAULT_MIX)}")
        try:
            mix[name] = int(weight)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(
                f"weight of {name!r} must be an integer, got {weight!r}"
            ) from exc
        if mix[name] < 0:
            raise argparse.ArgumentTypeError(f"weight of {name!r} must not be negative")
    if not sum(mix.values()):
        raise argparse.ArgumentTypeError("the mix needs at least one positive weight")
    return mix


class Client:
    """One simulated user: their own channel per service and their own token subjects."""

    def __init__(self, index: int, stack: Stack, issuer: DevIssuer, lifetime_s: int, seed: int) -> None:
        self.index = index
        self.rng = random.Random(seed)
        reader = READERS[index % len(READERS)]
        # Distinct subjects: each client is a person as far as the rate limiter and the monitor can tell.
        self.read_token = issuer.mint(reader, lifetime_s, sub=f"load-reader-{index}")
        self.write_token = issuer.mint("ops", lifetime_s, sub=f"load-writer-{index}")
        self.search_stub = retrieval_pb2_grpc.RetrievalServiceStub(open_channel(stack.endpoint("retrieval")))
        self.answer_stub = generation_pb2_grpc.GenerationServiceStub(
            open_channel(stack.endpoint("generation"))
        )
        self.ingest_stub = ingest_pb2_grpc.IngestServiceStub(open_channel(stack.endpoint("ingest")))
        self.revision = 0

    def search(self) -> None:
        request = retrieval_pb2.SearchRequest(query=self.rng.choice(QUESTIONS), top_k=5)
        self.search_stub.Search(request, metadata=bearer(self.read_token), timeout=TIMEOUTS_S["search"])

    def answer(self) -> None:
        request = generation_pb2.AnswerRequest(question=self.rng.choice(QUESTIONS))
        replies = self.answer_stub.Answer(
            request, metadata=bearer(self.read_token), timeout=TIMEOUTS_S["answer"]
        )
        if not any(reply.HasField("final") for reply in replies):
            raise RuntimeError("the answer stream ended without its final message")

    def ingest(self) -> None:
        # One of two documents per client, each rewritten: the corpus size stays constant.
        self.revision += 1
        slot = self.revision % 2
        lines = [f"# Load test note {self.index}-{slot}", "", f"Revision {self.revision}."]
        lines += [f"Item {i}: {self.rng.choice(QUESTIONS)}" for i in range(20)]
        request = ingest_pb2.IngestDocumentRequest(
            uri=f"/load/client-{self.index}/note-{slot}.md",
            filename=f"note-{slot}.md",
            content="\n".join(lines).encode(),
            access=common_pb2.AccessControl(groups=["engineering"], classification="internal"),
        )
        self.ingest_stub.IngestDocument(
            request, metadata=bearer(self.write_token), timeout=TIMEOUTS_S["ingest"]
        )

    def run(self, mix: dict[str, int], started: float, stop_at: float, results: Results) -> None:
        ops = list(mix)
        weights = [mix[o] for o in ops]
        actions: dict[str, Callable[[], None]] = {
            "search": self.search,
            "answer": self.answer,
            "ingest": self.ingest,
        }
        while time.monotonic() < stop_at:
            op = self.rng.choices(ops, weights)[0]
            began = time.monotonic()
            code, detail = "OK", ""
            try:
                actions[op]()
            except grpc.RpcError as exc:
                code, detail = exc.code().name, exc.details() or ""  # type: ignore[attr-defined]
            except Exception as exc:  # counted as an error, never allowed to end the client
                code, detail = type(exc).__name__, str(exc)
            ended = time.monotonic()
            results.add(Call(op, ended - started, (ended - began) * 1000, code, detail[:300]))


def component_rss(pid: int) -> int:
    """RSS of a process and everything it spawned (Ray's raylet and workers for generation)."""
    try:
        process = psutil.Process(pid)
        total = process.memory_info().rss
        for child in process.children(recursive=True):
            try:
                total += child.memory_info().rss
            except psutil.NoSuchProcess:
                continue
    except psutil.NoSuchProcess:
        return 0
    return int(total)


def sample_memory(stack: Stack, started: float, stop: threading.Event, results: Results) -> None:
    while True:
        now = time.monotonic() - started
        for component in stack.components:
            results.memory[component.name].append((now, component_rss(component.pid)))
        if stop.wait(MEMORY_PERIOD_S):
            return


def ingest_corpus(stack: Stack, token: str) -> int:
    stub = ingest_pb2_grpc.IngestServiceStub(open_channel(stack.endpoint("ingest")))
    count = 0
    for path in sorted(p for p in CORPUS.rglob("*") if p.is_file() and not is_sidecar(p)):
        access = access_for(path, CORPUS, "acme", None)
        if access is None:
            continue
        stub.IngestDocument(
            ingest_pb2.IngestDocumentRequest(
                uri=str(path.resolve()),
                filename=path.name,
                content=path.read_bytes(),
                access=common_pb2.AccessControl(
                    groups=list(access.groups),
                    users=list(access.users),
                    public=access.public,
                    classification=access.classification,
                ),
            ),
            metadata=bearer(token),
            timeout=120,
        )
        count += 1
    return count


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


@dataclass(frozen=True)
class MemoryVerdict:
    component: str
    warm_mib: float
    end_mib: float
    peak_mib: float
    growth: float


def memory_verdicts(results: Results, duration_s: float) -> tuple[float, list[MemoryVerdict]]:
    """Warm-up is the first fifth of the run (at most two minutes); each window is a tenth (at least
    three samples), compared by their medians so one garbage-collection peak does not decide."""
    warmup_s = min(120.0, duration_s / 5)
    window_s = max(duration_s / 10, 3 * MEMORY_PERIOD_S)
    verdicts = []
    for name, samples in results.memory.items():
        after = [rss for t, rss in samples if warmup_s <= t < warmup_s + window_s]
        last = [rss for t, rss in samples if t >= duration_s - window_s]
        if not after or not last:
            continue
        warm, end = statistics.median(after), statistics.median(last)
        peak = max(rss for _, rss in samples)
        verdicts.append(MemoryVerdict(name, warm / 2**20, end / 2**20, peak / 2**20, (end - warm) / warm))
    return warmup_s, verdicts


def plot(results: Results, duration_s: float, warmup_s: float, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (mem_ax, rate_ax) = plt.subplots(2, 1, figsize=(10, 8), sharex=True)
    for name, samples in sorted(results.memory.items()):
        mem_ax.plot([t / 60 for t, _ in samples], [rss / 2**20 for _, rss in samples], label=name)
    mem_ax.axvline(warmup_s / 60, color="grey", linestyle="--", linewidth=1)
    mem_ax.text(warmup_s / 60, mem_ax.get_ylim()[1], " end of warm-up", va="top", fontsize=8, color="grey")
    mem_ax.set_ylabel("RSS with children (MiB)")
    mem_ax.set_title("Memory of the stack's processes")
    mem_ax.legend(loc="center right", fontsize=8)
    bucket_s = max(5.0, duration_s / 60)
    buckets = int(duration_s // bucket_s) + 1
    for op in sorted({c.op for c in results.calls}):
        ok = [0] * buckets
        failed = [0] * buckets
        for c in results.calls:
            if c.op == op and c.finished_s < buckets * bucket_s:
                (ok if c.code == "OK" else failed)[int(c.finished_s // bucket_s)] += 1
        xs = [(i + 0.5) * bucket_s / 60 for i in range(buckets)]
        rate_ax.plot(xs, [n / bucket_s for n in ok], label=f"{op} ok")
        if any(failed):
            rate_ax.plot(xs, [n / bucket_s for n in failed], linestyle=":", label=f"{op} errors")
    rate_ax.set_ylabel("calls per second")
    rate_ax.set_xlabel("minutes")
    rate_ax.set_title("Completed calls")
    rate_ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def report(
    results: Results,
    clients: int,
    minutes: float,
    mix: dict[str, int],
    model: str,
    startup_s: float,
    corpus_files: int,
    png: Path,
) -> str:
    duration_s = minutes * 60
    by_op: dict[str, list[Call]] = defaultdict(list)
    for c in results.calls:
        by_op[c.op].append(c)
    rows = []
    for op in [o for o in DEFAULT_MIX if o in by_op]:
        calls = by_op[op]
        ok = [c.latency_ms for c in calls if c.code == "OK"]
        errors = len(calls) - len(ok)
        rows.append(
            f"| {op} | {len(calls)} | {errors} | {len(ok) / duration_s:.2f} | "
            f"{pct(ok, 0.5):.0f} | {pct(ok, 0.95):.0f} | {pct(ok, 0.99):.0f} |"
        )
    total = len(results.calls)
    total_errors = sum(c.code != "OK" for c in results.calls)
    error_rows = [
        f"| {op} | {code} | {n} | {next(c.detail for c in results.calls if (c.op, c.code) == (op, code))[:120]} |"
        for (op, code), n in Counter((c.op, c.code) for c in results.calls if c.code != "OK").most_common()
    ]
    warmup_s, verdicts = memory_verdicts(results, duration_s)
    memory_rows = [
        f"| {v.component} | {v.warm_mib:.0f} | {v.end_mib:.0f} | {v.peak_mib:.0f} | {v.growth * 100:+.1f}% | "
        f"{'ok' if v.growth <= MEMORY_GROWTH_LIMIT else 'over'} |"
        for v in verdicts
    ]
    grown = [v.component for v in verdicts if v.growth > MEMORY_GROWTH_LIMIT]
    verdict = (
        "**Target met**: no errors, no process grew more than 10% after warm-up."
        if not total_errors and not grown
        else f"**Target missed**: {total_errors} error{'' if total_errors == 1 else 's'}"
        + (f"; grew more than 10%: {', '.join(grown)}" if grown else "")
        + "."
    )
    mix_text = ",".join(f"{k}={v}" for k, v in mix.items())
    # Relative to docs/, where benchmarks.md joins the sections.
    try:
        image = png.resolve().relative_to(DOCS)
    except ValueError:
        image = png.resolve()
    errors_table = (
        "\n| rpc | status | count | first message |\n|---|---|---|---|\n" + "\n".join(error_rows) + "\n"
        if error_rows
        else ""
    )
    return f"""## Load: {clients} clients for {minutes:g} minute{"" if minutes == 1 else "s"}

Command: `{COMMAND} --clients {clients} --minutes {minutes:g} --mix {mix_text} --model {model}` (`make load`).
Machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}; the clients share
the machine with the stack. Stack start {startup_s:.0f} s, sample corpus ({corpus_files} files) ingested
first. Each client is its own user and calls back to back (no think time); ingest rewrites the client's own
two notes, so the store's size stays constant. Answers with {model}.

{verdict} {total} calls, {total / duration_s:.1f} per second.

| rpc | calls | errors | ok per s | p50 ms | p95 ms | p99 ms |
|---|---|---|---|---|---|---|
{chr(10).join(rows)}
{errors_table}
Memory (RSS including children; Ray's processes count for generation), sampled every {MEMORY_PERIOD_S:g} s.
Warm-up: the first {warmup_s:.0f} s; growth compares the median of the window after warm-up with the
median of the last window.

| process | after warm-up MiB | end MiB | peak MiB | growth | within 10% |
|---|---|---|---|---|---|
{chr(10).join(memory_rows)}

![memory and throughput over time]({image})
"""


def run(
    console: Console,
    clients: int = 20,
    minutes: float = 10.0,
    mix: dict[str, int] | None = None,
    model: str = DEFAULT_MODEL,
    out: Path = SECTIONS,
) -> str:
    mix = mix or dict(DEFAULT_MIX)
    duration_s = minutes * 60
    home = Path(tempfile.mkdtemp(prefix="copilot-load-"))
    settings = LauncherSettings(
        home=home,
        base_port=free_base_port(),
        kafka_port=free_port(),
        issuer_port=free_port(),
        review_port=free_port(),
        model=model,
        log_format="json",
    )
    started_up = time.monotonic()
    stack, _ = up(settings, progress=lambda m: console.print(f"[dim]{m}[/dim]"))
    startup_s = time.monotonic() - started_up
    try:
        issuer = DevIssuer(
            stack.issuer,
            stack.audience,
            load_or_create_key(home / "issuer" / "key.pem"),
            load_users(Path(stack.users_file)),
        )
        lifetime_s = int(duration_s) + 3600
        console.print("[dim]ingesting the sample corpus[/dim]")
        corpus_files = ingest_corpus(stack, issuer.mint("ops", lifetime_s))
        users = [Client(i, stack, issuer, lifetime_s, seed=20261129 + i) for i in range(clients)]
        results = Results()
        stop_sampling = threading.Event()
        started = time.monotonic()
        stop_at = started + duration_s
        sampler = threading.Thread(
            target=sample_memory, args=(stack, started, stop_sampling, results), daemon=True
        )
        sampler.start()
        threads = [
            threading.Thread(target=c.run, args=(mix, started, stop_at, results), name=f"load-{c.index}")
            for c in users
        ]
        for t in threads:
            t.start()
        with _progress(console) as progress:
            task = progress.add_task("load", total=duration_s, calls=0, errors=0)
            while any(t.is_alive() for t in threads):
                with results.lock:
                    calls = len(results.calls)
                    errors = sum(c.code != "OK" for c in results.calls)
                progress.update(
                    task, completed=min(duration_s, time.monotonic() - started), calls=calls, errors=errors
                )
                time.sleep(1)
        for t in threads:
            t.join()
        stop_sampling.set()
        sampler.join()
    finally:
        down(home, progress=lambda _m: None)
        console.print(f"[dim]the stack's logs: {home / 'logs'}[/dim]")
    out.mkdir(parents=True, exist_ok=True)
    png = out / "load-memory.png"
    warmup_s, _ = memory_verdicts(results, duration_s)
    plot(results, duration_s, warmup_s, png)
    return report(results, clients, minutes, mix, model, startup_s, corpus_files, png)


def _progress(console: Console) -> Progress:
    return Progress(
        TextColumn("[bold]load[/bold]"),
        BarColumn(),
        TextColumn("{task.fields[calls]} calls, {task.fields[errors]} errors"),
        TimeRemainingColumn(),
        console=console,
        transient=True,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=COMMAND, description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=20, help="concurrent clients (default 20)")
    parser.add_argument("--minutes", type=float, default=10.0, help="duration of the load (default 10)")
    parser.add_argument(
        "--mix",
        type=parse_mix,
        default=dict(DEFAULT_MIX),
        help="weights of the calls, e.g. search=85,answer=10,ingest=5 (the default)",
    )
    parser.add_argument("--model", default=DEFAULT_MODEL, help=f"answer model (default {DEFAULT_MODEL})")
    parser.add_argument(
        "--out", type=Path, default=SECTIONS, help="where load.md and the PNG go (default docs/bench/)"
    )
    args = parser.parse_args(argv)
    if args.clients < 1 or args.minutes <= 0:
        parser.error("--clients must be at least 1 and --minutes positive")
    console = Console()
    markdown = run(console, args.clients, args.minutes, args.mix, args.model, args.out)
    (args.out / "load.md").write_text(markdown)
    console.print(markdown, markup=False, highlight=False, soft_wrap=True)
    return 0 if "Target met" in markdown else 1


if __name__ == "__main__":
    sys.exit(main())
