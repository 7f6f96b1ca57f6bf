"""One typed settings object, read from environment variables and an optional `.env` file.

Every setting is documented in docs/configuration.md; names are `KEFU_<FIELD>` except the two
connection URLs, which keep the conventional `MYSQL_URL` / `REDIS_URL`. The environment wins over
the file; the file is `KEFU_ENV_FILE`, else the checkout's `.env` (never the current directory's).
"""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    DotEnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from kefu.paths import default_data_dir, default_env_file


class SettingError(ValueError):
    """A setting kefu cannot use, named with its value and what is allowed (`kefu` exits with 2)."""

    def __init__(self, setting: str, value: object, allowed: str) -> None:
        super().__init__(f"{setting}={value!r}: {allowed}")
        self.setting, self.value, self.allowed = setting, value, allowed


def env_file() -> Path | None:
    """The `.env` file settings are read from, or None. `KEFU_ENV_FILE` must name an existing file."""
    named = os.environ.get("KEFU_ENV_FILE")
    if named:
        path = Path(named).expanduser()
        if not path.is_file():
            raise SettingError("KEFU_ENV_FILE", named, "must name an existing file")
        return path.resolve()
    default = default_env_file()
    return default if default is not None and default.is_file() else None


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="KEFU_", extra="ignore")

    env: Literal["dev", "production"] = "dev"
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    workers: int = Field(1, ge=1)
    data_dir: Path = Field(default_factory=default_data_dir)

    mysql_url: str | None = Field(None, validation_alias=AliasChoices("MYSQL_URL", "KEFU_MYSQL_URL"))
    redis_url: str | None = Field(None, validation_alias=AliasChoices("REDIS_URL", "KEFU_REDIS_URL"))
    redis_prefix: str = "kefu:"
    redis_pool_size: int = 64

    user_token_ttl: int = 7 * 24 * 3600
    agent_token_ttl: int = 12 * 3600
    heartbeat_timeout: float = 40.0
    max_message_bytes: int = 65536
    max_frame_bytes: int = 262144
    rate_per_sec: float = 10.0
    rate_burst: int = 30
    error_strikes: int = 10
    send_queue: int = 512
    send_queue_bytes: int = Field(1_048_576, ge=65536)
    dedupe_ttl: int = 24 * 3600

    writer_batch: int = 500
    writer_retry_max: float = 5.0
    writer_claim_idle_ms: int = Field(10000, ge=100)

    wechat_mode: Literal["sandbox", "real"] = "sandbox"
    wechat_api_base: str = "https://api.weixin.qq.com"
    wechat_mp_base: str = "https://mp.weixin.qq.com"
    mp_appid: str = ""
    mp_secret: str = ""
    oa_appid: str = ""
    oa_secret: str = ""
    oa_token: str = ""
    oa_aes_key: str = ""

    api_key: str = ""
    push_host: str = "127.0.0.1"
    push_port: int = Field(5678, ge=0, le=65535)
    push_secret: str = ""
    push_max_line: int = Field(65536, ge=64)
    push_idle_timeout: float = Field(60.0, gt=0)
    qr_expire_seconds: int = Field(300, ge=1, le=2_592_000)

    # -- pushes to any web page (docs/push.md) --
    push_bind_secret: str = ""  # HS256 key of the bind tokens a backend mints; empty: token binds off
    push_bind_audience: str = Field("kefu", min_length=1, max_length=200)
    push_seed_binds: bool = False  # bare-uid and {"type":"init","task_id"} binds: anyone knowing an id

    # -- abuse limits (docs/security.md) --
    callback_window: int = Field(300, ge=1, le=86_400)
    oa_allow_plain: bool = False
    login_free_failures: int = Field(5, ge=1)
    login_free_failures_ip: int = Field(20, ge=1)
    login_window: int = Field(900, ge=1)
    login_delay: float = Field(1.0, gt=0)
    login_delay_max: float = Field(300.0, gt=0)
    password_hash_concurrency: int = Field(2, ge=1, le=64)
    password_hash_queue: int = Field(64, ge=0)
    agent_recheck_interval: float = Field(30.0, gt=0)
    proxies_count: int = Field(0, ge=0)
    real_ip_header: str = ""
    forwarded_secret: str = ""

    # -- anonymous load (docs/security.md "Anonymous load") --
    max_sockets: int = Field(10_000, ge=1)  # per process, /ws and /ws/qr together
    max_qr_sockets: int = Field(2_000, ge=1)  # per process, of those: QR page sockets
    max_sockets_per_ip: int = Field(100, ge=1)  # per process and client address (IPv6: per /64)
    qr_bind_timeout: float = Field(30.0, gt=0)
    request_timeout: float = Field(15.0, gt=0)  # the whole request head + body, from its first byte
    keep_alive_timeout: float = Field(75.0, gt=0)
    # The listening socket's accept queue (Sanic's default is 100): a reconnect storm of thousands
    # of sockets arrives within milliseconds. Linux caps it at net.core.somaxconn.
    backlog: int = Field(4096, ge=1, le=65535)
    request_max_header_size: int = Field(8192, ge=1024, le=16384)
    qrcode_per_minute: int = Field(20, ge=1)  # GET /qrcode per client address
    qrcode_live_per_ip: int = Field(50, ge=1)  # unexpired QR codes per client address

    # -- operations: logs, metrics, readiness (docs/operations.md) --
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["text", "json"] = "text"
    access_log: bool = False
    metrics_host: str = "127.0.0.1"
    metrics_port: int = Field(9464, ge=0, le=65535)
    metrics_dir: Path | None = None
    ready_timeout: float = Field(1.0, gt=0, le=30)

    # -- the team console (docs/console.md) --
    auto_assign: bool = True
    assign_limit: int = Field(5, ge=0, le=10_000)
    typing_interval: float = Field(2.0, ge=0.1, le=60)
    avatar_max_bytes: int = Field(131_072, ge=1024, le=1_048_576)

    # -- pictures in chat (docs/protocol.md §11) --
    media_store: Literal["auto", "local", "database"] = "auto"
    media_dir: Path | None = None
    media_secret: str = ""
    media_url_ttl: int = Field(600, ge=1, le=7 * 86_400)
    media_retention_days: int = Field(180, ge=0, le=36_500)
    image_max_bytes: int = Field(10 * 1024 * 1024, ge=16 * 1024, le=15 * 1024 * 1024)
    image_max_pixels: int = Field(40_000_000, ge=10_000, le=200_000_000)
    image_max_side: int = Field(2048, ge=320, le=8192)

    # -- WeChat's customer-service channel (docs/wechat-channel.md) --
    mp_token: str = ""
    mp_aes_key: str = ""
    mp_allow_plain: bool = False
    subscribe_template_id: str = Field("", max_length=128)
    subscribe_page: str = "pages/chat/chat"
    subscribe_data: str = '{"thing1": "{text}", "time2": "{time}"}'
    subscribe_state: Literal["formal", "trial", "developer"] = "formal"

    @classmethod
    def settings_customise_sources(
        cls, settings_cls: type[BaseSettings], init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource, dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Arguments, then the environment, then the `.env` file `env_file()` picks."""
        return (init_settings, env_settings, DotEnvSettingsSource(settings_cls, env_file=env_file()),
                file_secret_settings)

    @field_validator("subscribe_data")
    @classmethod
    def _template_data(cls, v: str) -> str:
        import json

        try:
            data = json.loads(v)
        except ValueError:
            raise ValueError("must be a JSON object of keyword → text") from None
        if not isinstance(data, dict) or not data or not all(
                isinstance(k, str) and isinstance(t, str) for k, t in data.items()):
            raise ValueError('must be a JSON object of keyword → text, e.g. {"thing1": "{text}"}')
        return v

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper(cls, v: object) -> object:
        return v.upper() if isinstance(v, str) else v

    @field_validator("data_dir", "metrics_dir", "media_dir")
    @classmethod
    def _absolute(cls, v: Path | None) -> Path | None:
        if v is not None and not v.expanduser().is_absolute():
            raise ValueError("must be an absolute path (a relative one would follow the directory "
                             "a command runs in)")
        return v.expanduser() if v is not None else None

    @model_validator(mode="after")
    def _check(self) -> Settings:
        if self.workers > 1 and not self.redis_url:
            raise ValueError("KEFU_WORKERS > 1 needs REDIS_URL: workers share state through Redis")
        if self.env == "production" and self.wechat_mode == "sandbox":
            raise ValueError(
                "the WeChat sandbox is dev-only; set KEFU_WECHAT_MODE=real with KEFU_MP_APPID/"
                "KEFU_MP_SECRET for production"
            )
        if self.wechat_mode == "real" and not (self.mp_appid and self.mp_secret):
            raise ValueError("KEFU_WECHAT_MODE=real needs KEFU_MP_APPID and KEFU_MP_SECRET")
        if self.push_port and not self.push_secret and not is_loopback(self.push_host):
            raise ValueError(
                f"KEFU_PUSH_HOST={self.push_host} is not a loopback address: the push port has no "
                "other authentication, so set KEFU_PUSH_SECRET (every line must then carry it)"
            )
        if self.push_bind_secret and len(self.push_bind_secret.encode()) < 32:
            raise ValueError("KEFU_PUSH_BIND_SECRET must be at least 32 bytes (RFC 7518: an HS256 key "
                             "as long as the hash); make one with `openssl rand -hex 32`")
        if self.login_delay_max < self.login_delay:
            raise ValueError("KEFU_LOGIN_DELAY_MAX must be at least KEFU_LOGIN_DELAY")
        if self.oa_aes_key and len(self.oa_aes_key) != 43:
            raise ValueError("KEFU_OA_AES_KEY (the EncodingAESKey) must be 43 characters")
        if self.mp_aes_key and len(self.mp_aes_key) != 43:
            raise ValueError("KEFU_MP_AES_KEY (the EncodingAESKey) must be 43 characters")
        if self.metrics_port and self.metrics_port in (self.port, self.push_port):
            raise ValueError(f"KEFU_METRICS_PORT={self.metrics_port} is already KEFU_PORT or "
                             "KEFU_PUSH_PORT: /metrics needs a port of its own (0 turns it off)")
        return self

    @property
    def database_url(self) -> str:
        """SQLAlchemy async URL: MySQL/MariaDB through aiomysql, else the embedded SQLite file."""
        if self.mysql_url:
            return to_driver_url(self.mysql_url, "mysql+aiomysql")
        return f"sqlite+aiosqlite:///{(self.data_dir / 'kefu.sqlite3').resolve()}"

    @property
    def sync_database_url(self) -> str:
        """The same database for Alembic, which migrates through a synchronous driver."""
        if self.mysql_url:
            return to_driver_url(self.mysql_url, "mysql+pymysql")
        return f"sqlite:///{(self.data_dir / 'kefu.sqlite3').resolve()}"


def is_loopback(host: str) -> bool:
    """`127.0.0.1`, `::1`, `localhost`: reachable only from this machine."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # any other name may resolve to a public address


def to_driver_url(url: str, driver: str) -> str:
    """`mysql://u:p@h/db` → `<driver>://u:p@h/db?charset=utf8mb4` (emoji need utf8mb4)."""
    _, _, rest = url.partition("://")
    if "charset=" not in rest:
        rest += ("&" if "?" in rest else "?") + "charset=utf8mb4"
    return f"{driver}://{rest}"
