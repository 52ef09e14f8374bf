"""The one settings object, used by the app, the migrations and the CLI alike.

Precedence: process environment > settings file (SETTINGS_FILE, default
config/local.env) > the defaults below. Read on first use (``get_settings()``),
not on import, so that an entry point reports invalid settings its own way.
"""

import ipaddress
import os
import re
from functools import cache
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote

from pydantic import AliasChoices, Field, ValidationInfo, create_model, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from src.core.databases import DATABASES

PROJECT_ROOT = Path(__file__).resolve().parents[2]
EXAMPLE_SECRET_KEY = "example-secret-key-change-me-before-any-deploy"
EXAMPLE_AUDIT_SIGNING_KEY = "example-audit-signing-key-change-me-before-any-deploy"
MIN_SECRET_KEY_LENGTH = 32
# One URL setting per named database: core_database_url (CORE_DATABASE_URL), audit_database_url, ...
_URL_SETTINGS = [database.url_setting for database in DATABASES.values()]

Environment = Literal["local", "test", "staging", "production"]

# A raw "%" not starting a %XX escape, or a raw "@", "?", "#" or "/", means the password was pasted unencoded.
_UNENCODED_PASSWORD = re.compile(r"[@?#/]|%(?![0-9A-Fa-f]{2})")


def project_path(path: str | Path) -> Path:
    """A path as typed from the project's root when it lies inside, else as it is."""
    resolved = Path(path).resolve()
    return resolved.relative_to(PROJECT_ROOT) if resolved.is_relative_to(PROJECT_ROOT) else resolved


def usable_cores() -> int:
    """The cores this process may run on (all of them where the system cannot tell, as on macOS)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def _sqlite_url(filename: str) -> str:
    return f"sqlite:///{PROJECT_ROOT / 'var' / filename}"


def normalize_database_url(url: str) -> str:
    """Select the installed PostgreSQL driver and percent-encode a pasted password.

    SQLAlchemy reads a bare ``postgresql://`` as psycopg 3, which is not installed;
    hosting providers hand out ``postgres://``. Both become ``postgresql+psycopg2://``.
    """
    scheme, sep, rest = url.partition("://")
    if not sep:
        # The URL itself is left out of the message: it may hold a password.
        raise ValueError("not a database URL (expected e.g. sqlite:///var/core.db or postgresql://user:pw@host/db)")
    if scheme in ("postgres", "postgresql"):
        scheme = "postgresql+psycopg2"
    # The host cannot hold an "@", so the last one ends the password, whatever the password holds.
    userinfo, at, location = rest.rpartition("@")
    user, colon, password = userinfo.partition(":")
    if at and colon and _UNENCODED_PASSWORD.search(password):
        password = quote(password, safe="")
    return f"{scheme}://{user}{colon}{password}{at}{location}"


def _database_identity(url: str) -> tuple[object, ...] | None:
    """What tells two URLs of one database apart from two databases: server and name, or the SQLite file."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        return None
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        if not parsed.database or parsed.database == ":memory:":
            return None
        return (backend, Path(parsed.database).resolve())
    host = str(parsed.host or parsed.query.get("host") or "localhost").strip("[]").rstrip(".").lower()
    try:
        address = ipaddress.ip_address(host)
        host = "localhost" if address.is_loopback else str(address)
    except ValueError:
        pass
    database = parsed.database or parsed.query.get("dbname")
    return (backend, host, parsed.port or 5432, database)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_file_encoding="utf-8",
        extra="ignore",
        validate_assignment=True,
        populate_by_name=True,
        hide_input_in_errors=True,  # errors must not echo a URL with its password, or the secret key
    )

    environment: Environment = "local"
    secret_key: str = EXAMPLE_SECRET_KEY

    # Logs (src/core/logs.py): text in local and test, one JSON object per line elsewhere, unless set.
    log_format: Literal["text", "json"] | None = None
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    # The URL settings, one per named database, are added below (_SettingsWithDatabases).

    # The pool per database; requests admitted at once follow it (src/core/sessions.py). Overflow
    # connections are closed on every return and reopened: under load they cost more than they give.
    db_pool_size: int = Field(default=20, ge=1)
    db_max_overflow: int = Field(default=0, ge=0)
    db_pool_timeout: float = Field(default=30.0, gt=0)

    # Migrations on PostgreSQL (src/migrate/migration_lock.py), set on the migration's own connection only.
    # lock_timeout of one attempt: reads and writes queue behind a revision waiting for a table lock this long at
    # most; it then gives up, is rolled back and, after a pause, tried again (src/migrate/lock_retries.py).
    migration_lock_timeout_seconds: float = Field(default=0.1, ge=0)
    migration_lock_attempts: int = Field(default=10, ge=1)
    # The pause after the first failed attempt; each further pause doubles, up to a minute.
    migration_lock_retry_pause_seconds: float = Field(default=1.0, ge=0)
    # statement_timeout: the longest one migration statement (an index build, a batch) may run.
    migration_statement_timeout_seconds: float = Field(default=3600.0, ge=0)
    # op.backfill (src/migrate/backfill.py): rows per batch, each batch its own transaction, and the pause between.
    migration_backfill_batch_size: int = Field(default=1000, ge=1)
    migration_backfill_pause_seconds: float = Field(default=0.05, ge=0)
    # How long an upgrade waits for another process's migration to finish; then it fails, retry later.
    migration_wait_timeout_seconds: float = Field(default=300.0, ge=0)

    # `make serve` believes X-Forwarded-For and X-Forwarded-Proto from these addresses only (comma-separated, or *):
    # the reverse proxy's. The client address then is the caller's, for logs, audit events and log-in throttling.
    forwarded_allow_ips: str = "127.0.0.1"

    # GET /metrics in the Prometheus text format (src/api/metrics.py); restrict who reaches it at the proxy.
    metrics_enabled: bool = True
    # When set, GET /metrics answers only a scraper sending "Authorization: Bearer <this token>".
    metrics_token: str = ""
    # /ready and /metrics report the databases as checked at most this long ago: a flood of probes costs each
    # database one check per interval.
    readiness_cache_seconds: float = Field(default=1.0, ge=0)
    # The interactive API docs (/docs and /openapi.json): on in local and test, off elsewhere unless set.
    docs_enabled: bool | None = None

    # Log-in throttling (src/services/login_throttle.py). After the limit of failures, an account or a client
    # address is locked out for LOGIN_LOCKOUT_SECONDS, doubled for each further failure up to the window; its
    # failures are forgotten once it has had none for LOGIN_FAILURE_WINDOW_SECONDS past its lockout.
    login_failures_per_account: int = Field(default=5, ge=1)
    login_failures_per_address: int = Field(default=50, ge=1)
    # Failures on one account from every address but those it logged in from in LOGIN_KNOWN_ADDRESS_DAYS: a guess
    # spread over many addresses is stopped, and the owner's own address still gets in.
    login_failures_per_account_from_anywhere: int = Field(default=100, ge=1)
    login_known_address_days: int = Field(default=30, ge=1)
    # Sign-ups per client address before it is refused for LOGIN_LOCKOUT_SECONDS (doubling, as for log-ins).
    sign_ups_per_address: int = Field(default=20, ge=1)
    login_lockout_seconds: float = Field(default=60.0, gt=0)
    login_failure_window_seconds: float = Field(default=900.0, gt=0)

    # Requests: a larger body is refused (413) while it streams in, before it is held in memory.
    max_request_body_bytes: int = Field(default=1024 * 1024, ge=1)
    # Served by `make serve` (src/core/http_protocol.py): the request line and headers together, and their count,
    # are limited (431), and must arrive within their timeout (408). The body's timeout holds everywhere
    # (src/api/body_limit.py): from when the app begins to read it.
    max_request_header_bytes: int = Field(default=16 * 1024, ge=1024)
    max_request_headers: int = Field(default=100, ge=10)
    # Client connections a worker holds at once (make serve); further ones are closed at once, with a log line.
    # Lowered to fit the process's descriptor limit, which make serve first raises as far as the system allows.
    max_connections_per_worker: int = Field(default=4096, ge=1)
    request_header_timeout_seconds: float = Field(default=10.0, gt=0)
    request_body_timeout_seconds: float = Field(default=60.0, gt=0)
    # Host names clients reach the service by (the Host header), e.g. ["api.example.com", "*.example.com"];
    # ["*"] accepts any. Required outside local and test, where empty means any.
    allowed_hosts: list[str] = []
    # Browser origins allowed to call the API (CORS), e.g. ["https://app.example.com"]; none by default.
    cors_origins: list[str] = []

    # How long a creating request's answer is kept for retries under the same Idempotency-Key.
    idempotency_key_hours: int = Field(default=24, ge=1, le=24 * 30)

    # Bearer tokens: HS256 signed with secret_key; issuer and audience are checked on every request.
    access_token_expire_minutes: int = Field(default=60, ge=1)
    # A log-in session, and the refresh tokens that renew its access tokens, last this long (src/services/
    # login_sessions.py); then log in again.
    session_days: int = Field(default=30, ge=1, le=365)
    # How long an invitation to a workspace can be accepted (src/services/invitations.py).
    invitation_days: int = Field(default=7, ge=1, le=90)
    jwt_issuer: str = Field(default="fastapi-starter", min_length=1)
    jwt_audience: str = Field(default="fastapi-starter-api", min_length=1)

    # Argon2id cost. The defaults are argon2-cffi's (64 MiB, 3 passes); only tests may go cheaper.
    password_hash_memory_kib: int = Field(default=65536, ge=8)
    password_hash_time_cost: int = Field(default=3, ge=1)
    password_hash_parallelism: int = Field(default=4, ge=1)
    # Hashes computed at once; the others wait (src/core/security.py). Default: the cores this process may use.
    password_hash_concurrency: int = Field(default_factory=usable_cores, ge=1)
    # Hashes waiting or running at once in a worker; past it, password routes answer 503 at once (src/core/security.py).
    password_hash_queue: int = Field(default=64, ge=1)
    # Password checks in flight at once per account and per client address, in a worker; more are refused (429)
    # before they are hashed.
    password_checks_per_client: int = Field(default=2, ge=1)

    # The relay that moves audit events from the core outbox to the audit database (src/services/audit_relay.py).
    audit_relay_enabled: bool = True
    audit_relay_interval_seconds: float = Field(default=2.0, gt=0)
    audit_relay_batch_size: int = Field(default=1000, ge=1, le=10000)
    # While a backlog drains, the relay rests between batches so that delivering takes at most this share of its
    # time (and of the database's work for it): the web requests keep the rest.
    audit_relay_busy_share: float = Field(default=0.5, gt=0, le=1)
    # Signs the heads of the audit hash chains (HMAC-SHA256, src/services/audit_chain.py). Keep it apart from
    # SECRET_KEY: whoever verifies the trail needs this one and should not be able to sign tokens.
    audit_signing_key: str = EXAMPLE_AUDIT_SIGNING_KEY

    # Mail (src/core/mail.py), sent by a worker from the core mail outbox (src/services/mail_outbox.py). Without
    # SMTP_HOST each message is written as an .eml file under MAIL_DIRECTORY instead: allowed in local and test only.
    smtp_host: str = ""
    smtp_port: int = Field(default=587, ge=1, le=65535)
    # starttls: upgrade a plain connection (port 587); tls: TLS from the start (port 465); none: local relays only.
    smtp_tls: Literal["starttls", "tls", "none"] = "starttls"
    smtp_user: str = ""
    smtp_password: str = ""
    smtp_timeout_seconds: float = Field(default=10.0, gt=0)
    mail_from: str = Field(default="FastAPI starter <noreply@localhost>", min_length=3)
    mail_directory: Path = Path("var/mail")  # from the project folder when relative
    # The worker that sends the outbox, in the app's lifespan (or `make mail-worker LOOP=1` beside it).
    mail_worker_enabled: bool = True
    mail_worker_interval_seconds: float = Field(default=2.0, gt=0)
    # A failed send is tried again after MAIL_RETRY_SECONDS, doubling each time up to an hour; after
    # MAIL_MAX_ATTEMPTS it is kept as failed (mail_failed_total) and not tried again.
    mail_retry_seconds: float = Field(default=30.0, gt=0)
    mail_max_attempts: int = Field(default=12, ge=1)
    # Links in mail lead here: the page (a front end's) that posts the link's token back to the API.
    public_url: str = Field(default="http://localhost:8000", pattern=r"^https?://[^\s/?#]+(/[^\s?#]*)?$")

    # Account links sent by mail (src/services/account_links.py): single-use, kept only as digests.
    password_reset_minutes: int = Field(default=30, ge=1, le=24 * 60)
    email_confirmation_hours: int = Field(default=48, ge=1, le=24 * 30)
    # Password-reset and confirmation requests per email and per client address before they are refused for
    # LOGIN_LOCKOUT_SECONDS (doubling, as for log-ins).
    account_mail_per_email: int = Field(default=3, ge=1)
    account_mail_per_address: int = Field(default=30, ge=1)
    # Whether an account whose email is not confirmed yet may log in.
    login_requires_verified_email: bool = False

    @field_validator("*")
    @classmethod
    def _normalize_database_urls(cls, value: object, info: ValidationInfo) -> object:
        if info.field_name in _URL_SETTINGS and isinstance(value, str):
            return normalize_database_url(value)
        return value

    @property
    def for_development(self) -> bool:
        """local and test: example secrets, any host and text logs are allowed there, and nowhere else."""
        return self.environment in ("local", "test")

    @property
    def serves_docs(self) -> bool:
        return self.docs_enabled if self.docs_enabled is not None else self.for_development

    @property
    def effective_log_format(self) -> Literal["text", "json"]:
        if self.log_format is not None:
            return self.log_format
        return "text" if self.for_development else "json"

    @model_validator(mode="after")
    def _refuse_weak_secret_outside_local(self) -> "Settings":
        if self.for_development:
            return self
        for name, key, example in (
            ("SECRET_KEY", self.secret_key, EXAMPLE_SECRET_KEY),
            ("AUDIT_SIGNING_KEY", self.audit_signing_key, EXAMPLE_AUDIT_SIGNING_KEY),
        ):
            if key == example:
                raise ValueError(f"{name} is the example key; set a real one for ENVIRONMENT={self.environment}")
            if len(key) < MIN_SECRET_KEY_LENGTH:
                raise ValueError(f"{name} must be at least {MIN_SECRET_KEY_LENGTH} characters outside local and test")
        return self

    @model_validator(mode="after")
    def _require_allowed_hosts_outside_local(self) -> "Settings":
        if not self.for_development and not self.allowed_hosts:
            raise ValueError(
                'ALLOWED_HOSTS must list the host names clients use, e.g. ["api.example.com"] (["*"] for any), '
                f"for ENVIRONMENT={self.environment}"
            )
        return self

    @model_validator(mode="after")
    def _require_smtp_outside_local(self) -> "Settings":
        # Password recovery and email confirmation would write their links to a file on the server.
        if not self.for_development and not self.smtp_host:
            raise ValueError(
                f"SMTP_HOST (with SMTP_PORT, SMTP_TLS, SMTP_USER, SMTP_PASSWORD and MAIL_FROM) must be set for "
                f"ENVIRONMENT={self.environment}: password-recovery and confirmation links are sent by mail"
            )
        return self

    def database_url(self, name: str) -> str:
        """The URL of the named database (src/core/databases.py)."""
        return str(getattr(self, DATABASES[name].url_setting))

    def database_urls(self) -> dict[str, str]:
        """Every named database's URL, by name."""
        return {name: self.database_url(name) for name in DATABASES}

    @model_validator(mode="after")
    def _require_database_urls_outside_local(self) -> "Settings":
        # The defaults are SQLite files on the server's own disk: a deploy that forgot one would keep its data there.
        unset = [setting.upper() for setting in _URL_SETTINGS if setting not in self.model_fields_set]
        if not self.for_development and unset:
            raise ValueError(
                f"{' and '.join(unset)} must be set for ENVIRONMENT={self.environment}: outside local and test no"
                " database defaults to a SQLite file under var/"
            )
        return self

    @model_validator(mode="after")
    def _refuse_one_database_under_two_names(self) -> "Settings":
        # They would share one alembic_version table: the second database would look migrated and have no tables.
        seen: dict[tuple[object, ...], str] = {}
        for name, url in self.database_urls().items():
            identity = _database_identity(url)
            if identity is None:
                continue
            if identity in seen:
                shown = make_url(url).render_as_string(hide_password=True)
                raise ValueError(
                    f"{DATABASES[seen[identity]].url_setting.upper()} and {DATABASES[name].url_setting.upper()}"
                    f" point at the same database ({shown}); give each its own database"
                )
            seen[identity] = name
        return self

    @model_validator(mode="after")
    def _refuse_weak_password_hashing(self) -> "Settings":
        # OWASP's floor for argon2id is 19 MiB with 2 passes; cheaper hashing only keeps test runs fast.
        if self.environment != "test" and (self.password_hash_memory_kib < 19456 or self.password_hash_time_cost < 2):
            raise ValueError(
                "PASSWORD_HASH_MEMORY_KIB below 19456 or PASSWORD_HASH_TIME_COST below 2 is allowed only with "
                f"ENVIRONMENT=test, not {self.environment}"
            )
        return self


def _url_field(name: str) -> Any:
    # DATABASE_URL, the name most tools use, is read as the first database's.
    aliases = ("DATABASE_URL",) if name == next(iter(DATABASES)) else ()
    return Field(
        default=_sqlite_url(f"{name}.db"),
        validation_alias=AliasChoices(DATABASES[name].url_setting.upper(), *aliases),
    )


# The settings with one URL field per entry of DATABASES: adding a database adds its setting.
_url_fields: dict[str, Any] = {database.url_setting: (str, _url_field(name)) for name, database in DATABASES.items()}
_SettingsWithDatabases = create_model("Settings", __base__=Settings, **_url_fields)


def settings_file() -> Path:
    return PROJECT_ROOT / os.environ.get("SETTINGS_FILE", "config/local.env")


def load_settings(env_file: Path | None) -> Settings:
    """The settings from the environment, ``env_file`` and the defaults."""
    return _SettingsWithDatabases(_env_file=env_file)


@cache
def get_settings() -> Settings:
    return load_settings(settings_file())
