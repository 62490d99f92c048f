"""PII detection and redaction (tinynlp.pii): every built-in type in several formats, Luhn, custom regexes,
deterministic bytes, one token out per token in, masks that never show a value, and no network."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

from conftest import ROOT
from tinynlp import pii

FOUND = {
    "EMAIL_ADDRESS": ["john.doe@example.com", "J.Smith+news@mail.example.co.uk", "anna_92@uni-heidelberg.de",
                      "ROBERT08@EXAMPLE.NET"],
    "PHONE_NUMBER": ["(212) 555-0143", "212-555-0143", "212.555.0143", "+1 212 555 0143", "+44 20 7946 0958",
                     "020 7946 0958", "+49 30 901820", "+33 6 12 34 56 78", "001-459-329-2244x696", "3497576561",
                     "+44(0)115 4960914"],
    "CREDIT_CARD": ["4111 1111 1111 1111", "4111-1111-1111-1111", "5500005555555559", "378282246310005",
                    "3782 822463 10005", "6011111111111117", "2221000000000009", "4222222222222"],
    "IBAN_CODE": ["GB82WEST12345698765432", "GB82 WEST 1234 5698 7654 32", "DE89370400440532013000",
                  "DE89 3704 0044 0532 0130 00", "FR1420041010050500013M02606"],
    "IP_ADDRESS": ["192.168.0.1", "8.8.8.8", "10.0.0.0/8", "2001:db8::1", "fe80:0:0:0:200:f8ff:fe21:67cf"],
    "URL": ["https://www.example.org/a/b?c=1&d=2", "http://example.com", "www.example.com/path",
            "example.co.uk", "https://jones.biz/tag/x"],
    "US_SSN": ["536-22-1234", "536 22 1234", "536.22.1234"],
}
NOT_PII = ["in 1999 and 2005", "on 2023-01-15 at 10:30", "it costs $1,299.99", "zip 12345-6789", "zip 16964-4400",
           "version v3.14.159", "ISBN 978-3-16-148410-0", "score 3-1 after 90 minutes", "14 / 10 / 2019",
           "a plain sentence , with e.g. abbreviations and U.S. dots ."]


@pytest.mark.parametrize("entity, value", [(e, v) for e, values in FOUND.items() for v in values])
def test_each_type_is_found_and_replaced_whole(entity, value):
    text = f"Please use {value} today."
    redacted, counts = pii.redact_text(text)
    assert redacted == f"Please use <{entity}> today.", (value, pii.find(text))
    assert counts == {entity: 1}


@pytest.mark.parametrize("text", NOT_PII)
def test_numbers_and_dots_that_are_not_pii_are_left_alone(text):
    assert pii.find(text) == []


def test_a_card_number_failing_the_luhn_check_is_no_card():
    for bad in ("4111 1111 1111 1112", "4111111111111112", "5500-0055-5555-5558"):
        assert "CREDIT_CARD" not in {f.type for f in pii.find(f"card {bad} ok")}, bad
    assert [f.type for f in pii.find("card 4111 1111 1111 1111 ok")] == ["CREDIT_CARD"]


def test_findings_are_positions_not_values_and_never_overlap():
    text = "write to jo@example.com (not www.example.com) from 10.0.0.1"
    findings = pii.find(text)
    assert [(f.type, text[f.start:f.end]) for f in findings] == [
        ("EMAIL_ADDRESS", "jo@example.com"), ("URL", "www.example.com"), ("IP_ADDRESS", "10.0.0.1")]
    assert all(a.end <= b.start for a, b in zip(findings, findings[1:]))


def test_redaction_is_deterministic():
    text = "Mail jo@example.com or call +44 20 7946 0958; card 4111111111111111, IBAN GB82WEST12345698765432."
    outputs = {pii.redact_text(text)[0].encode() for _ in range(3)}
    assert outputs == {b"Mail <EMAIL_ADDRESS> or call <PHONE_NUMBER>; card <CREDIT_CARD>, IBAN <IBAN_CODE>."}


def test_tokens_keep_their_number_and_a_split_phone_is_redacted_in_every_token():
    tokens = ["Call", "Ann", "Lee", "on", "212", "555", "0143", "or", "mail", "ann@example.com", "."]
    tags = ["O", "B-person", "I-person", "O", "O", "O", "O", "O", "O", "O", "O"]
    out, counts = pii.redact_tokens(tokens)
    assert len(out) == len(tokens) == len(tags)
    assert out == ["Call", "Ann", "Lee", "on", "<PHONE_NUMBER>", "<PHONE_NUMBER>", "<PHONE_NUMBER>", "or", "mail",
                   "<EMAIL_ADDRESS>", "."]
    assert counts == {"EMAIL_ADDRESS": 1, "PHONE_NUMBER": 1}


def test_a_token_partly_covered_is_replaced_whole_and_tokens_inside_entities_stay_one_token():
    tokens = ["site:www.example.com", "by", "Ann", "(", "212", ")", "555-0143"]
    out, counts = pii.redact_tokens(tokens)
    assert out == ["<URL>", "by", "Ann"] + ["<PHONE_NUMBER>"] * 4  # the number starts at its bracket
    assert counts == {"PHONE_NUMBER": 1, "URL": 1}
    assert pii.redact_tokens([]) == ([], {})


def test_values_a_tokeniser_split_at_punctuation_are_found_but_sentence_dots_do_not_glue():
    tokens = "see https : / / t . co / AbC1 or jo . doe @ example . com , 536 - 22 - 1234".split()
    out, counts = pii.redact_tokens(tokens)
    assert len(out) == len(tokens)
    assert counts == {"EMAIL_ADDRESS": 1, "URL": 1, "US_SSN": 1}
    assert [t for t in out if not t.startswith("<")] == ["see", "or", ","]
    assert pii.redact_tokens("what a great show . me too".split())[1] == {}


def test_settings_pick_entities_replacements_and_custom_regexes():
    settings = pii.PiiSettings(entities=("EMAIL_ADDRESS",), replacements={"EMAIL_ADDRESS": "[email]"},
                               custom={"EMPLOYEE_ID": r"\bEMP-\d{6}\b"})
    text = "EMP-123456 wrote jo@example.com from 212-555-0143; emp-123456 is not an id."
    assert pii.redact_text(text, settings) == (
        "<EMPLOYEE_ID> wrote [email] from 212-555-0143; emp-123456 is not an id.",
        {"EMAIL_ADDRESS": 1, "EMPLOYEE_ID": 1})
    assert settings.active == ("EMAIL_ADDRESS", "EMPLOYEE_ID")
    assert hash(settings) == hash(pii.PiiSettings(entities=("EMAIL_ADDRESS",), custom={"EMPLOYEE_ID": r"\bEMP-\d{6}\b"},
                                                  replacements={"EMAIL_ADDRESS": "[email]"}))


@pytest.mark.parametrize("kwargs, message", [
    ({"custom": {"EMPLOYEE_ID": r"EMP-(\d{6}"}}, r"custom entity EMPLOYEE_ID: invalid regex 'EMP-\(.*': missing \)"),
    ({"custom": {"BLANK": r"x*"}}, "custom entity BLANK: .*matches the empty string"),
    ({"custom": {"URL": r"x+"}}, "custom entity URL has the name of a built-in type"),
    ({"custom": {"my id": r"x+"}}, "must be an identifier"),
    ({"entities": ("EMAIL", )}, r"unknown entity type\(s\) \['EMAIL'\]"),
    ({"replacements": {"URL": "<a url>"}}, "replacement for URL must be non-empty text without whitespace"),
    ({"entities": ("URL",), "replacements": {"US_SSN": "x"}}, "replacement for 'US_SSN', which is not looked for"),
    ({"phone_regions": ("US", "XX")}, r"phone_regions must be ISO 3166 region codes .*\['US', 'XX'\]"),
])
def test_bad_settings_are_refused_naming_what_is_wrong(kwargs, message):
    with pytest.raises(ValueError, match=message):
        pii.PiiSettings(**kwargs)


@pytest.mark.parametrize("value", [v for values in FOUND.values() for v in values] + ["a", "ab", "a@b.co", "12345"])
def test_masks_never_show_the_whole_value(value):
    masked = pii.mask(value)
    assert value not in masked and len(masked) <= max(len(value) + 4, 14)


def test_mask_shapes():
    assert pii.mask("john.doe@example.com") == "j***@e***.com"
    assert pii.mask("4111111111111111") == "4***********1111"
    assert pii.mask("536-22-1234") == "5*********4"
    assert pii.mask("") == ""


OFFLINE = r"""
import json, socket, sys
def refuse(*args, **kwargs):
    raise OSError("network use in a test that must run offline")
socket.socket.connect = socket.socket.connect_ex = refuse
socket.create_connection = socket.getaddrinfo = refuse
import tldextract, tldextract.tldextract as tt
tldextract.extract = tt.extract = refuse  # Presidio's own e-mail check, which downloads the suffix list
from tinynlp import pii
texts = ["Mail jo@example.com or J.Smith@mail.example.co.uk, see https://example.org/x, call +44 20 7946 0958.",
         "No suffix: jo@example.notatld and x@localhost."]
out = [pii.redact_text(t) for t in texts] + [pii.redact_tokens("mail jo @ example . com".split())]
# Presidio was imported with torch and transformers hidden (tinynlp.pii._import_presidio): they must not stay so
out.append([sys.modules.get(name, "absent") is not None for name in ("torch", "transformers")])
print(json.dumps(out))
"""


def _no_network_namespace() -> list[str]:
    """`unshare -n` (a process with no network at all) where this machine allows it; the socket and
    tldextract stubs in OFFLINE hold either way."""
    if shutil.which("unshare") and subprocess.run(["unshare", "-n", "true"], capture_output=True).returncode == 0:
        return ["unshare", "-n"]
    return []


def test_works_offline_and_gives_the_same_bytes_in_another_process(tmp_path):
    env = {**os.environ, "PYTHONHASHSEED": "12345", "HOME": str(tmp_path), "XDG_CACHE_HOME": str(tmp_path / "cache"),
           "PYTHONPATH": str(ROOT)}
    out = subprocess.run([*_no_network_namespace(), sys.executable, "-c", OFFLINE], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    there = json.loads(out.stdout.strip().splitlines()[-1])
    assert there[0] == ["Mail <EMAIL_ADDRESS> or <EMAIL_ADDRESS>, see <URL>, call <PHONE_NUMBER>.",
                        {"EMAIL_ADDRESS": 2, "PHONE_NUMBER": 1, "URL": 1}]
    assert there[1][1].get("EMAIL_ADDRESS") is None  # no public suffix: not an address
    here = [list(pii.redact_text(t)) for t in ["Mail jo@example.com or J.Smith@mail.example.co.uk, see "
                                               "https://example.org/x, call +44 20 7946 0958.",
                                               "No suffix: jo@example.notatld and x@localhost."]]
    assert there[:2] == here
    assert there[2] == [["mail", "<EMAIL_ADDRESS>", "<EMAIL_ADDRESS>", "<EMAIL_ADDRESS>", "<EMAIL_ADDRESS>",
                         "<EMAIL_ADDRESS>"], {"EMAIL_ADDRESS": 1}]
    assert there[3] == [True, True]
    assert not (tmp_path / "cache").exists()  # nothing cached on disk either
