"""Great Expectations suites for raw splits, one set per task. Every expectation carries the
name of the rule it enforces; a failure becomes a DataValidationError naming file, lines, rule
and examples. Results are also written as Data Docs HTML and a JSON summary."""
from __future__ import annotations

import logging
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping, Sequence

import pandas as pd

from tinynlp.errors import DataValidationError, Violation
from tinynlp.readers import Sentence
from tinynlp.tagging import OUTSIDE, valid_bio_pairs

log = logging.getLogger(__name__)
EXAMPLES_SHOWN = 5


@dataclass(frozen=True)
class SplitFrames:
    """What one split looks like to the suites: frames named by what their rows are."""

    source: str
    frames: Mapping[str, pd.DataFrame]


@dataclass
class Rule:
    name: str
    frame: str
    expectation: object  # a great_expectations Expectation
    describe: str
    key: str = ""        # the params key that relaxes it, named when it fails
    example_of: Callable[[int], str] | None = None  # line -> what to quote, where the frame holds no text


@dataclass
class ValidationOutcome:
    violations: list[Violation] = field(default_factory=list)
    summary: dict = field(default_factory=dict)


def ner_frames(source: str, sentences: Sequence[Sentence], labels: Sequence[str]) -> SplitFrames:
    """Token rows carry the previous tag for the transition rule; tags outside the label set are
    blanked there, so a bad tag is reported once (by label_in_set), not twice."""
    known = set(labels)
    rows = []
    for index, sentence in enumerate(sentences):
        previous = OUTSIDE
        for offset, (token, tag) in enumerate(zip(sentence.tokens, sentence.tags)):
            rows.append((sentence.line + offset, index, token, tag, previous if previous in known else None,
                         tag if tag in known else None))
            previous = tag
    tokens = pd.DataFrame(rows, columns=["line", "sentence", "token", "tag", "prev_known", "tag_known"])
    sentences_frame = pd.DataFrame({"line": [s.line for s in sentences],
                                    "n_tokens": [len(s.tokens) for s in sentences],
                                    "text": [" ".join(s.tokens) for s in sentences]})
    return SplitFrames(source, {"tokens": tokens, "sentences": sentences_frame})


def classification_frames(source: str, frame: pd.DataFrame) -> SplitFrames:
    return SplitFrames(source, {"rows": frame})


def ner_rules(labels: Sequence[str], min_tokens: int, max_tokens: int, max_token_chars: int) -> list[Rule]:
    import great_expectations.expectations as gxe

    rules = [
        Rule("non_empty_split", "sentences", gxe.ExpectTableRowCountToBeBetween(min_value=1),
             "the split has at least one sentence"),
        Rule("token_not_empty", "tokens", gxe.ExpectColumnValueLengthsToBeBetween(column="token", min_value=1),
             "every token has at least one character"),
        Rule("token_length", "tokens", gxe.ExpectColumnValueLengthsToBeBetween(column="token", max_value=max_token_chars),
             f"no token is longer than {max_token_chars} characters", "ingest.max_token_chars"),
        Rule("token_no_whitespace", "tokens", gxe.ExpectColumnValuesToNotMatchRegex(column="token", regex=r"\s"),
             "tokens contain no whitespace"),
        Rule("label_in_set", "tokens", gxe.ExpectColumnValuesToBeInSet(column="tag", value_set=list(labels)),
             f"tags are in the label set {list(labels)}", "ingest.entity_types"),
        Rule("bio_transition", "tokens", gxe.ExpectColumnPairValuesToBeInSet(
            column_A="prev_known", column_B="tag_known", value_pairs_set=valid_bio_pairs(labels),
            ignore_row_if="either_value_is_missing"),
             "I-X only continues a B-X or I-X chunk"),
        Rule("sentence_length", "sentences", gxe.ExpectColumnValuesToBeBetween(
            column="n_tokens", min_value=min_tokens, max_value=max_tokens),
             f"sentences have {min_tokens}..{max_tokens} tokens", "ingest.min_length / ingest.max_length"),
    ]
    return rules


def classification_rules(labels: Sequence[str], min_chars: int, max_chars: int) -> list[Rule]:
    import great_expectations.expectations as gxe

    rules = [
        Rule("non_empty_split", "rows", gxe.ExpectTableRowCountToBeBetween(min_value=1), "the split has rows"),
        Rule("text_not_null", "rows", gxe.ExpectColumnValuesToNotBeNull(column="text"), "every row has a text"),
        Rule("text_not_blank", "rows", gxe.ExpectColumnValuesToMatchRegex(column="text", regex=r"\S"),
             "texts are not blank"),
        Rule("text_length", "rows", gxe.ExpectColumnValueLengthsToBeBetween(
            column="text", min_value=min_chars, max_value=max_chars), f"texts have {min_chars}..{max_chars} characters",
             "ingest.min_length / ingest.max_length"),
        Rule("label_not_null", "rows", gxe.ExpectColumnValuesToNotBeNull(column="label"), "every row has a label"),
        Rule("label_in_set", "rows", gxe.ExpectColumnValuesToBeInSet(column="label", value_set=list(labels)),
             f"labels are in the label set {list(labels)}", "ingest.labels"),
        Rule("at_least_two_classes", "rows", gxe.ExpectColumnUniqueValueCountToBeBetween(column="label", min_value=2),
             "the split has at least two classes"),
    ]
    return rules


def with_train_overlap(frames: SplitFrames, rules: list[Rule], texts: Sequence[str], lines: Sequence[int],
                       train_texts: Sequence[str], max_overlap: float, min_words: int,
                       shown: Callable[[str], str] = str) -> tuple[SplitFrames, list[Rule]]:
    """Leakage from train, measured on what leaks: each distinct text once, of `min_words` words or
    more, and not a template train itself repeats (newswire datelines and headers such as
    `LONDON 1996-08-30` recur in every split of every such corpus). Those repeats are counted apart
    (rule `train_repeats`, never failing). The frame holds lines and flags only, so the Data Docs
    never render a train text; a failure quotes the first ones through `shown` (PII masked)."""
    import great_expectations.expectations as gxe

    in_train = Counter(train_texts)
    seen: set[str] = set()
    rows, repeats, first_line = [], [], {}
    for text, line in zip(texts, lines):
        if text in seen:
            continue
        seen.add(text)
        first_line[line] = text
        if len(text.split()) < min_words or in_train[text] > 1:
            repeats.append((line, "short" if len(text.split()) < min_words else "repeated in train", text in in_train))
        else:
            rows.append((line, text in in_train))
    leak = pd.DataFrame(rows, columns=["line", "in_train"]).astype({"line": int, "in_train": bool})
    kept = pd.DataFrame([(line, kind) for line, kind, found in repeats if found], columns=["line", "kind"])
    overlap = Rule("train_overlap", "overlap", gxe.ExpectColumnValuesToBeInSet(
        column="in_train", value_set=[False], mostly=1.0 - max_overlap),
        f"at most {max_overlap:.0%} of distinct texts of {min_words}+ words also occur in train, templates "
        "repeated within train aside", "ingest.max_overlap (ingest.overlap_min_words sets what counts)",
        lambda line: shown(first_line[line]))
    counted = Rule("train_repeats", "repeats", gxe.ExpectColumnValuesToBeNull(column="kind", mostly=0.0),
                   f"texts also in train that are shorter than {min_words} words or repeated within train "
                   "(counted, not refused)")
    return (SplitFrames(frames.source, {**frames.frames, "overlap": leak, "repeats": kept}),
            [*rules, overlap, counted])


def with_pii(frames: SplitFrames, rules: list[Rule], findings: Sequence[tuple[int, str, str]],
             refuse: bool) -> tuple[SplitFrames, list[Rule]]:
    """The personal data `ingest.pii` found, as a frame of its own (one row per finding) and a rule:
    `no_pii` refuses any finding, naming its line, type and masked value; otherwise `pii_counted`
    passes and records the count (types only, no values) in the summary and the Data Docs."""
    import great_expectations.expectations as gxe

    rows = pd.DataFrame({"line": [line for line, _, _ in findings],
                         "finding": [f"{kind} {masked}" if refuse else kind for _, kind, masked in findings]},
                        columns=["line", "finding"])
    if refuse:
        rule = Rule("no_pii", "pii", gxe.ExpectColumnValuesToBeNull(column="finding"),
                    "no personal data (ingest.pii.mode: fail; `redact` replaces it, `report` only counts it)")
    else:
        rule = Rule("pii_counted", "pii", gxe.ExpectColumnValuesToBeNull(column="finding", mostly=0.0),
                    "personal data is counted, not refused (ingest.pii.mode: report)")
    return SplitFrames(frames.source, {**frames.frames, "pii": rows}), [*rules, rule]


def run_suites(splits: Mapping[str, tuple[SplitFrames, list[Rule]]], docs_dir: str | os.PathLike) -> ValidationOutcome:
    """Validate every split with its rules in one ephemeral GX context; build Data Docs."""
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    # that module sets INFO on its logger when imported: every run would announce its temp dir
    logging.getLogger("great_expectations.data_context.types.base").setLevel(logging.WARNING)
    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    context.add_data_docs_site(site_name="pipeline", site_config={
        "class_name": "SiteBuilder", "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
        "store_backend": {"class_name": "TupleFilesystemStoreBackend", "base_directory": str(Path(docs_dir).resolve())}})
    source = context.data_sources.add_pandas("splits")
    outcome = ValidationOutcome()
    for split, (split_frames, rules) in splits.items():
        outcome.summary[split] = {"source": split_frames.source, "rules": {}}
        for frame_name, frame in split_frames.frames.items():
            frame_rules = [r for r in rules if r.frame == frame_name]
            if not frame_rules:
                continue
            result = _validate_frame(context, source, f"{split}_{frame_name}", frame, frame_rules)
            by_rule = {r.expectation_config.meta["rule"]: r for r in result.results}
            for rule in frame_rules:
                _record(outcome, split, split_frames.source, rule, by_rule[rule.name])
    context.build_data_docs()
    return outcome


def _validate_frame(context, source, name: str, frame: pd.DataFrame, rules: list[Rule]):
    import great_expectations as gx

    batch = source.add_dataframe_asset(name).add_batch_definition_whole_dataframe("whole")
    suite = context.suites.add(gx.ExpectationSuite(name=name))
    for rule in rules:
        rule.expectation.meta = {"rule": rule.name, "describe": rule.describe}
        suite.add_expectation(rule.expectation)
    definition = context.validation_definitions.add(gx.ValidationDefinition(name=name, data=batch, suite=suite))
    result_format = {"result_format": "COMPLETE", "unexpected_index_column_names": ["line"],
                     "partial_unexpected_count": EXAMPLES_SHOWN}
    return definition.run(batch_parameters={"dataframe": frame}, result_format=result_format)


def _record(outcome: ValidationOutcome, split: str, source: str, rule: Rule, result) -> None:
    details = result.result or {}
    entry = {"success": bool(result.success), "rule": rule.describe}
    for key in ("observed_value", "unexpected_count", "unexpected_percent"):
        if key in details:
            entry[key] = _plain(details[key])
    outcome.summary[split]["rules"][rule.name] = entry
    if result.success:
        return
    index_rows = details.get("unexpected_index_list") or []
    lines = sorted({int(row["line"]) for row in index_rows if isinstance(row, dict) and "line" in row})
    # a null rule's unexpected values are all None: no example says more than its line
    examples = [_plain(v) for v in (details.get("partial_unexpected_list") or []) if v is not None][:EXAMPLES_SHOWN]
    if rule.example_of is not None:
        examples = [rule.example_of(line) for line in lines[:EXAMPLES_SHOWN]]
    if "unexpected_count" in details:
        detail = f"{details['unexpected_count']} row(s) break it ({rule.describe})"
    else:
        detail = f"{rule.describe}; observed {_plain(details.get('observed_value'))}"
    if rule.key:
        detail += f"; to allow it, change {rule.key}"
    if result.exception_info and result.exception_info.get("raised_exception"):
        detail += f"; GX error: {result.exception_info.get('exception_message')}"
    outcome.violations.append(Violation(source, rule.name, detail, tuple(lines), tuple(examples)))


def _plain(value):
    """JSON-friendly scalars (numpy types and tuples come back from GX)."""
    if hasattr(value, "item"):
        return value.item()
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def raise_for(outcome: ValidationOutcome) -> None:
    if outcome.violations:
        raise DataValidationError(outcome.violations)
