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
    threads: int = Field(default=8, ge=1, le=256)  # request threads per worker
    datasets: Path | None = None
    trust_proxy: bool = False  # honour X-Forwarded-Proto (behind a TLS-terminating proxy)

    def origin_list(self) -> list[str]:
        return [o.strip().rstrip("/") for o in self.origins.split(",") if o.strip()]
