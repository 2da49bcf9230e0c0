"""Signature check and ticket-id extraction (pure functions of the webhook edge)."""

from __future__ import annotations

import hashlib
import hmac
import json
from pathlib import Path

import pytest

from app.http.webhook import InvalidPayload, extract_ticket_id, signature_ok

FIXTURES = Path(__file__).parent.parent / "fixtures" / "zammad"


def test_known_answer_from_the_fixture_readme():
    body = b'{"ticket_id":4711,"ticket_number":"25004711"}'
    header = "sha1=bfd7c09ac9f3264555d38b1b2f0871043c17c6ba"
    assert signature_ok(body, header, b"test-secret")
    assert signature_ok(body, header.upper().replace("SHA1=", "sha1="), b"test-secret")
    assert not signature_ok(body + b" ", header, b"test-secret")
    assert not signature_ok(body, header, b"other-secret")


def test_sha256_accepted_and_unknown_algorithms_refused():
    body = b"{}"
    good = "sha256=" + hmac.new(b"s3cret", body, hashlib.sha256).hexdigest()
    assert signature_ok(body, good, b"s3cret")
    md5 = "md5=" + hmac.new(b"s3cret", body, hashlib.md5).hexdigest()
    for header in (None, "", "sha1", "sha1=", md5, "garbage"):
        assert not signature_ok(body, header, b"s3cret")


def test_ticket_id_from_default_and_custom_payloads():
    assert extract_ticket_id(json.loads((FIXTURES / "webhook-default.json").read_text())) == 4711
    assert extract_ticket_id(json.loads((FIXTURES / "webhook-custom.json").read_text())) == 4711
    assert extract_ticket_id({"ticket_id": "4711"}) == 4711
    assert extract_ticket_id({"ticket_id": " 12 "}) == 12
    assert extract_ticket_id({"ticket_id": "9223372036854775807"}) == 2**63 - 1
    assert extract_ticket_id({"ticket_id": "0" * 5000 + "4711"}) == 4711
    # Both present: they must agree; a ticket.id that is no ticket id is ignored.
    assert extract_ticket_id({"ticket_id": "4711", "ticket": {"id": 4711}}) == 4711
    assert extract_ticket_id({"ticket_id": 4711, "ticket": {"id": "#{ticket.id}"}}) == 4711


def test_conflicting_ticket_ids_are_refused_and_named():
    with pytest.raises(InvalidPayload, match=r"ticket_id \(4711\) and ticket.id \(4712\)"):
        extract_ticket_id({"ticket_id": 4711, "ticket": {"id": 4712}})


@pytest.mark.parametrize(
    "payload",
    [
        [],
        "4711",
        {},
        {"ticket_id": None},
        {"ticket_id": True},
        {"ticket_id": 0},
        {"ticket_id": -1},
        {"ticket_id": "47a"},
        {"ticket_id": "٤٧"},
        {"ticket_id": 4.5},
        {"ticket": {"id": "x"}},
        {"ticket": []},
        {"error": "Validation failed"},
        {"ticket_id": 2**64},
        {"ticket_id": "9223372036854775808"},
        {"ticket_id": "1" * 5000},
        {"ticket": {"id": "0" * 4999 + "1" * 5000}},
    ],
)
def test_invalid_payloads(payload):
    with pytest.raises(InvalidPayload):
        extract_ticket_id(payload)
