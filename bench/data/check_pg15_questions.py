#!/usr/bin/env python3
"""Verify bench/data/pg15_questions.jsonl against the PostgreSQL 15 HTML manual.

Stdlib only.  Usage:

    python3 bench/data/check_pg15_questions.py [QUESTIONS_JSONL] [--html-dir DIR]

The HTML directory defaults to $PG15_HTML_DIR, else
<repo>/.cache/corpora/pg15/usr/share/doc/postgresql-doc-15/html.

Checks, for every entry:
  * fields: "id" (unique, qNNN), "question", "relevant" (1-3 file names),
    "evidence" (5-15 words); an optional "category" must be one of CATEGORIES;
  * every relevant page exists and is not an index / table-of-contents page;
  * the evidence phrase occurs (case-insensitive, whitespace-normalised) in the
    visible text of the FIRST relevant page, outside the navigation header /
    footer and table-of-contents blocks.  The text is extracted twice -- text
    nodes joined with "" (like BeautifulSoup's get_text()) and with " " -- and
    the phrase must be found in both, so the check does not depend on the
    extractor used downstream;
  * the question does not contain the <title> of any relevant page verbatim
    (case-insensitive, on word boundaries; checked with and without the
    "20.4." / "Chapter 9." / "F.10." section-number prefix).
And for the whole set: exactly EXPECTED_COUNT questions, no duplicate
questions, at least MIN_DISTINCT_PAGES distinct relevant pages.

Exits 1 and lists the failures if anything is wrong.
"""

import argparse
import json
import os
import re
import sys
from html.parser import HTMLParser
from pathlib import Path

EXPECTED_COUNT = 120
MIN_DISTINCT_PAGES = 100
MIN_EVIDENCE_WORDS = 5
MAX_EVIDENCE_WORDS = 15
MAX_RELEVANT = 3
CATEGORIES = {"sql", "config", "admin", "types_functions", "client_other"}

# Index / table-of-contents pages that must never be listed as relevant.
FORBIDDEN_PAGES = {
    "bookindex.html", "index.html", "reference.html", "sql-commands.html",
    "reference-client.html", "reference-server.html", "appendixes.html",
    "admin.html", "internals.html", "server-programming.html",
    "client-interfaces.html", "tutorial.html", "sql.html", "runtime-config.html",
    "functions.html", "datatype.html", "ecpg-sql-commands.html",
}
FORBIDDEN_PATTERNS = [re.compile(r"^part-.*\.html$")]
# A relevant page must have at least this much text outside nav/toc blocks.
MIN_CONTENT_CHARS = 300

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_HTML_DIR = REPO_ROOT / ".cache/corpora/pg15/usr/share/doc/postgresql-doc-15/html"
DEFAULT_QUESTIONS = Path(__file__).resolve().parent / "pg15_questions.jsonl"

SKIP_DIV_CLASSES = {"navheader", "navfooter", "toc"}
VOID_TAGS = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link",
             "meta", "param", "source", "track", "wbr"}


class _PageParser(HTMLParser):
    """Collects the <title> and the visible text nodes outside nav/toc blocks."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.title = ""
        self.parts = []
        self._in_title = False
        self._skip_depth = 0      # >0 while inside script/style
        self._stack = []          # open tags: (tag, starts_skipped_block)
        self._block_depth = 0     # >0 while inside navheader/navfooter/toc

    def handle_starttag(self, tag, attrs):
        if tag in VOID_TAGS:
            return
        classes = set((dict(attrs).get("class") or "").split())
        starts_block = tag == "div" and bool(classes & SKIP_DIV_CLASSES)
        self._stack.append((tag, starts_block))
        if starts_block:
            self._block_depth += 1
        if tag in ("script", "style"):
            self._skip_depth += 1
        if tag == "title":
            self._in_title = True

    def handle_startendtag(self, tag, attrs):
        pass

    def handle_endtag(self, tag):
        if tag in VOID_TAGS:
            return
        if tag == "title":
            self._in_title = False
        if tag in ("script", "style"):
            self._skip_depth = max(0, self._skip_depth - 1)
        # pop up to and including the matching open tag (tolerates bad nesting)
        for i in range(len(self._stack) - 1, -1, -1):
            if self._stack[i][0] == tag:
                for _, starts_block in self._stack[i:]:
                    if starts_block:
                        self._block_depth -= 1
                del self._stack[i:]
                break

    def handle_data(self, data):
        if self._in_title:
            self.title += data
            return
        if self._skip_depth or self._block_depth:
            return
        self.parts.append(data)


def normalise(text):
    return re.sub(r"\s+", " ", text).strip().lower()


class Page:
    def __init__(self, path):
        parser = _PageParser()
        parser.feed(path.read_text(encoding="utf-8", errors="replace"))
        parser.close()
        self.title = normalise(parser.title)
        self.text_joined = normalise("".join(parser.parts))
        self.text_spaced = normalise(" ".join(parser.parts))

    def contains(self, phrase):
        p = normalise(phrase)
        return p in self.text_joined and p in self.text_spaced


_TITLE_PREFIX = re.compile(
    r"^(?:(?:chapter|appendix|part)\s+)?[a-z0-9]+(?:\.[a-z0-9]+)*\.\s+", re.I)


def title_variants(title):
    variants = {title}
    stripped = _TITLE_PREFIX.sub("", title)
    if stripped:
        variants.add(stripped)
    return {v for v in variants if v}


def contains_phrase(haystack, phrase):
    """Case-insensitive, whitespace-normalised, word-boundary containment."""
    h = normalise(haystack)
    p = normalise(phrase)
    left = r"(?<!\w)" if re.match(r"\w", p) else ""
    right = r"(?!\w)" if re.search(r"\w$", p) else ""
    return re.search(left + re.escape(p) + right, h) is not None


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("questions", nargs="?", default=str(DEFAULT_QUESTIONS))
    ap.add_argument("--html-dir",
                    default=os.environ.get("PG15_HTML_DIR", str(DEFAULT_HTML_DIR)))
    args = ap.parse_args(argv)

    html_dir = Path(args.html_dir)
    if not html_dir.is_dir():
        print(f"HTML directory not found: {html_dir}", file=sys.stderr)
        return 1

    failures = []
    pages = {}

    def page(name):
        if name not in pages:
            pages[name] = Page(html_dir / name)
        return pages[name]

    entries = []
    with open(args.questions, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                entries.append((lineno, json.loads(line)))
            except json.JSONDecodeError as exc:
                failures.append(f"line {lineno}: invalid JSON: {exc}")

    seen_ids, seen_questions, distinct_pages = set(), set(), set()
    for lineno, e in entries:
        qid = e.get("id", f"<line {lineno}>")
        where = f"{qid} (line {lineno})"

        def fail(msg, where=where):
            failures.append(f"{where}: {msg}")

        if not isinstance(e, dict):
            fail("entry is not a JSON object")
            continue
        missing = {"id", "question", "relevant", "evidence"} - set(e)
        if missing:
            fail(f"missing fields {sorted(missing)}")
            continue
        if not re.fullmatch(r"q\d{3}", str(e["id"])):
            fail("id must look like q001")
        if e["id"] in seen_ids:
            fail("duplicate id")
        seen_ids.add(e["id"])
        if "category" in e and e["category"] not in CATEGORIES:
            fail(f"unknown category {e['category']!r}")

        question = e["question"]
        if not isinstance(question, str) or len(question.split()) < 4:
            fail("question must be a sentence")
            continue
        if normalise(question) in seen_questions:
            fail("duplicate question")
        seen_questions.add(normalise(question))

        relevant = e["relevant"]
        if (not isinstance(relevant, list) or not 1 <= len(relevant) <= MAX_RELEVANT
                or not all(isinstance(r, str) for r in relevant)):
            fail(f"relevant must be a list of 1-{MAX_RELEVANT} file names")
            continue
        if len(set(relevant)) != len(relevant):
            fail("relevant lists a page twice")
        ok_pages = True
        for name in relevant:
            if "/" in name or not name.endswith(".html"):
                fail(f"{name!r} is not a bare .html file name")
                ok_pages = False
            elif not (html_dir / name).is_file():
                fail(f"relevant page {name} does not exist")
                ok_pages = False
            elif name in FORBIDDEN_PAGES or any(p.match(name) for p in FORBIDDEN_PATTERNS):
                fail(f"relevant page {name} is an index/toc page")
                ok_pages = False
            elif len(page(name).text_spaced) < MIN_CONTENT_CHARS:
                fail(f"relevant page {name} has almost no content outside its table of contents")
                ok_pages = False
        if not ok_pages:
            continue
        distinct_pages.update(relevant)

        evidence = e["evidence"]
        n_words = len(str(evidence).split())
        if not MIN_EVIDENCE_WORDS <= n_words <= MAX_EVIDENCE_WORDS:
            fail(f"evidence has {n_words} words (want {MIN_EVIDENCE_WORDS}-{MAX_EVIDENCE_WORDS})")
        first = page(relevant[0])
        if not first.contains(evidence):
            fail(f"evidence {evidence!r} not found in {relevant[0]}")

        for name in relevant:
            for t in title_variants(page(name).title):
                if contains_phrase(question, t):
                    fail(f"question contains the title of {name}: {t!r}")

    if len(entries) != EXPECTED_COUNT:
        failures.append(f"expected {EXPECTED_COUNT} questions, found {len(entries)}")
    if len(distinct_pages) < MIN_DISTINCT_PAGES:
        failures.append(f"only {len(distinct_pages)} distinct relevant pages "
                        f"(want >= {MIN_DISTINCT_PAGES})")

    if failures:
        print(f"FAILED: {len(failures)} problem(s) in {args.questions}")
        for f in failures:
            print("  - " + f)
        return 1
    cats = {}
    for _, e in entries:
        cats[e.get("category", "-")] = cats.get(e.get("category", "-"), 0) + 1
    firsts = {e["relevant"][0] for _, e in entries}
    print(f"OK: {len(entries)} questions, {len(distinct_pages)} distinct relevant pages "
          f"({len(firsts)} distinct first pages); categories: "
          + ", ".join(f"{k}={v}" for k, v in sorted(cats.items())))
    return 0


if __name__ == "__main__":
    sys.exit(main())
