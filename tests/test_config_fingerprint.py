"""The fingerprint of the settings every replica must share (:mod:`app.config_fingerprint`):
equal settings give equal fingerprints, each shared setting changes its group's part, and
secrets change nothing and never show."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any

import pytest

from app.config import SETTING_FIELDS, Secret, Settings
from app.config_fingerprint import (
    FORMAT_VERSION,
    GROUPS,
    application_name,
    differing_groups,
    settings_fingerprint,
)

CERT = "ab" * 32
"""A signing certificate's SHA-256 (hex)."""


def base(**changes: Any) -> Settings:
    """Settings in which every shared setting matters: signing at B-T with a TSA, an article
    limit, originals embedded (built afresh on each call, never shared)."""
    values: dict[str, Any] = {
        "zammad_base_url": "https://zammad.example",
        "zammad_api_token": Secret("tok-1234567890"),
        "storage_root": Path("/srv/archive"),
        "signing_pfx_path": Path("/etc/archiver/signer.pfx"),
        "signing_pfx_password": Secret("pfx-pass-0987"),
        "signing_pades_level": "B-T",
        "tsa_url": "https://tsa.example/tsr",
        "tsa_user": "tsa-user",
        "tsa_pass": Secret("tsa-pass-5555"),
        "webhook_hmac_secret": Secret("hmac-secret-4242"),
        "admin_bearer_token": Secret("admin-token-3131"),
        "metrics_bearer_token": Secret("metrics-token-2121"),
        "job_store_url": Secret("postgresql://u:db-pass-7777@db.example/archiver"),
        "pdf_max_articles": 100,
        "pdf_language_by_group": "Buchhaltung=de",
    }
    values.update(changes)
    return Settings(**values)


def fingerprint(settings: Settings, certificate: str | None = CERT) -> str:
    return settings_fingerprint(settings, certificate_sha256=certificate)


SHARED = [
    ("workflow", "ZAMMAD_BASE_URL", {"zammad_base_url": "https://zammad2.example"}),
    ("workflow", "WORKFLOW_TRIGGER_TAG", {"workflow_trigger_tag": "pdf:other"}),
    ("workflow", "WORKFLOW_REQUIRE_TAG", {"workflow_require_tag": False}),
    ("workflow", "WORKFLOW_MAX_ATTEMPTS", {"workflow_max_attempts": 3}),
    ("workflow", "WORKFLOW_DOWNLOAD_GIVE_UP_HOURS", {"workflow_download_give_up_hours": 1.0}),
    ("workflow", "RECONCILE_INTERVAL_SECONDS", {"reconcile_interval_seconds": 0.0}),
    ("storage", "STORAGE_ROOT", {"storage_root": Path("/srv/other")}),
    ("storage", "STORAGE_PATH_TEMPLATE", {"storage_path_template": "{group}/Ticket-{number}.pdf"}),
    ("pdf", "PDF_TEMPLATE", {"pdf_template": "compact"}),
    ("pdf", "PDF_TIMEZONE", {"pdf_timezone": "UTC"}),
    ("pdf", "PDF_LANGUAGE", {"pdf_language": "de"}),
    ("pdf", "PDF_LANGUAGE_BY_GROUP", {"pdf_language_by_group": "Buchhaltung=en"}),
    ("pdf", "PDF_MAX_ARTICLES", {"pdf_max_articles": 500}),
    ("pdf", "PDF_ARTICLE_LIMIT_MODE", {"pdf_article_limit_mode": "cap_and_continue"}),
    ("pdf", "PDF_PDFA", {"pdf_pdfa": False}),
    ("pdf", "PDF_EMBED_ORIGINALS", {"pdf_embed_originals": False}),
    ("pdf", "PDF_EMBED_MAX_BYTES", {"pdf_embed_max_bytes": 1024}),
    ("pdf", "PDF_EMBED_TOTAL_MAX_BYTES", {"pdf_embed_total_max_bytes": 2048}),
    ("pdf", "STRICT_FONTS", {"strict_fonts": True}),
    ("signing", "SIGNING_ENABLED", {"signing_enabled": False}),
    ("signing", "SIGNING_PADES_LEVEL", {"signing_pades_level": "B-LTA"}),
    ("signing", "TSA_URL", {"tsa_url": "https://tsa2.example/tsr"}),
    ("signing", "SIGNING_REASON", {"signing_reason": "Revisionssicher archiviert"}),
    ("signing", "SIGNING_LOCATION", {"signing_location": "Berlin"}),
    ("signing", "SIGNING_CONTACT", {"signing_contact": "archiv@example.com"}),
]
"""(group, the setting as the warning names it, a change of it) for every shared setting but
the certificate (its own test)."""


def parts(fp: str) -> dict[str, str]:
    return dict(zip(GROUPS, fp.partition("/")[2].split("."), strict=True))


def test_equal_settings_give_equal_fingerprints_and_this_replicas_own_settings_do_not_count() -> None:
    fp = fingerprint(base())
    assert re.fullmatch(rf"{FORMAT_VERSION}/[0-9a-f]{{6}}(\.[0-9a-f]{{6}}){{3}}", fp), fp
    assert fingerprint(base()) == fp
    own = base(
        workers=8,
        render_processes=3,
        server_port=9090,
        state_dir=Path("/var/lib/other"),
        log_level="DEBUG",
        job_lease_seconds=120.0,
        reconcile_interval_seconds=60.0,  # on, however often
        zammad_timeout_seconds=5.0,
        storage_fsync=False,
        signing_pfx_path=Path("/run/secrets/signer.pfx"),  # another path, the same certificate
        zammad_base_url="https://zammad.example/",
        pdf_language_by_group=" Buchhaltung = de ",
    )
    assert fingerprint(own) == fp
    name = application_name(fp)
    assert name == f"zammad-pdf-archiver/{fp}" and len(name.encode()) <= 63
    assert application_name(None) == "zammad-pdf-archiver"


@pytest.mark.parametrize(("group", "env", "change"), SHARED, ids=[env for _, env, _ in SHARED])
def test_each_shared_setting_changes_its_groups_part_only(
    group: str, env: str, change: dict[str, Any]
) -> None:
    ours, theirs = fingerprint(base()), fingerprint(base(**change))
    assert ours != theirs
    assert differing_groups(ours, theirs) == [group]
    assert env in {name.split(" ")[0] for name in GROUPS[group][0]}  # the warning names it


def test_the_certificate_counts_not_the_pfx_path() -> None:
    ours = fingerprint(base())
    assert differing_groups(ours, fingerprint(base(), "cd" * 32)) == ["signing"]
    assert differing_groups(ours, fingerprint(base(), None)) == ["signing"]  # not loaded here
    assert fingerprint(base(signing_pfx_path=Path("/elsewhere.pfx"))) == ours


def test_every_setting_the_warning_names_is_tested() -> None:
    named = {name.split(" ")[0] for names, _ in GROUPS.values() for name in names}
    assert named == {env for _, env, _ in SHARED} | {"SIGNING_PFX_PATH"}
    declared = {f.metadata["env"] for f in SETTING_FIELDS}
    assert named <= declared


def test_secrets_change_nothing_and_never_show() -> None:
    secrets = {f.name for f in SETTING_FIELDS if f.metadata["kind"] == "secret"}
    assert secrets == {
        "zammad_api_token",
        "webhook_hmac_secret",
        "admin_bearer_token",
        "signing_pfx_password",
        "tsa_pass",
        "job_store_url",
        "metrics_bearer_token",
    }, "a new secret: check that the fingerprint does not read it, then add it here"
    ours = fingerprint(base())
    others = {name: Secret("changed-" + name) for name in secrets}
    assert fingerprint(base(**others)) == ours
    assert fingerprint(base(**dict.fromkeys(secrets))) == ours
    # The TSA's user name and an access key in its URL's query are credentials too.
    assert fingerprint(base(tsa_user="someone-else")) == ours
    assert fingerprint(base(tsa_url="https://tsa.example/tsr?apikey=k-9999")) == ours
    settings = base(tsa_url="https://tsa.example/tsr?apikey=k-9999")
    shown = application_name(fingerprint(settings))
    for value in [*settings.secrets(), "k-9999", "tsa-user"]:
        assert value not in shown


def test_settings_that_do_not_apply_do_not_count() -> None:
    """A difference that changes no archive raises no warning: the signature's details with
    signing off, the TSA at B-B, the article limit's mode without a limit, the embedding
    limits without embedding."""
    off = base(signing_enabled=False)
    assert fingerprint(dataclasses.replace(off, signing_reason="x", tsa_url=None), None) == fingerprint(off)
    bb = base(signing_pades_level="B-B")
    assert fingerprint(dataclasses.replace(bb, tsa_url="https://tsa2.example/")) == fingerprint(bb)
    assert fingerprint(base(signing_pades_level=None)) == fingerprint(base())  # B-T with a TSA
    unlimited = base(pdf_max_articles=0)
    assert fingerprint(unlimited) == fingerprint(
        dataclasses.replace(unlimited, pdf_article_limit_mode="cap_and_continue")
    )
    bare = base(pdf_embed_originals=False)
    assert fingerprint(bare) == fingerprint(dataclasses.replace(bare, pdf_embed_max_bytes=1))


def test_another_format_version_is_told_apart() -> None:
    ours = fingerprint(base())
    assert differing_groups(ours, ours) == []
    assert differing_groups(ours, "2/" + ours.partition("/")[2]) is None
    assert differing_groups(ours, "garbage") is None
