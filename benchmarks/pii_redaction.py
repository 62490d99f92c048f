"""PII redaction quality and cost (tinynlp.pii): recall and precision per entity type on a seeded
synthetic set, and the time redaction adds to ingesting SST-2. Needs ../shared/data and Faker (the
`test` extra).

Quality. Faker (seeded) writes sentences around one value each, a few hundred per type, in varied formats
(phone numbers of seven locales and hand-made international ones; Visa, Mastercard 51-55 and 2-series,
Amex, Discover, JCB and Diners cards, plain, spaced and dashed; IBANs of nine countries, compact and in
groups of four; IPv4, CIDR, IPv6 full and compressed; URLs with and without scheme, paths and queries;
e-mail addresses; SSNs with dashes, spaces and dots), and distractor sentences without PII that are full of
numbers (dates, times, prices, years, versions, zip codes, ISBNs, scores). Each sentence is scored three
ways: as text (redact_text); as CoNLL tokens, split at white space with the punctuation at a token's edges
its own token (redact_tokens); and as CoNLL tokens split at every punctuation character inside the value
too (`https : / / t . co`, `212 - 555 - 0143`), the stress case. A value is found when findings of its
type cover every character of it (text) or every one of its tokens (CoNLL); `redacted` counts findings of
any type. Precision: the share of findings that overlap a value of their own type.

Cost. SST-2 train (60,614 sentences): the project's reader (tinynlp.readers.read_table) against
redact_text over its texts, best of --repeats; the one-time cost (importing Presidio, building the
analyzer) in a fresh interpreter, as the stage's process pays it; the whole ingest stage function
(tasks.ingest.run_ingest in a scratch workspace with examples/params/sst2.yaml, not the DVC stage)
against redacting the texts of all three splits; and WNUT-17's reader (read_conll) against
redact_tokens over its sentences.

    nice -n 19 python benchmarks/pii_redaction.py [--per-type 300] [--distractors 1000] [--seed 0]
        [--repeats 3] [--no-ingest]
"""
from __future__ import annotations

import argparse
import ipaddress
import random
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.common import ROOT, params_for, write_json  # noqa: E402
from tinynlp import pii  # noqa: E402
from tinynlp.readers import read_conll, read_table  # noqa: E402
from tinynlp.reporting import markdown_table  # noqa: E402

DATA = ROOT.parent / "shared" / "data"
SST2 = DATA / "classification/sst2"
WNUT = ROOT / "data/wnut17"
STRUCTURED = ("EMAIL_ADDRESS", "CREDIT_CARD", "IBAN_CODE", "IP_ADDRESS", "URL", "US_SSN")
GOALS = {**{t: 0.99 for t in STRUCTURED}, "PHONE_NUMBER": 0.95}
VARIANTS = ("text", "conll", "conll_split")
_EDGE = "()[]{}\"'<>,;!?."  # punctuation a CoNLL tokeniser splits off a word's edges


@dataclass(frozen=True)
class Example:
    """One synthetic sentence: the text and the PII value's [start, end) in it (none for a distractor)."""

    text: str
    type: str | None = None
    start: int = 0
    end: int = 0
    fmt: str = ""


# --- values, in varied formats ---------------------------------------------------------------------

def _group(digits: str, sizes: tuple[int, ...], sep: str) -> str:
    out, at = [], 0
    for size in sizes:
        out.append(digits[at:at + size])
        at += size
    return sep.join([piece for piece in out if piece] + ([digits[at:]] if at < len(digits) else []))


def _phone(fake_for, rng: random.Random) -> tuple[str, str]:
    locale = rng.choice(["en_US", "en_US", "en_GB", "de_DE", "fr_FR", "en_IN", "en_CA", "pt_BR", "intl"])
    if locale != "intl":
        return fake_for(locale).phone_number(), locale
    d = lambda n: "".join(rng.choice("0123456789") for _ in range(n))  # noqa: E731
    return rng.choice([f"+1 ({rng.randint(201, 989)}) {d(3)}-{d(4)}", f"+44 20 {d(4)} {d(4)}",
                       f"+44 7{d(3)} {d(6)}", f"+49 30 {d(8)}", f"+33 6 {d(2)} {d(2)} {d(2)} {d(2)}",
                       f"0044 161 {d(3)} {d(4)}", f"+91 98{d(3)} {d(5)}",
                       f"+1-{rng.randint(201, 989)}-{d(3)}-{d(4)}"]), "intl"


def _card(fake, rng: random.Random) -> tuple[str, str]:
    kind = rng.choice(["visa16", "visa13", "visa19", "mastercard", "amex", "discover", "jcb15", "jcb16", "diners"])
    number = fake.credit_card_number(card_type=kind)
    layout = rng.choice(["plain", "spaced", "dashed"])
    if layout != "plain":
        sizes = {"amex": (4, 6, 5), "jcb15": (4, 6, 5), "diners": (4, 6, 4), "visa13": (4, 3, 3, 3)}.get(
            kind, (4, 4, 4, 4))
        number = _group(number, sizes, " " if layout == "spaced" else "-")
    return number, f"{kind}/{layout}"


def _iban(fake_for, rng: random.Random) -> tuple[str, str]:
    locale = rng.choice(["de_DE", "fr_FR", "en_GB", "nl_NL", "es_ES", "it_IT", "pl_PL", "fr_CH", "de_AT"])
    iban = fake_for(locale).iban()
    layout = rng.choice(["compact", "grouped"])
    return (iban if layout == "compact" else _group(iban, (4,) * 8, " ")), f"{locale}/{layout}"


def _ip(fake, rng: random.Random) -> tuple[str, str]:
    kind = rng.choice(["ipv4", "ipv4_private", "ipv4_cidr", "ipv6", "ipv6_compressed"])
    if kind == "ipv4":
        return fake.ipv4(), kind
    if kind == "ipv4_private":
        return fake.ipv4_private(), kind
    if kind == "ipv4_cidr":
        return fake.ipv4(network=True), kind
    full = fake.ipv6()
    if kind == "ipv6":
        return full, kind
    groups = full.split(":")
    at = rng.randint(1, 5)
    groups[at:at + 2] = ["0", "0"]
    return str(ipaddress.IPv6Address(":".join(groups))), kind  # with its "::"


def _url(fake, rng: random.Random) -> tuple[str, str]:
    kind = rng.choice(["url", "uri", "query", "domain", "www"])
    if kind == "url":
        return fake.url(), kind
    if kind == "uri":
        return fake.uri(), kind
    if kind == "query":
        return f"{fake.url()}{fake.uri_path()}?{fake.word()}={rng.randint(1, 999)}&ref={fake.word()}", kind
    if kind == "domain":
        return fake.domain_name(levels=rng.choice([1, 2])), kind
    return f"www.{fake.domain_name()}/{fake.uri_path()}", kind


def _email(fake, rng: random.Random) -> tuple[str, str]:
    kind = rng.choice(["email", "free", "company", "dotted", "tagged", "upper"])
    if kind == "email":
        return fake.email(), kind
    if kind == "free":
        return fake.free_email(), kind
    if kind == "company":
        return fake.company_email(), kind
    user = f"{fake.first_name()}.{fake.last_name()}".lower()
    if kind == "dotted":
        return f"{user}@{fake.domain_name(levels=2)}", kind
    if kind == "tagged":
        return f"{user}+{fake.word()}@{fake.free_email_domain()}", kind
    return fake.email().upper(), kind


def _ssn(fake, rng: random.Random) -> tuple[str, str]:
    ssn = fake.ssn()  # ddd-dd-dddd, valid area, group and serial
    sep = rng.choice(["-", "-", " ", "."])
    return ssn.replace("-", sep), {"-": "dashed", " ": "spaced", ".": "dotted"}[sep]


LEADS = {"PHONE_NUMBER": ["call", "phone:", "reach me on", "text", "tel.", "my number is", ""],
         "CREDIT_CARD": ["card", "paid with", "card number:", "charged to", ""],
         "IBAN_CODE": ["IBAN", "transfer to", "account:", "pay into", ""],
         "IP_ADDRESS": ["from", "host", "IP:", "connected to", ""],
         "URL": ["see", "visit", "link:", "more at", ""],
         "EMAIL_ADDRESS": ["mail", "write to", "contact:", "cc", ""],
         "US_SSN": ["SSN", "social security number", "ssn:", "number", ""]}
VALUES = {"PHONE_NUMBER": lambda f, r: _phone(f, r), "CREDIT_CARD": lambda f, r: _card(f("en_US"), r),
          "IBAN_CODE": lambda f, r: _iban(f, r), "IP_ADDRESS": lambda f, r: _ip(f("en_US"), r),
          "URL": lambda f, r: _url(f("en_US"), r), "EMAIL_ADDRESS": lambda f, r: _email(f("en_US"), r),
          "US_SSN": lambda f, r: _ssn(f("en_US"), r)}


def _distractor(fake, rng: random.Random) -> str:
    y, m, d = rng.randint(1950, 2030), rng.randint(1, 12), rng.randint(1, 28)
    numbers = [f"{y}-{m:02d}-{d:02d}", f"{d:02d}/{m:02d}/{y}", f"{m}/{d}/{y}", f"{d}.{m}.{y}", str(y),
               f"{rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}",
               f"{rng.randint(0, 23)}:{rng.randint(0, 59):02d}:{rng.randint(0, 59):02d}",
               f"${rng.randint(1, 99999):,}.{rng.randint(0, 99):02d}",
               f"{rng.randint(1, 999)}.{rng.randint(0, 99):02d} EUR",
               f"{rng.randint(1, 100)}%", f"v{rng.randint(0, 9)}.{rng.randint(0, 30)}.{rng.randint(0, 200)}",
               f"{rng.randint(10000, 99999)}", f"{rng.randint(10000, 99999)}-{rng.randint(1000, 9999)}",
               f"978-{rng.randint(0, 9)}-{rng.randint(10, 99)}-{rng.randint(100000, 999999)}-{rng.randint(0, 9)}",
               f"{rng.randint(0, 5)}-{rng.randint(0, 5)}", f"{rng.randint(1, 999):,} people",
               f"{rng.randint(1, 40)}.{rng.randint(0, 9)} °C", f"{rng.randint(2, 12)} x {rng.randint(10, 500)} g",
               f"room {rng.randint(100, 999)}", f"{rng.randint(1, 9)}.{rng.randint(1, 9)} million",
               f"{rng.randint(1000, 99999):,}", f"chapter {rng.randint(1, 30)}, page {rng.randint(1, 900)}"]
    parts = fake.sentence(nb_words=rng.randint(6, 14))[:-1].split()
    for at in sorted(rng.sample(range(len(parts) + 1), rng.randint(1, 3)), reverse=True):
        parts.insert(at, rng.choice(numbers))  # numbers with words between them, as prose has them
    return " ".join(parts) + rng.choice([".", "!", "?", ""])


def synthetic_set(per_type: int, distractors: int, seed: int) -> list[Example]:
    from faker import Faker

    fakers: dict[str, Faker] = {}

    def fake_for(locale: str) -> Faker:
        if locale not in fakers:
            fakers[locale] = Faker(locale)
            fakers[locale].seed_instance(seed + len(fakers))
        return fakers[locale]

    rng = random.Random(seed)
    examples = []
    for entity in pii.ENTITIES:
        for _ in range(per_type):
            value, fmt = VALUES[entity](fake_for, rng)
            before = fake_for("en_US").sentence(nb_words=rng.randint(2, 8))[:-1]
            lead = rng.choice(LEADS[entity])
            after = fake_for("en_US").sentence(nb_words=rng.randint(0, 6))[:-1] if rng.random() < 0.6 else ""
            wrap = rng.choice(["plain", "plain", "parens", "comma", "period"])
            head = " ".join(x for x in (before, lead) if x) + " " + ("(" if wrap == "parens" else "")
            tail = {"plain": " ", "parens": ") ", "comma": ", ", "period": ". "}[wrap] + after
            text = (head + value + tail).rstrip() + ("" if wrap == "period" and not after else ".")
            examples.append(Example(text, entity, len(head), len(head) + len(value), fmt))
    examples += [Example(_distractor(fake_for("en_US"), rng)) for _ in range(distractors)]
    return examples


# --- tokenising, as a CoNLL file would hold the sentence -------------------------------------------

def conll_tokens(ex: Example, split_value: bool) -> tuple[list[str], set[int]]:
    """The sentence as tokens (white space, then edge punctuation split off) and the indices of the
    tokens that hold part of the value. split_value: the value also split at every punctuation
    character in it."""
    tokens, gold = [], set()
    for m in re.finditer(r"\S+", ex.text):
        word, at = m.group(), m.start()
        pieces = _split_edges(word) if not (split_value and ex.type and at < ex.end and at + len(word) > ex.start) \
            else [p for p in re.split(r"([^\w])", word) if p]
        for piece in pieces:
            start = ex.text.index(piece, at)
            at = start + len(piece)
            if ex.type and start < ex.end and at > ex.start:
                gold.add(len(tokens))
            tokens.append(piece)
    return tokens, gold


def _split_edges(word: str) -> list[str]:
    lead, trail = [], []
    while len(word) > 1 and word[0] in _EDGE:
        lead.append(word[0])
        word = word[1:]
    while len(word) > 1 and word[-1] in _EDGE:
        trail.insert(0, word[-1])
        word = word[:-1]
    return lead + [word] + trail


# --- scoring ---------------------------------------------------------------------------------------

def score(examples: list[Example]) -> tuple[dict, dict]:
    """Per variant and type: found (right type), redacted (any type), gold, findings, true findings;
    and the misses per type and format (text variant)."""
    tally = {v: {t: dict.fromkeys(("gold", "found", "redacted", "findings", "true"), 0) for t in pii.ENTITIES}
             for v in VARIANTS}
    misses: dict[str, dict[str, int]] = {}
    for ex in examples:
        # text
        findings = pii.find(ex.text)
        spans = [(f.type, set(range(f.start, f.end))) for f in findings]
        gold = set(range(ex.start, ex.end)) - {i for i in range(ex.start, ex.end) if ex.text[i].isspace()}
        found = _tally(tally["text"], ex.type, gold, spans)
        if ex.type and not found:
            misses.setdefault(ex.type, {}).setdefault(ex.fmt, 0)
            misses[ex.type][ex.fmt] += 1
        for variant, split in (("conll", False), ("conll_split", True)):
            tokens, gold_tokens = conll_tokens(ex, split)
            spans = [(f.type, set(span)) for f, span in pii.find_tokens(tokens)]
            _tally(tally[variant], ex.type, gold_tokens, spans)
    return tally, misses


def _tally(t: dict, gold_type: str | None, gold: set[int], spans: list[tuple[str, set[int]]]) -> bool:
    for kind, span in spans:
        t[kind]["findings"] += 1
        t[kind]["true"] += bool(kind == gold_type and span & gold)
    if gold_type is None:
        return True
    t[gold_type]["gold"] += 1
    found = gold <= set().union(*(s for k, s in spans if k == gold_type))
    t[gold_type]["found"] += found
    t[gold_type]["redacted"] += gold <= set().union(*(s for _, s in spans))
    return found


def quality_rows(tally: dict) -> list[dict]:
    rows = []
    for entity in pii.ENTITIES:
        row = {"type": entity, "goal (recall)": GOALS[entity]}
        for v in VARIANTS:
            c = tally[v][entity]
            row[f"{v} recall"] = round(c["found"] / c["gold"], 4) if c["gold"] else None
            row[f"{v} redacted"] = round(c["redacted"] / c["gold"], 4) if c["gold"] else None
            row[f"{v} precision"] = round(c["true"] / c["findings"], 4) if c["findings"] else None
        rows.append(row)
    return rows


# --- cost ------------------------------------------------------------------------------------------

def best_of(repeats: int, fn) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def one_time_cost() -> dict:
    """In a fresh interpreter, as the ingest stage would pay it once: importing tinynlp.pii, then the
    first analyzer (importing Presidio, spaCy without a model, python-phonenumbers; building it)."""
    code = ("import sys, time; t0 = time.perf_counter(); from tinynlp import pii; t1 = time.perf_counter(); "
            "pii.analyzer(); t2 = time.perf_counter(); "
            "print(t1 - t0, t2 - t1, 'torch' in sys.modules, 'transformers' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    module_s, analyzer_s, torch, transformers = out.stdout.split()[-4:]
    return {"import_tinynlp_pii_s": round(float(module_s), 2), "first_analyzer_s": round(float(analyzer_s), 2),
            "torch_imported": torch == "True", "transformers_imported": transformers == "True"}


def sst2_cost(repeats: int) -> dict:
    train = SST2 / "train.tsv"
    read = lambda: read_table(train, "tsv", [], "sentence", "label")  # noqa: E731
    texts = [t for t in read()["text"] if t]
    pii.analyzer()
    read_s = best_of(repeats, read)
    redact_s = best_of(repeats, lambda: [pii.redact_text(t) for t in texts])
    found: dict[str, int] = {}
    for t in texts:
        for k, v in pii.redact_text(t)[1].items():
            found[k] = found.get(k, 0) + v
    return {"file": str(train.relative_to(ROOT.parent)), "sentences": len(texts), "read_s": round(read_s, 3),
            "redact_s": round(redact_s, 3), "redact_us_per_sentence": round(redact_s / len(texts) * 1e6, 2),
            "redact_over_read": round(redact_s / read_s, 2), "findings": found}


def sst2_ingest(repeats: int) -> dict:
    """The ingest stage function on SST-2 in a scratch workspace (GE validation, Parquet), against
    redacting every text of its three splits."""
    from tasks.ingest import run_ingest

    texts = [t for split in ("train", "dev", "test")
             for t in read_table(SST2 / f"{split}.tsv", "tsv", [], "sentence", "label")["text"] if t]
    with tempfile.TemporaryDirectory(prefix="pii-bench-") as workdir:
        params = params_for(Path(workdir), base=ROOT / "examples/params/sst2.yaml")
        ingest_s = best_of(1, lambda: run_ingest(params))
    redact_s = best_of(repeats, lambda: [pii.redact_text(t) for t in texts])
    return {"sentences": len(texts), "ingest_s": round(ingest_s, 2), "redact_s": round(redact_s, 3),
            "redact_over_ingest": round(redact_s / ingest_s, 4)}


def wnut_cost(repeats: int) -> dict:
    paths = [WNUT / f"{s}.conll" for s in ("train", "dev", "test")]
    read = lambda: [s for p in paths for s in read_conll(p, "bio")]  # noqa: E731
    sentences = read()
    read_s = best_of(repeats, read)
    redact_s = best_of(repeats, lambda: [pii.redact_tokens(s.tokens) for s in sentences])
    found: dict[str, int] = {}
    for s in sentences:
        for k, v in pii.redact_tokens(s.tokens)[1].items():
            found[k] = found.get(k, 0) + v
    return {"sentences": len(sentences), "read_s": round(read_s, 3), "redact_s": round(redact_s, 3),
            "redact_us_per_sentence": round(redact_s / len(sentences) * 1e6, 1),
            "redact_over_read": round(redact_s / read_s, 2), "findings": found}


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--per-type", type=int, default=300, help="synthetic sentences per entity type")
    parser.add_argument("--distractors", type=int, default=1000, help="synthetic sentences without PII")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=3, help="timings: best of this many runs")
    parser.add_argument("--no-ingest", action="store_true", help="skip timing the whole ingest stage function")
    parser.add_argument("--out", default=str(ROOT / "reports/benchmarks/pii_redaction.json"))
    return parser.parse_args()


def main() -> None:
    args = _arguments()
    examples = synthetic_set(args.per_type, args.distractors, args.seed)
    tally, misses = score(examples)
    rows = quality_rows(tally)
    cost = {"one_time": one_time_cost(), "sst2_train": sst2_cost(args.repeats), "wnut17": wnut_cost(args.repeats)}
    if not args.no_ingest:
        cost["sst2_ingest"] = ingest = sst2_ingest(args.repeats)
        ingest["redact_and_first_analyzer_over_ingest"] = round(
            (ingest["redact_s"] + cost["one_time"]["first_analyzer_s"]) / ingest["ingest_s"], 4)
    goals_met = {r["type"]: all(r[f"{v} recall"] >= r["goal (recall)"] for v in ("text", "conll")) for r in rows}
    result = {"settings": {"entities": list(pii.DEFAULT.entities), "min_score": pii.DEFAULT.min_score,
                           "phone_regions": list(pii.DEFAULT.phone_regions)},
              "seed": args.seed, "per_type": args.per_type, "distractors": args.distractors,
              "goals_met_text_and_conll": goals_met, "table": rows, "counts": tally,
              "text_misses_by_format": misses, "cost": cost, "out": args.out}
    write_json(Path(args.out), result)
    columns = ["type", "goal (recall)"] + [f"{v} {m}" for v in VARIANTS for m in ("recall", "precision")]
    print(markdown_table(rows, columns))
    print(f"\nmisses (text) by format: {misses}")
    print(f"goals met (text and conll): {goals_met}")
    for key, value in cost.items():
        print(f"{key}: {value}")
    print(f"\n{args.out}")


if __name__ == "__main__":
    main()
