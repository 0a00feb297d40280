"""The review web page on a real HTTP server with real signed tokens: over plain HTTP (sign-in, forms,
escaping, refusals) and in headless Chromium (Debian's chromium driven by Playwright) as a reviewer would."""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from copilot.auth import TokenVerifier
from copilot.common.v1 import common_pb2
from copilot.devissuer import DevIssuer
from copilot.events.v1 import events_pb2
from copilot.settings import AuthSettings
from services.monitor.detectors import Finding, Severity, Span
from services.monitor.flagstore import FlagStore
from services.monitor.review import (
    EvaluationSample,
    ItemFilter,
    ReviewPolicy,
    ReviewQueue,
    State,
    Verdict,
)
from services.monitor.web.app import COOKIE, ReviewPage, WebServer

CHROMIUM = Path("/usr/bin/chromium")
XSS = '<script>window.__xss = 1</script><img src=x onerror="window.__xss = 2"> What is the "travel" budget?'
SCRIPT = "<script>window.__xss = 1</script>"
# Spans over the planted markup in the question and the amount in the passage, so highlighting must escape.
PII = Finding(
    "pii",
    Severity.HIGH,
    "answer contains an IBAN",
    ("GB** **** 54 32",),
    (Span("question", 0, len(SCRIPT)), Span("passage:c1", 8, 19), Span("answer", 6, 999)),
)


@pytest.fixture
def page_server(auth_settings: AuthSettings, tmp_path: Path) -> Iterator[tuple[str, ReviewQueue]]:
    store = FlagStore(tmp_path / "monitor.sqlite", ReviewPolicy(labels_required=1))
    queue = ReviewQueue(store)
    store.record(
        events_pb2.InteractionEvent(
            event_id="xss-1",
            user_id="u1",
            question=XSS,
            answer="It is 412,000 USD [1]. <b>bold?</b>",
            passages=[
                common_pb2.Passage(
                    chunk_id="c1",
                    title="Budget <memo>",
                    uri="/docs/budget.md",
                    text="Travel: 412,000 USD.",
                    suspicious=True,
                    suspicion=["<hidden_text>"],
                )
            ],
        ),
        [PII],
    )
    # Labelled evaluation samples, so the dashboard has figures to draw.
    ids = queue.submit([EvaluationSample(f"q{n}", "a", [], "", "run-1") for n in range(6)], labels_required=2)
    for item_id, (first, second) in zip(ids, ["gg", "gg", "bb", "gb", "gg", "bb"], strict=True):
        queue.label(item_id, "ann", Verdict.GOOD if first == "g" else Verdict.BAD, "", may_adjudicate=False)
        queue.label(item_id, "bob", Verdict.GOOD if second == "g" else Verdict.BAD, "", may_adjudicate=False)
    page = ReviewPage(
        queue, TokenVerifier(auth_settings), "copilot-reviewer", "copilot-reviewer", resamples=200
    )
    server = WebServer(page.app, "127.0.0.1", 0)
    server.start()
    yield server.url, queue
    server.stop()
    store.close()


def _item_id(queue: ReviewQueue) -> str:
    [item], _ = queue.list_items(ItemFilter(detector="pii"))
    return item.item_id


def test_sign_in_forms_and_escaping_over_http(
    page_server: tuple[str, ReviewQueue], issuer: DevIssuer
) -> None:
    url, queue = page_server
    item_id = _item_id(queue)
    # A busy machine: the first agreement page imports statsmodels and bootstraps, slower than 5 s there.
    with httpx.Client(base_url=url, follow_redirects=False, timeout=30) as client:
        assert client.get("/").headers["location"].startswith("/login")
        refused = client.post("/login", data={"token": issuer.mint("alice")})
        assert refused.status_code == 403 and "copilot-reviewer" in refused.text
        assert client.post("/login", data={"token": "not-a-jwt"}).status_code == 401
        signed_in = client.post("/login?next=/agreement", data={"token": issuer.mint("ops")})
        assert signed_in.status_code == 303 and signed_in.headers["location"] == "/agreement"
        cookie = signed_in.headers["set-cookie"]
        assert COOKIE in cookie and "HttpOnly" in cookie and "SameSite=strict" in cookie
        # An outside "next" must not turn sign-in into an open redirect.
        elsewhere = client.post("/login?next=//evil.example/", data={"token": issuer.mint("ops")})
        assert elsewhere.headers["location"] == "/"

        page = client.get(f"/items/{item_id}")
        assert page.status_code == 200
        assert "script-src" not in page.headers["content-security-policy"]
        assert "default-src 'none'" in page.headers["content-security-policy"]
        assert "<script>" not in page.text and "<img src=x" not in page.text
        assert "&lt;script&gt;window.__xss = 1&lt;/script&gt;" in page.text
        # The evidence spans are highlighted, escaped like the rest; a span past the end stops at it.
        question = '<div class="text" id="question"><mark>&lt;script&gt;window.__xss = 1&lt;/script&gt;'
        assert question + "</mark>" in page.text
        assert "Travel: <mark>412,000 USD</mark>." in page.text
        assert "It is <mark>412,000 USD [1]. &lt;b&gt;bold?&lt;/b&gt;</mark></div>" in page.text
        assert "marked suspicious at ingest: &lt;hidden_text&gt;" in page.text
        assert "Budget &lt;memo&gt;" in page.text
        form_token = re.search(r'name="form_token" value="([0-9a-f]+)"', page.text)
        assert form_token is not None

        forged = client.post(
            f"/items/{item_id}/label", data={"verdict": "true_positive", "form_token": "0" * 64}
        )
        assert forged.status_code == 403
        wrong_kind = client.post(
            f"/items/{item_id}/label", data={"verdict": "good", "form_token": form_token[1]}
        )
        assert wrong_kind.status_code == 400 and "true_positive" in wrong_kind.text
        labelled = client.post(
            f"/items/{item_id}/label",
            data={"verdict": "false_positive", "comment": "<i>docs sample</i>", "form_token": form_token[1]},
        )
        assert labelled.status_code == 303
        assert queue.get(item_id).final_verdict == Verdict.FALSE_POSITIVE
        assert "&lt;i&gt;docs sample&lt;/i&gt;" in client.get(f"/items/{item_id}").text
        assert client.get("/items/no-such-item").status_code == 404
        assert client.get("/?state=bogus").status_code == 400

        dashboard = client.get("/agreement")
        assert dashboard.status_code == 200 and dashboard.text.count("<svg") == 2
        assert "ann &amp; bob" in dashboard.text and "Gwet" in dashboard.text
        # A bearer header works as well as the cookie, for tools.
    with httpx.Client(base_url=url) as tool:
        assert tool.get("/", headers={"authorization": f"Bearer {issuer.mint('ops')}"}).status_code == 200


def test_filters_narrow_the_queue(page_server: tuple[str, ReviewQueue], issuer: DevIssuer) -> None:
    url, queue = page_server
    pii_item = _item_id(queue)
    evaluation = {i.item_id for i in queue.list_items(ItemFilter(detector="evaluation"))[0]}
    escalated = {i.item_id for i in queue.list_items(ItemFilter(state=State.ESCALATED))[0]}
    # The fixture: one open flag, six evaluation samples of which the one the reviewers split on escalated.
    assert len(evaluation) == 6 and len(escalated) == 1

    def listed(query: str) -> tuple[set[str], str]:
        with httpx.Client(base_url=url, timeout=30) as client:
            page = client.get(f"/{query}", headers={"authorization": f"Bearer {issuer.mint('ops')}"})
        assert page.status_code == 200, page.text
        count = re.search(r'<p class="muted" id="count">([^<]*)</p>', page.text)
        assert count is not None
        return set(re.findall(r'data-item-id="([^"]+)"', page.text)), count[1]

    assert listed("") == ({pii_item} | evaluation, "7 items")
    assert listed("?state=open") == ({pii_item}, "1 item")
    assert listed("?detector=evaluation") == (evaluation, "6 items")
    assert listed("?state=escalated&detector=evaluation") == (escalated, "1 item")
    assert listed("?state=resolved&detector=pii") == (set(), "0 items")


def _chromium() -> Path:
    """Debian's chromium; installed on first use when missing, as CI machines start without it."""
    if not CHROMIUM.exists() and shutil.which("apt-get"):
        subprocess.run(
            ["apt-get", "install", "-y", "-q", "chromium"],
            capture_output=True,
            timeout=900,
            check=False,
            env={"DEBIAN_FRONTEND": "noninteractive", "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"},
        )
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} missing and `apt-get install chromium` failed")
    return CHROMIUM


@pytest.mark.slow
def test_reviewer_labels_an_item_in_chromium(
    page_server: tuple[str, ReviewQueue], issuer: DevIssuer, tmp_path: Path
) -> None:
    from playwright.sync_api import sync_playwright

    url, queue = page_server
    item_id = _item_id(queue)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(_chromium()), args=["--no-sandbox"])
        try:
            page = browser.new_page()
            page.goto(url)
            assert "/login" in page.url
            page.fill("textarea[name=token]", issuer.mint("ops"))
            page.click("#sign-in")
            page.wait_for_selector("#items")
            assert page.inner_text("#count").startswith("7 items")

            page.click(f"tr[data-item-id='{item_id}'] a.open-item")
            page.wait_for_selector("#question")
            # The payload is shown as text and never ran.
            assert page.inner_text("#question") == XSS
            assert page.evaluate("typeof window.__xss") == "undefined"
            assert (
                page.query_selector("#question script") is None
                and page.query_selector("#question img") is None
            )
            assert page.inner_text("#state") == "open"
            assert "GB** **** 54 32" in page.inner_text("#evidence")
            # The evidence spans are marked, and the marked text is still only text.
            assert page.inner_text("#question mark") == SCRIPT
            assert page.locator("div.passage mark").inner_text() == "412,000 USD"

            page.fill("#label-form textarea[name=comment]", "a real IBAN")
            page.click("#verdict-true_positive")
            page.wait_for_selector("#final-verdict")
            assert page.inner_text("#state") == "resolved"
            assert page.inner_text("#final-verdict") == "true positive"
            assert "a real IBAN" in page.inner_text("#labels")
            assert page.evaluate("typeof window.__xss") == "undefined"

            page.goto(url + "agreement")
            assert page.locator("div.agreement svg").count() == 2
            page.screenshot(path=str(tmp_path / "agreement.png"), full_page=True)
        finally:
            browser.close()
    assert queue.get(item_id).final_verdict == Verdict.TRUE_POSITIVE
