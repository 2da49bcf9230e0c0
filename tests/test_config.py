"""Settings: TOML file plus environment overrides, validation naming the bad key, secrets hidden."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from app.config import SETTING_FIELDS, Secret, load_settings, redact_url
from app.errors import ConfigError

BASE = {
    "ZAMMAD_BASE_URL": "https://zammad.example",
    "ZAMMAD_API_TOKEN": "tok-1234567890",
    "STORAGE_ROOT": "/srv/archive",
    "SIGNING_ENABLED": "false",
}


DECLARED = {f.metadata["env"] for f in SETTING_FIELDS} | {"CONFIG_PATH"}


def assert_names_declared_settings(message: str) -> None:
    """Every setting-like name (``TSA_USER``) in an error message is one that exists."""
    named = set(re.findall(r"\b[A-Z][A-Z0-9]*_[A-Z0-9_]+\b", message))
    assert named <= DECLARED, (named - DECLARED, message)


def test_defaults_and_environment():
    s = load_settings(BASE)
    assert s.server_host == "127.0.0.1" and s.server_port == 8080
    assert s.workflow_trigger_tag == "pdf:sign" and s.workflow_require_tag is True
    assert s.zammad_verify_tls is True and s.signing_enabled is False
    assert s.storage_root == Path("/srv/archive")
    assert s.zammad_api_token == Secret("tok-1234567890")


def test_toml_file_with_environment_override(tmp_path):
    cfg = tmp_path / "archiver.toml"
    cfg.write_text(
        'workers = 5\n[server]\nport = 9000\n[zammad]\nbase_url = "https://a.example"\n'
        "[workflow]\nrequire_tag = false\n"
    )
    s = load_settings({**BASE, "CONFIG_PATH": str(cfg), "ZAMMAD_BASE_URL": "https://b.example"})
    assert s.workers == 5 and s.server_port == 9000 and s.workflow_require_tag is False
    assert s.zammad_base_url == "https://b.example"


def test_unknown_toml_key_is_named(tmp_path):
    cfg = tmp_path / "a.toml"
    cfg.write_text("[server]\nprot = 1\n")
    with pytest.raises(ConfigError, match="server.prot"):
        load_settings({**BASE, "CONFIG_PATH": str(cfg)})


@pytest.mark.parametrize("url_key", ["ZAMMAD_BASE_URL", "TSA_URL"])
@pytest.mark.parametrize("url", ["https://admin:S3cretPW@zammad.example", "htps://admin:S3cretPW@host"])
def test_credentials_in_a_url_are_refused_and_never_echoed(url_key, url):
    with pytest.raises(ConfigError, match=f"{url_key}.*must not carry credentials") as info:
        load_settings({**BASE, url_key: url})
    assert "S3cretPW" not in str(info.value)
    assert ("ZAMMAD_API_TOKEN" if url_key == "ZAMMAD_BASE_URL" else "TSA_PASS") in str(info.value)
    assert_names_declared_settings(str(info.value))  # TSA_PASS, not TSA_PASSWORD


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql://u:s3cr3t@db:5432/x", "postgresql://u:***@db:5432/x"),
        ("postgresql://db/x", "postgresql://db/x"),  # no userinfo
        ("postgresql://u@db/x", "postgresql://u@db/x"),  # a user, no password
        ("postgresql://:s3cr3t@db/x", "postgresql://:***@db/x"),  # a password, no user
        ("postgresql://u:s3@cr:3t@db/x", "postgresql://u:***@db/x"),  # raw "@" and ":" in it
        ("postgresql://u:s3/cr#3t@db/x", "postgresql://u:***@db/x"),  # raw "/" and "#" in it
        ("postgresql://u:s3cr3t@[2001:db8::1]:5432/x", "postgresql://u:***@[2001:db8::1]:5432/x"),
        ("postgresql://u:s3cr3t@[2001:db8::1/x", "postgresql://u:***@[2001:db8::1/x"),  # unparseable
        ("postgresql://u:s3cr3t@db:port/x", "postgresql://u:***@db:port/x"),  # port no number
        (
            "postgresql://u@db/x?sslmode=require&password=s3cr3t",
            "postgresql://u@db/x?sslmode=require&password=***",
        ),
        (
            "postgresql://u@db/x?sslmode=require&sslpassword=k3y-pass&application_name=a",
            "postgresql://u@db/x?sslmode=require&sslpassword=***&application_name=a",
        ),
        ("u:s3cr3t@db", "u:s3cr3t@db"),  # no "//": not a URL with an authority
        (
            "postgresql://u@db/x?pass%77ord=s3cr3t",
            "postgresql://u@db/x?pass%77ord=***",
        ),  # asyncpg decodes names
        ("postgresql://u@db/x?passwords=a&xpassword=b", "postgresql://u@db/x?passwords=a&xpassword=b"),
    ],
)
def test_redact_url_hides_the_password_and_keeps_the_user(url, shown):
    assert redact_url(url) == shown


def test_unreadable_config_file_is_one_line(tmp_path):
    with pytest.raises(ConfigError, match="cannot be read"):
        load_settings({**BASE, "CONFIG_PATH": str(tmp_path)})  # a folder
    cfg = tmp_path / "bad.toml"
    cfg.write_bytes(b"\xff\xfe")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings({**BASE, "CONFIG_PATH": str(cfg)})


@pytest.mark.parametrize(
    ("key", "value", "named"),
    [
        ("WORKERS", "zero", "WORKERS / workers"),
        ("WORKERS", "0", "WORKERS"),
        ("SERVER_PORT", "70000", "SERVER_PORT / server.port"),
        ("ZAMMAD_VERIFY_TLS", "maybe", "ZAMMAD_VERIFY_TLS / zammad.verify_tls"),
        ("ZAMMAD_BASE_URL", "http://zammad.example", "ZAMMAD_BASE_URL"),
        ("ZAMMAD_BASE_URL", "ftp://x", "ZAMMAD_BASE_URL"),
        ("TSA_URL", "http://tsa.example", "TSA_URL"),
        ("PDF_TIMEZONE", "Mars/Olympus", "PDF_TIMEZONE"),
        ("PDF_LANGUAGE", "fr", "PDF_LANGUAGE / pdf.language"),
        ("PDF_LANGUAGE_BY_GROUP", "Buchhaltung", "PDF_LANGUAGE_BY_GROUP / pdf.language_by_group"),
        ("PDF_LANGUAGE_BY_GROUP", "Buchhaltung=fr", "PDF_LANGUAGE_BY_GROUP"),
        ("WORKFLOW_TRIGGER_TAG", "a,b", "WORKFLOW_TRIGGER_TAG"),
        ("STORAGE_PATH_TEMPLATE", "{nope}.pdf", "STORAGE_PATH_TEMPLATE"),
        ("ZAMMAD_TIMEOUT_SECONDS", "nan", "ZAMMAD_TIMEOUT_SECONDS"),
        ("TSA_TIMEOUT_SECONDS", "inf", "TSA_TIMEOUT_SECONDS"),
        ("JOB_STORE_URL", "mysql://u:p@db/x", "JOB_STORE_URL / job.store_url"),
        ("JOB_STORE_URL", "postgresql://u:p@db:5432", "JOB_STORE_URL"),
        ("JOB_LEASE_SECONDS", "2", "JOB_LEASE_SECONDS / job.lease_seconds"),
        ("RECONCILE_INTERVAL_SECONDS", "-1", "RECONCILE_INTERVAL_SECONDS / reconcile.interval_seconds"),
        ("RECONCILE_STALE_SECONDS", "0", "RECONCILE_STALE_SECONDS / reconcile.stale_seconds"),
        ("RENDER_TIMEOUT_SECONDS", "-1", "RENDER_TIMEOUT_SECONDS / render.timeout_seconds"),
        ("RENDER_TIMEOUT_SECONDS", "nan", "RENDER_TIMEOUT_SECONDS"),
        (
            "WORKFLOW_DOWNLOAD_GIVE_UP_HOURS",
            "-1",
            "WORKFLOW_DOWNLOAD_GIVE_UP_HOURS / workflow.download_give_up_hours",
        ),
        ("WORKFLOW_DOWNLOAD_GIVE_UP_HOURS", "721", "WORKFLOW_DOWNLOAD_GIVE_UP_HOURS"),
        ("WORKFLOW_DOWNLOAD_GIVE_UP_HOURS", "nan", "WORKFLOW_DOWNLOAD_GIVE_UP_HOURS"),
    ],
)
def test_bad_values_name_the_key(key, value, named):
    with pytest.raises(ConfigError, match=named.replace("/", "/")) as info:
        load_settings({**BASE, key: value})
    assert_names_declared_settings(str(info.value))


@pytest.mark.parametrize(
    ("key", "url", "why"),
    [
        ("ZAMMAD_BASE_URL", "http://[bad", "host cannot be read"),
        ("ZAMMAD_BASE_URL", "http://[zz]/", "host cannot be read"),
        ("ZAMMAD_BASE_URL", "http://127.0.0.1:abc/", "port is not a number"),
        ("ZAMMAD_BASE_URL", "https://zammad.example:70000/", "port is not a number"),
        ("ZAMMAD_BASE_URL", "https://zammad.example:0/", "port is not a number"),
        ("ZAMMAD_BASE_URL", "https://:443/", "names no host"),
        ("ZAMMAD_BASE_URL", "http://zammad example/", "space or control character"),
        ("JOB_STORE_URL", "postgresql://u:S3cretPW@db\thost/db", "space or control character"),
        ("TSA_URL", "http://[bad", "host cannot be read"),
        ("TSA_URL", "https://u:S3cretPW@[bad/", "host cannot be read"),
        ("TSA_URL", "https://tsa.example:abc/", "port is not a number"),
        ("JOB_STORE_URL", "postgresql://u:S3cretPW@[bad/db", "host cannot be read"),
        ("JOB_STORE_URL", "postgresql://u:S3cretPW@127.0.0.1:abc/db", "port is not a number"),
        ("JOB_STORE_URL", "postgresql://u:S3cretPW@db:99999/db", "port is not a number"),
    ],
)
def test_an_unreadable_url_names_the_setting_and_never_the_password(key, url, why):
    """A bad host or port is a ConfigError at load, for every command (not a ValueError where a
    client first reads the URL); the password in it is never echoed."""
    env = {**BASE, "ALLOW_INSECURE_HTTP": "true", key: url}
    with pytest.raises(ConfigError, match=f"^{key} / .*{why}") as info:
        load_settings(env, require_complete=False)
    assert "S3cretPW" not in str(info.value)


def test_insecure_http_only_when_allowed():
    s = load_settings({**BASE, "ZAMMAD_BASE_URL": "http://127.0.0.1:1", "ALLOW_INSECURE_HTTP": "true"})
    assert s.zammad_base_url == "http://127.0.0.1:1"


@pytest.mark.parametrize("missing", ["ZAMMAD_BASE_URL", "ZAMMAD_API_TOKEN", "STORAGE_ROOT"])
def test_required_settings(missing):
    env = {k: v for k, v in BASE.items() if k != missing}
    with pytest.raises(ConfigError, match=missing):
        load_settings(env)


def test_pfx_required_when_signing():
    with pytest.raises(ConfigError, match="SIGNING_PFX_PATH"):
        load_settings({**BASE, "SIGNING_ENABLED": "true"})


def test_secrets_never_print():
    s = load_settings(
        {**BASE, "WEBHOOK_HMAC_SECRET": "hmac-very-secret", "SIGNING_PFX_PASSWORD": "pfx-pass-99"}
    )
    for text in (repr(s), str(s)):
        assert "hmac-very-secret" not in text and "tok-1234567890" not in text and "pfx-pass-99" not in text
    assert sorted(s.secrets()) == sorted(["tok-1234567890", "hmac-very-secret", "pfx-pass-99"])


@pytest.mark.parametrize(
    "token", ["tok-1234567890\n", " tok-1234567890", "tok 1234567890", "tok-\u00e91234567890"]
)
def test_an_api_token_an_http_header_cannot_carry_is_refused_at_start(token):
    """A secret file's last newline used to pass: every job then failed in aiohttp ("Forbidden
    control character detected in headers"), Permanent, one traceback per ticket."""
    with pytest.raises(ConfigError, match="ZAMMAD_API_TOKEN.*newline") as info:
        load_settings({**BASE, "ZAMMAD_API_TOKEN": token})
    assert "1234567890" not in str(info.value)


def test_an_hmac_secret_with_a_line_break_is_refused_at_start():
    with pytest.raises(ConfigError, match="WEBHOOK_HMAC_SECRET.*line break") as info:
        load_settings({**BASE, "WEBHOOK_HMAC_SECRET": "hmac-very-secret\n"})
    assert "hmac-very-secret" not in str(info.value)
    assert load_settings({**BASE, "WEBHOOK_HMAC_SECRET": "hmac with spaces"}).webhook_hmac_secret


@pytest.mark.parametrize("secret", [" ", "   "])
def test_an_hmac_secret_of_only_spaces_is_refused_at_start(secret):
    """``WEBHOOK_HMAC_SECRET=" "`` was taken as a key: anyone who tried it could sign webhooks
    and, without ADMIN_BEARER_TOKEN, retries and job queries (a bearer token of only spaces
    opens nothing, test_a_bearer_token_configured_with_a_trailing_newline_still_works)."""
    with pytest.raises(ConfigError, match="WEBHOOK_HMAC_SECRET.*only spaces"):
        load_settings({**BASE, "WEBHOOK_HMAC_SECRET": secret})


def test_bad_secret_value_error_does_not_show_it(tmp_path):
    cfg = tmp_path / "a.toml"
    cfg.write_text("[zammad]\napi_token = [1, 2]\n")
    with pytest.raises(ConfigError) as info:
        load_settings({k: v for k, v in BASE.items() if k != "ZAMMAD_API_TOKEN"} | {"CONFIG_PATH": str(cfg)})
    assert "ZAMMAD_API_TOKEN" in str(info.value) and "[1, 2]" not in str(info.value)


def test_job_store_url_selects_postgresql_and_its_password_is_a_secret():
    from app.jobs.postgres import PostgresJobStore
    from app.jobs.sqlite import SqliteJobStore
    from app.jobs.store import create_job_store

    assert isinstance(create_job_store(load_settings(BASE)), SqliteJobStore)
    s = load_settings(
        {
            **BASE,
            "JOB_STORE_URL": "postgresql://archiver:db-pass-4321@db.example:5432/archiver",
            "JOB_LEASE_SECONDS": "30",
        }
    )
    store = create_job_store(s)
    assert isinstance(store, PostgresJobStore) and store.lease_seconds == 30
    assert "db-pass-4321" not in repr(s) and "db-pass-4321" in s.secrets()
    with pytest.raises(ConfigError) as refused:
        load_settings({**BASE, "JOB_STORE_URL": "mysql://archiver:db-pass-4321@db/x"})
    assert "db-pass-4321" not in str(refused.value)


@pytest.mark.usefixtures("logging_restored")  # tests/conftest.py
@pytest.mark.parametrize(
    ("url", "quoted"),
    [
        ("postgresql://archiver@db/x?password=qry-pass-8765", "qry-pass-8765"),
        ("postgresql://archiver:p%40ss-8765@db/x", "p@ss-8765"),  # asyncpg decodes it
        ("postgresql://archiver@db/x?sslmode=require&sslpassword=key-pass%2B1", "key-pass+1"),
    ],
)
def test_a_job_store_password_a_driver_quotes_is_masked_in_the_log(url: str, quoted: str) -> None:
    import io
    import logging

    from app.observability.logging import configure_logging

    settings = load_settings({**BASE, "JOB_STORE_URL": url})
    stream = io.StringIO()
    configure_logging("INFO", settings.secrets(), stream=stream)
    logging.getLogger("app.jobs.test").error("connect failed: password %r rejected", quoted)
    line = stream.getvalue()
    assert "connect failed" in line and quoted not in line and "***" in line


def test_language_settings_default_to_english_in_berlin_time():
    s = load_settings(BASE)
    assert (s.pdf_language, s.pdf_language_by_group, s.pdf_timezone) == ("en", "", "Europe/Berlin")
    s = load_settings({**BASE, "PDF_LANGUAGE": "de", "PDF_LANGUAGE_BY_GROUP": "Support=en"})
    assert (s.pdf_language, s.pdf_language_by_group) == ("de", "Support=en")
