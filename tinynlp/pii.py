"""PII found and redacted: e-mail addresses, phone numbers, payment cards (Luhn-checked), IBANs (checksum),
IP addresses, URLs, US social security numbers and any named regex a user adds, found by Microsoft
Presidio's pattern recognizers with its no-op NLP engine: no spaCy model, no network, and the same input
always gives the same bytes out (replacement by a fixed string per entity type, never a salted hash).

Text (classification rows) is redacted in place, each finding replaced by its entity's replacement.
Tokens (NER sentences) are detected on the detokenised sentence, the tokens joined by single spaces, so a
phone number split over three tokens is found, and again with the tokens around `. @ / : -` and the like
glued back together, so a URL or address a tokeniser split at its punctuation (`https : / / t . co / x`,
as WNUT-17 has them) is found too; every token a finding touches becomes the replacement, one token for
one token, so the list keeps its length and the tags stay aligned.

Presidio's recognizers are used as they are for IBANs, IP addresses and SSNs; with their network lookup
replaced for e-mail addresses (tldextract's bundled suffix list); with more card ranges; with URL patterns
that end at a label boundary; and with phone numbers kept when valid or phone-shaped (see _phone_kept).

Core logic only: no Prefect, no DVC, no params.yaml. The ingest stage maps `ingest.pii` onto PiiSettings.
"""
from __future__ import annotations

import bisect
import re
import sys
import threading
from collections import Counter
from dataclasses import dataclass, field
from functools import lru_cache
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import regex  # Presidio's regex engine: custom patterns are validated with the engine that runs them

if TYPE_CHECKING:
    from presidio_analyzer import AnalyzerEngine

ENTITIES: tuple[str, ...] = ("EMAIL_ADDRESS", "PHONE_NUMBER", "CREDIT_CARD", "IBAN_CODE", "IP_ADDRESS", "URL",
                             "US_SSN")
PHONE_REGIONS: tuple[str, ...] = ("US", "GB", "DE", "FR", "IL", "IN", "CA", "BR")  # Presidio's default set
MIN_SCORE = 0.3  # keeps every validated or "medium" pattern, drops Presidio's "very weak" bare-digit SSNs
CUSTOM_SCORE = 1.0  # a user's own rule wins an overlap against a built-in guess
_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*\Z")
_FLAGS = regex.DOTALL | regex.MULTILINE | regex.IGNORECASE  # Presidio's flags for its own patterns
_CUSTOM_FLAGS = regex.DOTALL | regex.MULTILINE  # custom patterns: case-sensitive; write (?i) to change that

# A built-in recognizer can only match where its trigger does (each trigger is a necessary part of every
# pattern the recognizer runs, see presidio_analyzer.predefined_recognizers), and digit triggers only where
# the text has a digit: text without any trigger skips Presidio, which is most of a corpus, and the
# cheap gates keep that check near a microsecond a sentence. Custom patterns always run.
_DIGIT = "0-9"  # gate: the text has a digit (\d: any script's digits, as python-phonenumbers reads them)
_TRIGGERS: dict[str, tuple[tuple[str, regex.Pattern], ...]] = {  # entity -> ((gate, trigger), ...): any one
    "EMAIL_ADDRESS": (("@", regex.compile(r"@")),),
    "URL": ((".", regex.compile(r"[a-z0-9]\.[a-z]", _FLAGS)),             # <host>.<tld>: every TLD starts with a letter
            (":", regex.compile(r"://"))),
    "IP_ADDRESS": ((_DIGIT, regex.compile(r"\d\.\d+\.\d+\.\d")),      # IPv4
                   (":", regex.compile(r"::|[0-9a-f]:[0-9a-f:]", _FLAGS))),  # IPv6
    "PHONE_NUMBER": ((_DIGIT, regex.compile(r"\d(?:\D{0,4}\d){7}")),),    # 8 digits, python-phonenumbers' gaps
    "CREDIT_CARD": ((_DIGIT, regex.compile(r"\d{4}[- ]?\d{3,4}[- ]?\d{3,4}[- ]?\d{3}")),),
    "IBAN_CODE": ((_DIGIT, regex.compile(r"[a-z]{2}\d{2}", _FLAGS)),),
    "US_SSN": ((_DIGIT, regex.compile(r"\d{3}[- .]\d{2}[- .]\d{4}|\d{5}-\d{4}|\d{3}-\d{6}|\d{9}")),),
}
_ANY_DIGIT = regex.compile(r"\d")


@dataclass(frozen=True)
class PiiSettings:
    """What to look for and what to put in its place.

    entities: built-in entity types to find (Presidio's names, a subset of ENTITIES).
    replacements: entity -> replacement text; default `<ENTITY>`. No whitespace: it becomes one token.
    custom: name -> regex (Presidio's `regex` engine, case-sensitive unless `(?i)`), always looked for;
        an invalid regex or a name that is not an identifier or shadows a built-in is refused here.
    min_score: Presidio confidence below which a match is dropped.
    phone_regions: regions whose national formats phone numbers are parsed in (`+` numbers: any region).
    phone_valid_only: only numbers python-phonenumbers holds valid (assigned ranges) in one of the regions,
        as Presidio's own PhoneRecognizer; by default also numbers that only have a phone number's shape
        (see _phone_kept): made-up, mistyped or newly assigned numbers are still someone's number.
    """

    entities: tuple[str, ...] = ENTITIES
    replacements: Mapping[str, str] = field(default_factory=dict)
    custom: Mapping[str, str] = field(default_factory=dict)
    min_score: float = MIN_SCORE
    phone_regions: tuple[str, ...] = PHONE_REGIONS
    phone_valid_only: bool = False

    def __post_init__(self) -> None:
        set_ = object.__setattr__  # frozen: normalise once, here
        set_(self, "entities", tuple(dict.fromkeys(self.entities)))
        set_(self, "phone_regions", tuple(self.phone_regions))
        set_(self, "custom", MappingProxyType(dict(self.custom)))
        set_(self, "replacements", MappingProxyType(dict(self.replacements)))
        unknown = [e for e in self.entities if e not in ENTITIES]
        if unknown:
            raise ValueError(f"pii: unknown entity type(s) {unknown}; built-in types are {list(ENTITIES)} "
                             "(add others as named regexes in `custom`)")
        for name, pattern in self.custom.items():
            _check_custom(name, pattern)
        active = self.active
        for entity, text in self.replacements.items():
            if entity not in active:
                raise ValueError(f"pii: replacement for {entity!r}, which is not looked for (entities: {list(active)})")
            if not isinstance(text, str) or not text or any(c.isspace() for c in text):
                raise ValueError(f"pii: replacement for {entity} must be non-empty text without whitespace "
                                 f"(it replaces one token), got {text!r}")
        if not 0.0 <= self.min_score <= 1.0:
            raise ValueError(f"pii: min_score must be in [0, 1], got {self.min_score}")
        if "PHONE_NUMBER" in self.entities:
            import phonenumbers

            unknown = [r for r in self.phone_regions if r not in phonenumbers.SUPPORTED_REGIONS]
            if unknown or not self.phone_regions:
                raise ValueError(f"pii: phone_regions must be ISO 3166 region codes python-phonenumbers knows "
                                 f"(US, GB, DE...), got {list(self.phone_regions)}")

    def __hash__(self) -> int:  # the mappings are read-only views: hash their items
        return hash(self._key())

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PiiSettings) and self._key() == other._key()

    def _key(self) -> tuple:
        return (self.entities, tuple(self.replacements.items()), tuple(self.custom.items()), self.min_score,
                self.phone_regions, self.phone_valid_only)

    @property
    def active(self) -> tuple[str, ...]:
        """Every entity type looked for: the built-in ones, then the custom ones."""
        return self.entities + tuple(self.custom)

    def replacement(self, entity: str) -> str:
        return self.replacements.get(entity, f"<{entity}>")


def _check_custom(name: str, pattern: str) -> None:
    if not isinstance(name, str) or not _NAME.match(name):
        raise ValueError(f"pii: custom entity name {name!r} must be an identifier (a letter, then letters, "
                         "digits or _)")
    if name in ENTITIES:
        raise ValueError(f"pii: custom entity {name} has the name of a built-in type")
    if not isinstance(pattern, str) or not pattern:
        raise ValueError(f"pii: custom entity {name}: the regex must be a non-empty string, got {pattern!r}")
    try:
        compiled = regex.compile(pattern, _CUSTOM_FLAGS)
    except regex.error as exc:
        raise ValueError(f"pii: custom entity {name}: invalid regex {pattern!r}: {exc}") from None
    if compiled.fullmatch(""):
        raise ValueError(f"pii: custom entity {name}: the regex {pattern!r} matches the empty string")


DEFAULT = PiiSettings()


@dataclass(frozen=True)
class Finding:
    """One entity in a text: its type and its [start, end) character span. Never its value."""

    type: str
    start: int
    end: int


_EXTENSION = re.compile(r"\s*(?:x|ext\.?|extension|#)\s*\d+\s*\Z", re.IGNORECASE)
_SEPARATOR = re.compile(r"\s*([-./])\s*")
_BRACKET = re.compile(r"\s*([()])\s*")
_ZIP4 = re.compile(r"\d{5}-\d{4}\Z")  # a US ZIP+4 code (a Brazilian number without its area code looks the same)
_DATE = re.compile(r"(?:(?:19|20)\d\d([-/.])\d\d?\1\d\d?|\d\d?([-/.])\d\d?\2(?:19|20)\d\d)(?!\d)")


def _phone_kept(raw: str, valid: bool) -> bool:
    """Whether a number python-phonenumbers matched is kept as a phone number. Valid numbers (an assigned
    range of a region, Presidio's own test) need 8 digits or more (short German numbers look like codes);
    a number that is only possible (the right length, an unassigned area code: a made-up or mistyped
    number is still someone's) needs 10 to 15 digits, or 8 after an international prefix (+ or 00).
    Neither may end in a one-digit group (ISBNs do), hold a date, be a ZIP+4 code or mix dots with other
    separators (times, prices, version numbers)."""
    body = _EXTENSION.sub("", raw)
    body = _BRACKET.sub(r"\1", _SEPARATOR.sub(r"\1", body)).strip()  # "( 916 . 960" as "(916.960": tokenised text
    groups = re.findall(r"\d+", body)
    digits = sum(map(len, groups))
    if not groups or len(groups[-1]) < 2 or _DATE.search(body) or _ZIP4.match(body):
        return False
    if "." in body and any(c in body for c in " -/"):
        return False
    if valid:
        return digits >= 8
    return 10 <= digits <= 15 or (body.lstrip("(").startswith(("+", "00")) and 8 <= digits <= 15)


@lru_cache(maxsize=1)
def _tld_extract() -> Any:
    """tldextract with its bundled public-suffix snapshot only: the module-level `tldextract.extract` that
    Presidio's EmailRecognizer calls downloads the list from the internet on first use (and caches it
    under ~/.cache, so results would depend on when and where that cache was made)."""
    import tldextract

    return tldextract.TLDExtract(cache_dir=None, suffix_list_urls=(), fallback_to_snapshot=True)


# Presidio's card pattern (first digit 1, 3, 4, 5 or 6, 13 to 17 digits) misses Mastercard's 2221-2720 range
# (issued since 2017), JCB's 2131 and 19-digit cards (Visa, Discover, JCB, UnionPay). Luhn-checked as its own.
_MORE_CARDS = {
    "Mastercard 2-series, JCB 2131 (weak)":
        r"\b(2(?:131|22[1-9]|2[3-9]\d|[3-6]\d\d|7[01]\d|720))[- ]?(\d{3,4})[- ]?(\d{3,4})[- ]?(\d{3,5})\b",
    "19 digits (weak)": r"\b([1-6]\d{3})[- ]?(\d{4})[- ]?(\d{4})[- ]?(\d{4})[- ]?(\d{3})\b",
}
_EXTRA_TLDS = ("biz", "aero", "coop", "museum", "jobs", "travel", "cat", "post")  # gTLDs Presidio's list lacks
# a URL runs to white space, a quote or a bracket; a . , ; : ! or ? at its end belongs to the prose
_URL_END = r"[^\s<>\"'()]*[^\s<>\"'().,;:!?]"


def _url_patterns(pattern: Any, presidio_url_regex: str) -> list[Any]:
    """Presidio's URL patterns stop at the first TLD that matches a prefix (`jones.biz/a` is found as
    `jones.bi`, Burundi, and the path leaks) and know no .biz. These keep its TLD list (plus _EXTRA_TLDS)
    but end a domain at a label boundary and take the whole path, query and fragment."""
    tlds = sorted(set(re.findall(r"\(\?:([a-z]+)\)", presidio_url_regex)) | set(_EXTRA_TLDS),
                  key=lambda t: (-len(t), t))
    label = r"[a-z0-9](?:[a-z0-9\-]{0,61}[a-z0-9])?"
    domain = rf"\b(?:{label}\.)+(?:{'|'.join(tlds)})(?![a-z0-9\-])(?::\d{{1,5}})?(?:[/?#]{_URL_END}|/)?"
    return [pattern("URL with a scheme", rf"\b(?:https?|ftp)://{_URL_END}", 0.6),
            pattern("Domain name", domain, 0.5)]


_WARM_UP = ("a@example.com www.example.com 192.168.0.1 ::1 +1 212 555 0143 4111111111111111 "
            "GB82WEST12345698765432 536-22-1234")


_UNUSED_FRAMEWORKS = ("transformers", "torch")


def _import_presidio() -> None:
    """Import presidio_analyzer without the ML frameworks it only probes for: its package __init__ imports
    its transformers NLP engine, and through spaCy's thinc torch, both inside `try: import ... except
    ImportError`, which costs ~3.6 s of a ~4.5 s import in this environment (~20% of ingesting SST-2) for
    engines the no-op NLP engine never uses. For the length of the import, a framework not yet imported
    reads as absent (None in sys.modules); afterwards it imports as usual for everyone else. Presidio's
    transformers engine and thinc's torch ops are then unavailable in this process: nothing here uses them."""
    if "presidio_analyzer" in sys.modules:
        return
    # only while this is the process's one thread (a stage run by `dvc repro`): another thread that
    # imported torch meanwhile (a Prefect task runner's stage) would get the ImportError
    hidden = [name for name in _UNUSED_FRAMEWORKS if name not in sys.modules] if threading.active_count() == 1 else []
    for name in hidden:
        sys.modules[name] = None  # type: ignore[assignment]  # import raises ImportError
    try:
        import presidio_analyzer  # noqa: F401
        import presidio_analyzer.nlp_engine  # noqa: F401
    finally:
        for name in hidden:
            if sys.modules.get(name, False) is None:
                del sys.modules[name]


@lru_cache(maxsize=8)
def analyzer(settings: PiiSettings = DEFAULT) -> AnalyzerEngine:
    """Presidio's AnalyzerEngine with only pattern recognizers (and python-phonenumbers for phones) and the
    no-op NLP engine: nothing to download, nothing loaded but regexes. Built once per settings."""
    _import_presidio()
    import phonenumbers
    from presidio_analyzer import (AnalyzerEngine, EntityRecognizer, Pattern, PatternRecognizer,
                                   RecognizerRegistry, RecognizerResult)
    from presidio_analyzer.nlp_engine import NoOpNlpEngine
    from presidio_analyzer.predefined_recognizers import (CreditCardRecognizer, EmailRecognizer, IbanRecognizer,
                                                          IpRecognizer, PhoneRecognizer, UrlRecognizer,
                                                          UsSsnRecognizer)

    class OfflineEmailRecognizer(EmailRecognizer):
        def validate_result(self, pattern_text: str) -> bool:
            return _tld_extract()(pattern_text).fqdn != ""

    class ShapedPhoneRecognizer(PhoneRecognizer):
        """Presidio's PhoneRecognizer (VALID numbers), plus POSSIBLE ones that are phone-shaped."""

        def analyze(self, text: str, entities: list[str], nlp_artifacts: Any = None) -> list[RecognizerResult]:
            results = []
            metadata = {RecognizerResult.RECOGNIZER_NAME_KEY: self.name,
                        RecognizerResult.RECOGNIZER_IDENTIFIER_KEY: self.id}
            passes = [phonenumbers.Leniency.VALID] + [phonenumbers.Leniency.POSSIBLE] * (not settings.phone_valid_only)
            for region in self.supported_regions:
                for leniency in passes:
                    for match in phonenumbers.PhoneNumberMatcher(text, region, leniency=leniency):
                        if _phone_kept(match.raw_string, valid=leniency == phonenumbers.Leniency.VALID):
                            results.append(RecognizerResult("PHONE_NUMBER", match.start, match.end, self.SCORE,
                                                            recognition_metadata=dict(metadata)))
            return EntityRecognizer.remove_duplicates(results)

    builders = {
        "EMAIL_ADDRESS": OfflineEmailRecognizer,
        "PHONE_NUMBER": lambda: ShapedPhoneRecognizer(supported_regions=settings.phone_regions),
        "CREDIT_CARD": lambda: CreditCardRecognizer(patterns=[*CreditCardRecognizer.PATTERNS, *(
            Pattern(name, card, 0.3) for name, card in _MORE_CARDS.items())]),
        "IBAN_CODE": IbanRecognizer,
        "IP_ADDRESS": IpRecognizer,
        "URL": lambda: UrlRecognizer(patterns=_url_patterns(Pattern, UrlRecognizer.BASE_URL_REGEX)),
        "US_SSN": UsSsnRecognizer,
    }
    recognizers = [builders[entity]() for entity in settings.entities]
    recognizers += [PatternRecognizer(supported_entity=name, name=f"custom_{name}",
                                      patterns=[Pattern(name=name, regex=pattern, score=CUSTOM_SCORE)],
                                      global_regex_flags=_CUSTOM_FLAGS)
                    for name, pattern in settings.custom.items()]
    nlp_engine = NoOpNlpEngine(models=[{"lang_code": "en", "model_name": "no_op"}])
    registry = RecognizerRegistry(recognizers=recognizers, supported_languages=["en"])
    engine = AnalyzerEngine(registry=registry, nlp_engine=nlp_engine, supported_languages=["en"],
                            default_score_threshold=settings.min_score)
    engine.analyze(_WARM_UP, language="en")  # Presidio compiles its patterns on first use: do it here, once
    return engine


def find(text: str, settings: PiiSettings = DEFAULT) -> list[Finding]:
    """The entities in `text`, sorted by position, none overlapping: where two matches overlap, the more
    confident one wins (validated card, IBAN and e-mail matches and custom rules score 1.0, IP 0.6, URL
    0.5-0.6, SSN 0.5, phone 0.4), then the longer, then the earlier."""
    return [f for f, _, _ in _find_scored(text, settings)]


def _find_scored(text: str, settings: PiiSettings) -> list[tuple[Finding, float, range]]:
    if not text:
        return []
    entities = _triggered(text, settings.entities) + list(settings.custom)
    if not entities:
        return []
    results = analyzer(settings).analyze(text=text, language="en", entities=entities,
                                         score_threshold=settings.min_score)
    return _resolve([(Finding(r.entity_type, r.start, r.end), r.score, range(r.start, r.end)) for r in results])


def _resolve(found: list[tuple[Finding, float, range]]) -> list[tuple[Finding, float, range]]:
    """No two findings on one character (or token, the range being tokens): the higher score wins, then
    the longer span, then the earlier one; the kept ones in order of position."""
    kept: list[tuple[Finding, float, range]] = []
    taken: set[int] = set()
    for item in sorted(found, key=lambda x: (-x[1], -len(x[2]), x[2].start, x[0].type)):
        if taken.isdisjoint(item[2]):
            kept.append(item)
            taken.update(item[2])
    return sorted(kept, key=lambda x: (x[2].start, x[2].stop))


def _triggered(text: str, entities: Sequence[str]) -> list[str]:
    """The entities whose trigger `text` has: the only ones worth running a recognizer for."""
    digit: bool | None = None
    out = []
    for entity in entities:
        for gate, trigger in _TRIGGERS[entity]:
            if gate is _DIGIT:
                if digit is None:
                    digit = _ANY_DIGIT.search(text) is not None
                if not digit:
                    continue
            elif gate not in text:
                continue
            if trigger.search(text):
                out.append(entity)
                break
    return out


def counts(findings: Sequence[Finding]) -> dict[str, int]:
    """Findings per entity type, sorted by type."""
    return dict(sorted(Counter(f.type for f in findings).items()))


def redact_text(text: str, settings: PiiSettings = DEFAULT) -> tuple[str, dict[str, int]]:
    """`text` with each finding replaced by its entity's replacement, and the findings per type."""
    findings = find(text, settings)
    if not findings:
        return text, {}
    parts, at = [], 0
    for f in findings:
        parts += [text[at:f.start], settings.replacement(f.type)]
        at = f.end
    parts.append(text[at:])
    return "".join(parts), counts(findings)


_GLUE = frozenset(".@/:-_?=&#%~+")
_SCHEMED = re.compile(r"(?:https?|ftp)://|www\d{0,3}\.", re.IGNORECASE)


def detokenise(tokens: Sequence[str], glue: bool = False) -> tuple[str, list[int]]:
    """The tokens joined by single spaces, and the character offset where each token starts. With
    `glue`, no space on either side of a token that is one of `. @ / : - _ ? = & # % ~ +` (but a `.`
    keeps its space before a word that starts a sentence, `Then`): the view in which a URL,
    e-mail address or number that a tokeniser split at its punctuation (`https : / / t . co / x`,
    `jo @ example . com`, `212 - 555 - 0143`) is whole again."""
    parts, starts, at = [], [], 0
    for i, token in enumerate(tokens):
        if i:
            glued = glue and (token in _GLUE or tokens[i - 1] in _GLUE) and not (
                tokens[i - 1] == "." and token[:1].isupper() and token[1:2].islower())
            gap = "" if glued else " "
            parts.append(gap)
            at += len(gap)
        starts.append(at)
        parts.append(token)
        at += len(token)
    return "".join(parts), starts


def _token_bounds(starts: list[int], tokens: Sequence[str], f: Finding) -> tuple[int, int]:
    """[first, stop) of the tokens a finding overlaps, even in part."""
    first = max(bisect.bisect_right(starts, f.start) - 1, 0)
    if starts[first] + len(tokens[first]) <= f.start:  # the finding starts in the gap after a token
        first += 1
    return first, bisect.bisect_left(starts, f.end)  # up to the last token starting before the finding ends


def find_tokens(tokens: Sequence[str], settings: PiiSettings = DEFAULT) -> list[tuple[Finding, range]]:
    """The entities in a tokenised sentence, each with the tokens it overlaps, in order, no two on one
    token. Detected on the detokenised sentence (the findings' offsets are in that text), and on the glued
    view (see detokenise) for what a tokeniser split at its punctuation; a URL found only in the glued view
    counts only if it starts with `http://`, `https://`, `ftp://` or `www.` (`great . me` is not a URL).
    Where findings share a token, the higher score wins, then the one on more tokens."""
    text, starts = detokenise(tokens)
    found = [(f, score, range(*_token_bounds(starts, tokens, f))) for f, score, _ in _find_scored(text, settings)]
    if any(token in _GLUE for token in tokens):
        glued, glued_starts = detokenise(tokens, glue=True)
        for f, score, _ in _find_scored(glued, settings):
            if f.type == "URL" and not _SCHEMED.match(glued, f.start):
                continue
            first, stop = _token_bounds(glued_starts, tokens, f)
            found.append((Finding(f.type, starts[first], starts[stop - 1] + len(tokens[stop - 1])), score,
                          range(first, stop)))
    return [(f, span) for f, _, span in _resolve(found)]


def redact_tokens(tokens: Sequence[str], settings: PiiSettings = DEFAULT) -> tuple[list[str], dict[str, int]]:
    """`tokens` with every token a finding overlaps, even in part, replaced by that entity's replacement
    (see find_tokens), and the findings per type. One token out per token in: the tags stay aligned (a
    redacted token inside a named entity keeps its B-/I- tag; the caller keeps the tag list as it is)."""
    found = find_tokens(tokens, settings)
    out = list(tokens)
    done: set[int] = set()
    for f, span in found:
        for i in span:
            if i not in done:
                out[i] = settings.replacement(f.type)
                done.add(i)
    return out, counts([f for f, _ in found])


def mask_text(text: str, settings: PiiSettings = DEFAULT) -> str:
    """`text` with each finding masked (see mask): what a report shows a person when the data itself
    keeps its personal data (`report` mode)."""
    for f in reversed(find(text, settings)):
        text = text[:f.start] + mask(text[f.start:f.end]) + text[f.end:]
    return text


def mask_in_place(text: str, settings: PiiSettings = DEFAULT) -> str:
    """`text` with each finding masked at its own length (see mask_same_length): character offsets
    into the original still point at the same words, so a service can return entities' offsets with
    the masked text."""
    return mask_spans(text, find(text, settings))


def mask_spans(text: str, findings: Sequence[Finding]) -> str:
    for f in sorted(findings, key=lambda f: f.start, reverse=True):
        text = text[:f.start] + mask_same_length(text[f.start:f.end]) + text[f.end:]
    return text


def mask_same_length(value: str) -> str:
    """As `mask`, one star per hidden character: `j*******@e******.com`, `4***********1111`."""
    local, at, domain = value.rpartition("@")
    if at and local and "." in domain.strip("."):
        host, dot, tld = domain.rpartition(".")
        return local[0] + "*" * (len(local) - 1) + "@" + host[:1] + "*" * max(len(host) - 1, 0) + dot + tld
    return mask(value)


def mask(value: str) -> str:
    """`value` for an error message, never whole: an e-mail address as `j***@e***.com`, anything else as
    its first character, stars, and its last four characters when it has 12 or more (a card:
    `4***********1111`), its last one from 6, none below."""
    local, at, domain = value.rpartition("@")
    if at and local and "." in domain.strip("."):
        host, _, tld = domain.strip(".").rpartition(".")
        return f"{local[0]}***@{host[0]}***.{tld}"
    n = len(value)
    if n <= 1:
        return "*" * n
    tail = 4 if n >= 12 else 1 if n >= 6 else 0
    return value[0] + "*" * (n - 1 - tail) + value[n - tail:]
