"""Settings: URL forms users paste, the DATABASE_URL alias, precedence and the example secret."""

import os
from pathlib import Path

import pytest
from pydantic import ValidationError
from sqlalchemy.engine import make_url

from src.core.config import (
    EXAMPLE_AUDIT_SIGNING_KEY,
    EXAMPLE_SECRET_KEY,
    PROJECT_ROOT,
    Settings,
    get_settings,
    load_settings,
)
from src.core.databases import DATABASES

# The environment variable of each named database's URL setting: CORE_DATABASE_URL, AUDIT_DATABASE_URL, ...
URL_VARIABLES = [database.url_setting.upper() for database in DATABASES.values()]


def settings_from(monkeypatch: pytest.MonkeyPatch, env_file: Path | None = None, /, **env: str) -> Settings:
    for name in (*URL_VARIABLES, "DATABASE_URL", "ENVIRONMENT", "SECRET_KEY", "AUDIT_SIGNING_KEY"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return load_settings(env_file)


@pytest.mark.parametrize(
    "pasted",
    [
        "postgresql://app:pw@db.internal:5432/app",
        "postgres://app:pw@db.internal:5432/app",
        "postgresql+psycopg2://app:pw@db.internal:5432/app",
    ],
)
def test_postgres_urls_select_the_installed_driver(monkeypatch: pytest.MonkeyPatch, pasted: str) -> None:
    settings = settings_from(monkeypatch, CORE_DATABASE_URL=pasted)

    url = make_url(settings.database_url("core"))
    assert (url.drivername, url.username, url.password, url.host, url.port, url.database) == (
        "postgresql+psycopg2",
        "app",
        "pw",
        "db.internal",
        5432,
        "app",
    )


# Each character that ends a part of a URL, at the start, in the middle and at the end of a password.
SPECIAL_PASSWORDS = [password for char in "?#@%/" for password in (f"{char}Zq9x", f"Zq{char}9x", f"Zq9x{char}")] + [
    "p@ss?w#rd%"
]


@pytest.mark.parametrize("password", SPECIAL_PASSWORDS)
def test_a_pasted_password_with_url_characters_is_read_whole(monkeypatch: pytest.MonkeyPatch, password: str) -> None:
    settings = settings_from(
        monkeypatch, CORE_DATABASE_URL=f"postgresql://app:{password}@db.internal:5432/app?sslmode=require"
    )

    url = make_url(settings.database_url("core"))
    assert (url.password, url.host, url.port, url.database, dict(url.query)) == (
        password,
        "db.internal",
        5432,
        "app",
        {"sslmode": "require"},
    )


@pytest.mark.parametrize("password", ["p@ss%word", "p%40ss%25word"])
def test_password_with_at_or_percent_is_read_whole(monkeypatch: pytest.MonkeyPatch, password: str) -> None:
    settings = settings_from(
        monkeypatch, AUDIT_DATABASE_URL=f"postgresql://app:{password}@db.internal/audit?sslmode=require"
    )

    url = make_url(settings.database_url("audit"))
    assert (url.password, url.host, url.database, dict(url.query)) == (
        "p@ss%word",
        "db.internal",
        "audit",
        {"sslmode": "require"},
    )


def test_database_url_is_accepted_for_core(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = settings_from(monkeypatch, DATABASE_URL="sqlite:////tmp/guide.db")

    assert settings.database_url("core") == "sqlite:////tmp/guide.db"


def test_defaults_are_sqlite_files_under_var(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = settings_from(monkeypatch)

    assert settings.database_url("core") == f"sqlite:///{PROJECT_ROOT / 'var' / 'core.db'}"
    assert settings.database_url("audit") == f"sqlite:///{PROJECT_ROOT / 'var' / 'audit.db'}"


def test_environment_wins_over_settings_file_which_wins_over_defaults(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    env_file = tmp_path / "local.env"
    env_file.write_text("CORE_DATABASE_URL=sqlite:////tmp/from-file.db\nDB_POOL_SIZE=3\n")

    settings = settings_from(monkeypatch, env_file, CORE_DATABASE_URL="sqlite:////tmp/from-env.db")

    assert settings.database_url("core") == "sqlite:////tmp/from-env.db"
    assert settings.db_pool_size == 3
    assert settings.db_pool_timeout == 30


@pytest.mark.parametrize("environment", ["staging", "production"])
@pytest.mark.parametrize(
    ("name", "example"), [("SECRET_KEY", EXAMPLE_SECRET_KEY), ("AUDIT_SIGNING_KEY", EXAMPLE_AUDIT_SIGNING_KEY)]
)
def test_example_keys_are_refused_outside_local_and_test(
    monkeypatch: pytest.MonkeyPatch, environment: str, name: str, example: str
) -> None:
    with pytest.raises(ValidationError, match=f"{name} is the example key"):
        settings_from(monkeypatch, **PRODUCTION | {"ENVIRONMENT": environment, name: example})


@pytest.mark.parametrize("name", ["SECRET_KEY", "AUDIT_SIGNING_KEY"])
def test_short_keys_are_refused_in_production(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    with pytest.raises(ValidationError, match=f"{name} must be at least 32 characters"):
        settings_from(monkeypatch, **PRODUCTION | {name: "hunter2"})


PRODUCTION = {
    "ENVIRONMENT": "production",
    "SECRET_KEY": "x" * 64,
    "AUDIT_SIGNING_KEY": "y" * 64,
    "ALLOWED_HOSTS": '["api.example.com"]',
    "SMTP_HOST": "smtp.example.com",
} | {
    database.url_setting.upper(): f"postgresql://app:pw@db.internal/app_{name}" for name, database in DATABASES.items()
}


def test_real_secret_key_is_accepted_in_production(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = settings_from(monkeypatch, **PRODUCTION)

    assert settings.environment == "production"
    assert settings.allowed_hosts == ["api.example.com"]


@pytest.mark.parametrize("unset", URL_VARIABLES)
def test_every_database_url_is_required_outside_local_and_test(monkeypatch: pytest.MonkeyPatch, unset: str) -> None:
    env = {name: value for name, value in PRODUCTION.items() if name != unset}

    with pytest.raises(ValidationError, match=f"{unset} must be set for ENVIRONMENT=production: outside local and"):
        settings_from(monkeypatch, **env)


def test_the_database_url_alias_counts_as_set(monkeypatch: pytest.MonkeyPatch) -> None:
    env = {name: value for name, value in PRODUCTION.items() if name != "CORE_DATABASE_URL"}

    settings = settings_from(monkeypatch, **env, DATABASE_URL="postgres://app:pw@db.internal/app_core")

    assert settings.database_url("core") == "postgresql+psycopg2://app:pw@db.internal/app_core"


@pytest.mark.parametrize(
    ("core", "audit"),
    [
        ("postgresql://app:pw@db.internal/app", "postgres://other:secret@DB.internal:5432/app"),
        ("postgresql://app@localhost/app", "postgresql://app:secret@127.0.0.1:5432/app"),
        ("postgresql://app@db.internal./app", "postgresql://app:secret@db.internal/app"),
        ("postgresql://app@/app?host=127.0.0.1", "postgresql://app:secret@[::1]/app"),
        ("postgresql://app@[0:0:0:0:0:0:0:1]/app", "postgresql://app:secret@localhost/?dbname=app"),
        ("sqlite:///var/shared.db", f"sqlite:///{Path.cwd()}/var/shared.db"),
    ],
)
def test_two_databases_at_one_url_are_refused_naming_both(
    monkeypatch: pytest.MonkeyPatch, core: str, audit: str
) -> None:
    with pytest.raises(ValidationError) as refused:
        settings_from(monkeypatch, CORE_DATABASE_URL=core, AUDIT_DATABASE_URL=audit)

    assert "CORE_DATABASE_URL and AUDIT_DATABASE_URL point at the same database" in str(refused.value)
    assert "secret" not in str(refused.value)


def test_databases_on_one_server_are_accepted(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = settings_from(monkeypatch, **PRODUCTION)

    assert settings.database_urls() == {
        name: f"postgresql+psycopg2://app:pw@db.internal/app_{name}" for name in DATABASES
    }


@pytest.mark.parametrize("environment", ["staging", "production"])
def test_allowed_hosts_are_required_outside_local_and_test(monkeypatch: pytest.MonkeyPatch, environment: str) -> None:
    with pytest.raises(ValidationError, match="ALLOWED_HOSTS must list the host names clients use"):
        settings_from(monkeypatch, ENVIRONMENT=environment, SECRET_KEY="x" * 64, AUDIT_SIGNING_KEY="y" * 64)


@pytest.mark.parametrize("environment", ["staging", "production"])
def test_smtp_is_required_outside_local_and_test(monkeypatch: pytest.MonkeyPatch, environment: str) -> None:
    monkeypatch.delenv("SMTP_HOST", raising=False)
    without_smtp = {name: value for name, value in PRODUCTION.items() if name != "SMTP_HOST"}
    with pytest.raises(ValidationError, match=r"SMTP_HOST .* must be set for ENVIRONMENT=.*: password-recovery"):
        settings_from(monkeypatch, **without_smtp | {"ENVIRONMENT": environment})


def test_not_a_url_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValidationError, match="not a database URL"):
        settings_from(monkeypatch, CORE_DATABASE_URL="var/core.db")


def test_a_bad_url_is_refused_without_echoing_its_password(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValidationError) as refused:
        settings_from(monkeypatch, CORE_DATABASE_URL="postgresql:/app:hunter2@db/app")

    assert "not a database URL" in str(refused.value)
    assert "hunter2" not in str(refused.value)


def test_the_example_settings_file_loads_as_documented(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = settings_from(monkeypatch, PROJECT_ROOT / "config" / "example.env")

    assert settings.environment == "local"
    assert settings.secret_key == EXAMPLE_SECRET_KEY
    assert settings.audit_relay_enabled is True


def test_the_example_settings_file_names_every_setting() -> None:
    example = (PROJECT_ROOT / "config" / "example.env").read_text()

    assert [name.upper() for name in type(get_settings()).model_fields if name.upper() not in example] == []


def test_password_hash_concurrency_defaults_to_the_usable_cores_also_without_affinity(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert settings_from(monkeypatch).password_hash_concurrency == len(os.sched_getaffinity(0))

    monkeypatch.delattr(os, "sched_getaffinity")  # as on macOS
    assert settings_from(monkeypatch).password_hash_concurrency == os.cpu_count()


def test_the_interactive_docs_are_off_outside_local_and_test_unless_asked_for(monkeypatch: pytest.MonkeyPatch) -> None:
    assert settings_from(monkeypatch, ENVIRONMENT="test").serves_docs
    assert not settings_from(monkeypatch, **PRODUCTION).serves_docs
    assert settings_from(monkeypatch, **PRODUCTION, DOCS_ENABLED="true").serves_docs
