"""config.toml: the operator's knobs, validated strictly so a typo stops start-up with a clear message."""

from __future__ import annotations

import os
import re
import tomllib
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from .errors import ConfigError
from .settings import BUILTIN, StepSettings

#: What ``[project] name`` may be: it starts every queue name, and shows in RabbitMQ's UI.
DEPLOYMENT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,39}")

#: Hosts that only this machine reaches.
LOOPBACK = frozenset({"127.0.0.1", "::1", "localhost"})

#: Where Conveyor looks for its configuration unless CONVEYOR_CONFIG says otherwise.
DEFAULT_CONFIG_PATH = "config.toml"


class _Section(BaseModel):
    # Strict: TOML already has types, so "5" for an integer is a mistake worth reporting.
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class ProjectSection(_Section):
    #: The deployment's name: every step queue starts with it (``<name>.<flow>.<Step>``), so two
    #: deployments on one RabbitMQ vhost never share a queue.
    name: str = "conveyor"
    #: Packages whose modules declare steps; each is imported recursively at start-up.
    flows: list[str] = ["flows"]

    @field_validator("name")
    @classmethod
    def _slug(cls, value: str) -> str:
        if value.lower() == "amq":
            raise ValueError("a name other than 'amq': RabbitMQ keeps queue names starting 'amq.' for itself")
        if not DEPLOYMENT_NAME.fullmatch(value):
            raise ValueError(
                "a short name of letters, digits, '-' and '_' (at most 40, starting with a letter or digit) "
                f"such as 'shop' or 'shop-staging', got {value!r}"
            )
        return value


class BrokerSection(_Section):
    kind: Literal["rabbitmq", "memory"] = "rabbitmq"
    #: One AMQP URL, or one per node of a cluster (each process tries them in an order of its own).
    url: str | list[str] = "amqp://guest:guest@127.0.0.1:5672/%2F"
    #: Seconds between AMQP heartbeats; broken connections are noticed within about twice this.
    heartbeat: int = Field(default=60, ge=0)
    #: RabbitMQ's management HTTP API: one URL, or one per node (tried in turn).
    management_url: str | list[str] = "http://127.0.0.1:15672"
    #: Queues are declared with x-max-priority; message priorities run from 0 to this.
    max_priority: int = Field(default=10, ge=1, le=255)
    #: ``quorum``: replicated step, delay and dead-letter queues (no message priorities on RabbitMQ 3.x).
    queue_type: Literal["classic", "quorum"] = "classic"
    #: Quorum queues: deliveries of one message (a crash or requeue counts) before it is dead-lettered.
    delivery_limit: int = Field(default=5, ge=1)

    @field_validator("url", "management_url")
    @classmethod
    def _some_urls(cls, value: str | list[str]) -> str | list[str]:
        urls = [value] if isinstance(value, str) else value
        if not urls or not all(url.strip() for url in urls):
            raise ValueError("a URL or a non-empty list of URLs")
        return value

    @property
    def urls(self) -> list[str]:
        """``url`` as a list: the AMQP URL of every node."""
        return [self.url] if isinstance(self.url, str) else list(self.url)

    @property
    def management_urls(self) -> list[str]:
        """``management_url`` as a list: every node's management API."""
        return [self.management_url] if isinstance(self.management_url, str) else list(self.management_url)


class GatewaySection(_Section):
    host: str = "127.0.0.1"
    port: int = Field(default=3000, ge=0, le=65535)
    max_body_size: int = Field(default=1024 * 1024, gt=0, description="bytes")
    #: Gateway processes sharing the port (a SO_REUSEPORT socket each); each has its own connections.
    workers: int = Field(default=1, ge=1, le=64)
    #: Seconds an Idempotency-Key's stored answer is kept; a repeat within them gets it again.
    idempotency_ttl: int = Field(default=24 * 3600, ge=1)
    #: Seconds after which a request still running under a key is taken for dead (its gateway
    #: was killed) and a repeat may run it again; keep it above the longest request.
    idempotency_lease: int = Field(default=30, ge=1)

    @property
    def on_loopback(self) -> bool:
        """Does the gateway listen on loopback only (the console is then open without a key)?"""
        return self.host in LOOPBACK

    def url(self) -> str:
        """Where a browser on this host reaches the gateway."""
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::", "") else self.host
        return f"http://[{host}]:{self.port}" if ":" in host else f"http://{host}:{self.port}"

    def console_line(self, *, api_key: str | None) -> str:
        """The log line that says where the console is, and who may open it."""
        if self.on_loopback:
            access = "open to this machine"
        elif api_key:
            access = "log in with the [admin] api_key"
        else:
            access = "closed: set [admin] api_key (or CONVEYOR_ADMIN_KEY) to open it"
        return f"Console: {self.url()}/_console/ ({access}); Prometheus metrics: {self.url()}/metrics"


class StateSection(_Section):
    #: The SQLite file, used when no ``url`` is set.
    path: str = "var/state.db"
    #: ``postgresql://user:password@host:port/dbname``: keep the state in PostgreSQL instead.
    url: str | None = None
    #: Connections each process keeps to PostgreSQL (default: its worker threads, plus two).
    pool_size: int | None = Field(default=None, ge=1, le=200)

    @field_validator("url")
    @classmethod
    def _postgres_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("postgresql://", "postgres://")):
            raise ValueError("a PostgreSQL URL such as 'postgresql://conveyor@localhost:5432/conveyor'")
        return value or None


class SchedulerSection(_Section):
    timezone: str = "UTC"

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"a time zone name such as 'UTC' or 'Europe/Paris', got {value!r}") from None
        return value


class AdminSection(_Section):
    #: Key for the gateway's /_admin endpoints; with none set they are disabled (404).
    api_key: str | None = Field(default=None, min_length=16)


class TracingSection(_Section):
    #: Record a trace of every request, enqueue, attempt and cron fire (the console's traces).
    enabled: bool = True
    #: The SQLite file traces go to while the state is on SQLite (a file of its own, so tracing
    #: never contends with the state's write lock); with ``[state] url`` they go to PostgreSQL.
    path: str = "var/traces.db"
    #: Hours a trace is kept once it ended; a failed one (dead letter, 5xx) is kept longer.
    retention_hours: float = Field(default=24, gt=0)
    failed_retention_hours: float = Field(default=168, gt=0)
    #: The most traces kept, whatever their age (the oldest go first).
    max_traces: int = Field(default=100_000, ge=100)
    #: Spans a process holds while the store catches up; beyond this they are dropped and counted.
    buffer: int = Field(default=20_000, ge=100)
    #: Also export spans over OTLP/HTTP to this collector (``OTEL_EXPORTER_OTLP_ENDPOINT`` sets it too).
    otlp_endpoint: str | None = None
    #: The ``service.name`` exported spans carry (default: ``[project] name``).
    service_name: str | None = None


class MetricsSection(_Section):
    #: Serve Prometheus metrics at ``GET /metrics`` on the gateway (same access rule as the console).
    enabled: bool = True
    #: Where processes share their metrics (prometheus-client's multi-process mode); relative to
    #: this file. A process that starts while no other process of the directory runs empties it.
    path: str = "var/metrics"


class ConsoleSection(_Section):
    #: Serve the web console under ``/_console`` on the gateway.
    enabled: bool = True


class LoggingSection(_Section):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    format: Literal["text", "json"] = "text"


class Config(_Section):
    """The whole of config.toml."""

    project: ProjectSection = ProjectSection()
    broker: BrokerSection = BrokerSection()
    gateway: GatewaySection = GatewaySection()
    state: StateSection = StateSection()
    scheduler: SchedulerSection = SchedulerSection()
    logging: LoggingSection = LoggingSection()
    admin: AdminSection = AdminSection()
    tracing: TracingSection = TracingSection()
    metrics: MetricsSection = MetricsSection()
    console: ConsoleSection = ConsoleSection()
    defaults: StepSettings = StepSettings()
    steps: dict[str, StepSettings] = {}
    #: The directory relative paths in the file are resolved against.
    root: str = "."

    def state_path(self) -> Path:
        return self.resolve(self.state.path)

    def trace_path(self) -> Path:
        """The SQLite file of the traces (used while the state is on SQLite)."""
        return self.resolve(self.tracing.path)

    def metrics_path(self) -> Path:
        """The directory the processes' Prometheus metrics are shared in."""
        return self.resolve(self.metrics.path)

    def resolve(self, path: str) -> Path:
        """``path`` against the config file's directory, unless it is absolute."""
        where = Path(path)
        return where if where.is_absolute() else Path(self.root) / where

    def step_defaults(self) -> StepSettings:
        """Built-in defaults < [defaults]: what a step gets before its code and its own section."""
        return BUILTIN.merged(self.defaults)

    def step_settings(self, name: str, code_settings: StepSettings | None = None) -> StepSettings:
        """Built-in defaults < [defaults] < settings in the step's code < [steps.<name>]."""
        settings = self.step_defaults()
        if code_settings is not None:
            settings = settings.merged(code_settings)
        if name in self.steps:
            settings = settings.merged(self.steps[name])
        return settings


def config_path() -> Path:
    return Path(os.environ.get("CONVEYOR_CONFIG", DEFAULT_CONFIG_PATH))


def load_config(path: str | Path | None = None) -> Config:
    """Read and validate config.toml; a missing file means all defaults.

    Environment variables override the file: ``CONVEYOR_BROKER_URL`` (several nodes' URLs
    comma separated), ``CONVEYOR_BROKER``
    (``rabbitmq`` or ``memory``), ``CONVEYOR_STATE_PATH``, ``CONVEYOR_ADMIN_KEY`` and
    ``CONVEYOR_NAME`` (``[project] name``).
    """
    explicit = path is not None or "CONVEYOR_CONFIG" in os.environ
    path = Path(path) if path is not None else config_path()
    if explicit and not path.exists():
        raise ConfigError(f"config file {path} does not exist (check CONVEYOR_CONFIG)")
    raw: dict[str, Any] = {}
    if path.exists():
        try:
            raw = tomllib.loads(path.read_text())
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    raw["root"] = str(path.resolve().parent)
    _apply_environment(raw)
    return parse_config(raw, source=str(path))


def parse_config(raw: dict[str, Any], *, source: str = "config.toml") -> Config:
    """Validate ``raw`` (config.toml's tables, plus ``root``); :class:`ConfigError` names ``source`` and each key."""
    try:
        return Config.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(_describe(source, exc)) from None


def _apply_environment(raw: dict[str, Any]) -> None:
    overrides = {
        "CONVEYOR_NAME": ("project", "name"),
        "CONVEYOR_BROKER_URL": ("broker", "url"),
        "CONVEYOR_BROKER": ("broker", "kind"),
        "CONVEYOR_STATE_PATH": ("state", "path"),
        "CONVEYOR_STATE_URL": ("state", "url"),
        "CONVEYOR_ADMIN_KEY": ("admin", "api_key"),
        "CONVEYOR_GATEWAY_HOST": ("gateway", "host"),
        "CONVEYOR_GATEWAY_PORT": ("gateway", "port"),
        "OTEL_EXPORTER_OTLP_ENDPOINT": ("tracing", "otlp_endpoint"),
        "OTEL_SERVICE_NAME": ("tracing", "service_name"),
    }
    for variable, (section, key) in overrides.items():
        if value := os.environ.get(variable):
            # The environment has text; a port is a number (anything else is left for validation to name).
            raw.setdefault(section, {})[key] = int(value) if key == "port" and value.isdigit() else value
    if (tracing := os.environ.get("CONVEYOR_TRACING")) is not None and tracing.strip():
        # "0"/"false"/"off" or "1"/"true"/"on": TOML has booleans, the environment has text.
        raw.setdefault("tracing", {})["enabled"] = tracing.strip().lower() not in ("0", "false", "off", "no")
    # Several nodes' URLs, comma separated: a list, as in config.toml.
    if "," in (urls := os.environ.get("CONVEYOR_BROKER_URL", "")):
        raw["broker"]["url"] = [url.strip() for url in urls.split(",") if url.strip()]


def _describe(source: str, exc: ValidationError) -> str:
    expected: dict[str, list[str]] = {}
    found: dict[str, Any] = {}
    unknown: list[str] = []
    for error in exc.errors():
        # Union members show up as extra location parts ("int", "literal['low',...]"): drop them.
        key = ".".join(str(part) for part in error["loc"] if not _is_type_tag(part))
        if error["type"] == "extra_forbidden":
            unknown.append(key)
            continue
        message = error["msg"].removeprefix("Value error, ").removeprefix("Input should be ")
        expected.setdefault(key, []).append(message)
        found[key] = error["input"]
    lines = [f"{source} is invalid:"]
    lines += [f"  {key}: unknown key (check its spelling against docs/configuration.md)" for key in unknown]
    for key, reasons in expected.items():
        got = f", got {found[key]!r}" if key in found else ""
        lines.append(f"  {key}: expected {' or '.join(dict.fromkeys(reasons))}{got}")
    return "\n".join(lines)


def _is_type_tag(part: object) -> bool:
    return isinstance(part, str) and (part in {"int", "str", "float", "bool", "none"} or "[" in part)
