"""Settings from the environment (``TROTH_*``) with the embedded defaults.

TROTH_DATABASE_URL   sqlite:///troth.db (default) or postgresql+psycopg://user@host/db
TROTH_KEYS_DIR       where troth keeps its secrets (created 0700); default ./troth-keys
TROTH_KEK            the key-encryption key, base64 of 32 bytes; else TROTH_KEK_FILE;
                     else TROTH_KEYS_DIR/kek.key, created on first use
TROTH_AUDIT_HEADS    where the audit log's signed tree heads go; keep it apart from the
                     database (another disk, or shipped off the host);
                     default ./troth-audit/heads.jsonl
TROTH_ERASURES       the list of erased subjects (keyed hashes) that a restore replays;
                     default ./troth-audit/erasures.jsonl
TROTH_ORIGINS        comma-separated site origins allowed to call the API (CORS)
TROTH_THREADS        request threads per worker (default 8)
TROTH_DATASETS       the dataset annotations of the service's own databases (data subject
                     rights); default: datasets.yaml beside the policy, if there is one
TROTH_TRUST_PROXY    honour X-Forwarded-Proto from a TLS-terminating proxy (default false)
TROTH_TRACKING_RATE_PER_MINUTE  tracking pixel hits, and separately /t/e requests, each
                     client network (IPv4 /24, IPv6 /48) may send a minute (default 600)

Data subject requests (F5):
TROTH_PUBLIC_URL     the address people reach troth at, for links in e-mails (download
                     links); default: the policy's url. Never taken from a request's Host.
TROTH_SMTP_URL       smtp://user:password@host:587 (STARTTLS), smtps://... (TLS), or
                     smtp://host:25?tls=none (a local relay); unset: mail goes to the outbox
TROTH_OUTBOX         where mail goes without SMTP, one .eml per message (0600);
                     default ./troth-outbox
TROTH_MAIL_FROM      the sender of request e-mails; default: the policy controller's e-mail
TROTH_RIGHTS_AUTO_APPROVE  request kinds approved without a privacy officer once the
                     identity is verified (comma-separated; default access,portability,
                     restriction,objection; erasure and rectification wait for an officer)
TROTH_RIGHTS_WORKER  run request jobs inside `troth serve` too (default true); more
                     workers: `troth rights work`
TROTH_RIGHTS_CODE_MINUTES    how long an e-mailed verification code is valid (default 30)
TROTH_RIGHTS_CODE_ATTEMPTS   wrong codes before it is void (default 5)
TROTH_RIGHTS_DOWNLOAD_HOURS  how long a download link works (default 72; once only)
TROTH_RIGHTS_LEASE_SECONDS   a worker's lease on a job; a crashed worker's job is taken
                     over after it (default 300)
TROTH_RIGHTS_MAX_ATTEMPTS    tries per job before it is marked failed (default 5)
TROTH_RIGHTS_KEEP_DAYS       days a closed request keeps the identities it was made with
                     (sealed; for `troth rights verify-erasure`); then they are dropped and
                     only the record of the request stays (default 90)
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["Settings"]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TROTH_", extra="ignore")

    database_url: str = "sqlite:///troth.db"
    keys_dir: Path = Path("troth-keys")
    kek: str | None = None
    kek_file: Path | None = None
    audit_heads: Path = Path("troth-audit") / "heads.jsonl"
    erasures: Path = Path("troth-audit") / "erasures.jsonl"
    origins: str = ""
    max_body_bytes: int = Field(default=16_384, ge=1024)
    write_rate_per_minute: int = Field(default=120, ge=1)
    tracking_rate_per_minute: int = Field(default=600, ge=1)
    threads: int = Field(default=8, ge=1, le=256)  # request threads per worker
    datasets: Path | None = None
    trust_proxy: bool = False  # honour X-Forwarded-Proto (behind a TLS-terminating proxy)
    public_url: str = ""
    smtp_url: str | None = None
    outbox: Path = Path("troth-outbox")
    mail_from: str | None = None
    rights_auto_approve: str = "access,portability,restriction,objection"
    rights_worker: bool = True
    rights_code_minutes: int = Field(default=30, ge=1, le=24 * 60)
    rights_code_attempts: int = Field(default=5, ge=1, le=20)
    rights_download_hours: int = Field(default=72, ge=1, le=24 * 30)
    rights_lease_seconds: int = Field(default=300, ge=5)
    rights_max_attempts: int = Field(default=5, ge=1, le=100)
    rights_keep_days: int = Field(default=90, ge=1)

    def auto_approve_kinds(self) -> frozenset[str]:
        return frozenset(k.strip() for k in self.rights_auto_approve.split(",") if k.strip())

    def origin_list(self) -> list[str]:
        return [o.strip().rstrip("/") for o in self.origins.split(",") if o.strip()]
