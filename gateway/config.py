"""YAML configuration -> frozen dataclasses (``config_types.py``).

Every problem names its YAML path (``nodes[2].models: ...``) and all problems
are reported at once, because an operator fixing a config one error per
restart is an operator who stops validating. Unknown keys are errors: a typo
such as ``fallback`` for ``fallbacks`` must not silently disable failover.
"""

from __future__ import annotations

import os
import re
from dataclasses import replace
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, Callable, Mapping

import yaml

from gateway.config_types import (
    Account,
    Admin,
    CircuitBreaker,
    Config,
    ConfigError,
    Limits,
    Listen,
    Logging,
    MODEL_KINDS,
    PRICE_FIELDS,
    MockOptions,
    Model,
    Node,
    PROVIDERS,
    Price,
    REDIS_URL_SCHEMES,
    Routing,
    STATE_BACKENDS,
    STRATEGIES,
    State,
    Timeouts,
    Upstream,
    normalize_model_id,
)

__all__ = ["Account", "Admin", "CircuitBreaker", "Config", "ConfigError", "Limits", "Listen", "Logging",
           "MODEL_KINDS", "MockOptions", "PRICE_FIELDS", "Model", "Node", "PROVIDERS", "Price", "REDIS_URL_SCHEMES",
           "Routing", "STATE_BACKENDS", "STRATEGIES", "State", "Timeouts", "Upstream", "normalize_model_id",
           "load_config", "parse_config"]

_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def load_config(path: str | os.PathLike[str], env: Mapping[str, str] | None = None) -> Config:
    """Read, interpolate and validate a config file; raise ConfigError listing every problem."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read: {exc.strerror}"]) from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError([f"{path}: invalid YAML: {exc}"]) from None
    config = parse_config(raw if raw is not None else {}, os.environ if env is None else env)
    object.__setattr__(config, "source", str(path))
    return config


def parse_config(raw: Any, env: Mapping[str, str]) -> Config:
    reader = _Reader(env)
    config = reader.config(raw)
    if reader.problems:
        raise ConfigError(reader.problems, reader.warnings)
    assert config is not None
    object.__setattr__(config, "warnings", tuple(reader.warnings))
    return config


class _Reader:
    """Walks the YAML tree, collecting problems instead of stopping at the first."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self.env = env
        self.problems: list[str] = []
        self.warnings: list[str] = []

    def fail(self, path: str, message: str) -> None:
        self.problems.append(f"{path or '(top)'}: {message}")

    # -- primitives ---------------------------------------------------------

    def mapping(self, value: Any, path: str, allowed: tuple[str, ...]) -> dict[str, Any]:
        if value is None:
            return {}
        if not isinstance(value, dict):
            self.fail(path, f"must be a mapping, not {type(value).__name__}")
            return {}
        for key in value:
            if key not in allowed:
                self.fail(_join(path, str(key)), f"unknown key (allowed: {', '.join(allowed)})")
        return value

    def string(self, value: Any, path: str, default: str | None = None, required: bool = False) -> str:
        if value is None:
            if required:
                self.fail(path, "is required")
            return default or ""
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            self.fail(path, f"must be a string, not {type(value).__name__}")
            return default or ""
        return self.interpolate(str(value), path)

    def interpolate(self, text: str, path: str) -> str:
        def substitute(match: re.Match[str]) -> str:
            name, default = match.group(1), match.group(2)
            if name in self.env:
                return self.env[name]
            if default is not None:
                return default
            self.fail(path, f"environment variable {name} is not set (use ${{{name}:-default}} for a default)")
            return ""

        return _VAR.sub(substitute, text) if "${" in text else text

    def number(self, value: Any, path: str, default: float, cast: Callable[[Any], Any] = float,
               minimum: float | None = None, maximum: float | None = None) -> Any:
        if value is None:
            return default
        if isinstance(value, str):
            value = self.interpolate(value, path)
        if isinstance(value, bool):
            self.fail(path, "must be a number, not a boolean")
            return default
        try:
            number = cast(value)
            if cast is int and float(value) != number:
                raise ValueError
        except (TypeError, ValueError):
            self.fail(path, f"must be {'an integer' if cast is int else 'a number'}, not {value!r}")
            return default
        if minimum is not None and number < minimum:
            self.fail(path, f"must be at least {minimum}, not {number}")
        if maximum is not None and number > maximum:
            self.fail(path, f"must be at most {maximum}, not {number}")
        return number

    def boolean(self, value: Any, path: str, default: bool) -> bool:
        if value is None:
            return default
        if isinstance(value, str):
            lowered = self.interpolate(value, path).strip().lower()
            if lowered in ("true", "yes", "on", "1"):
                return True
            if lowered in ("false", "no", "off", "0", ""):
                return False
        if not isinstance(value, bool):
            self.fail(path, f"must be true or false, not {value!r}")
            return default
        return value

    def money(self, value: Any, path: str, default: Decimal | None = None) -> Decimal | None:
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            self.fail(path, f"must be a decimal amount, not {value!r}")
            return default
        text = self.interpolate(value, path) if isinstance(value, str) else repr(value)
        try:
            amount = Decimal(text)
        except InvalidOperation:
            self.fail(path, f"must be a decimal amount, not {value!r}")
            return default
        if not amount.is_finite() or amount < 0:
            self.fail(path, f"must be a non-negative amount, not {value!r}")
            return default
        return amount

    def string_list(self, value: Any, path: str) -> tuple[str, ...]:
        if value is None:
            return ()
        if not isinstance(value, list):
            self.fail(path, "must be a list")
            return ()
        return tuple(self.string(item, f"{path}[{i}]", required=True) for i, item in enumerate(value))

    def choice(self, value: Any, path: str, default: str, choices: tuple[str, ...]) -> str:
        text = self.string(value, path, default)
        if text not in choices:
            self.fail(path, f"must be one of {', '.join(choices)}, not {text!r}")
            return default
        return text

    # -- sections -----------------------------------------------------------

    def config(self, raw: Any) -> Config | None:
        top = self.mapping(raw, "", ("listen", "admin", "limits", "state", "upstream", "routing",
                                     "circuit_breaker", "logging", "nodes", "models", "accounts"))
        listen_raw = self.mapping(top.get("listen"), "listen", ("host", "port", "metrics_port"))
        metrics_port = listen_raw.get("metrics_port")
        listen = Listen(self.string(listen_raw.get("host"), "listen.host", "127.0.0.1"),
                        self.number(listen_raw.get("port"), "listen.port", 8080, int, 0, 65535),
                        None if metrics_port is None else self.number(metrics_port, "listen.metrics_port", 0, int,
                                                                      0, 65535))
        admin_raw = self.mapping(top.get("admin"), "admin", ("token",))
        admin = Admin(self.string(admin_raw.get("token"), "admin.token", ""))
        limits_raw = self.mapping(top.get("limits"), "limits", ("max_body_bytes", "max_inflight", "stream_heartbeat_s",
                                                                "max_event_bytes"))
        limits = Limits(self.number(limits_raw.get("max_body_bytes"), "limits.max_body_bytes", Limits.max_body_bytes, int, 1024),
                        self.number(limits_raw.get("max_inflight"), "limits.max_inflight", Limits.max_inflight, int, 1),
                        self.number(limits_raw.get("stream_heartbeat_s"), "limits.stream_heartbeat_s",
                                    Limits.stream_heartbeat_s, float, 0),
                        self.number(limits_raw.get("max_event_bytes"), "limits.max_event_bytes", Limits.max_event_bytes,
                                    int, 1024))
        state_raw = self.mapping(top.get("state"), "state", ("dir", "snapshot_interval_s", "backend", "redis_url",
                                                             "redis_prefix", "reservation_ttl_s", "fsync_interval_s",
                                                             "usage_retention_days", "usage_batch_s"))
        state = self.state(state_raw)
        upstream_raw = self.mapping(top.get("upstream"), "upstream",
                                    ("max_clients", "queue_timeout_s") + _TIMEOUT_KEYS)
        default_timeouts = self.timeouts(upstream_raw, "upstream", Timeouts())
        upstream = Upstream(self.number(upstream_raw.get("max_clients"), "upstream.max_clients", 1000, int, 1, 100000),
                            self.number(upstream_raw.get("queue_timeout_s"), "upstream.queue_timeout_s",
                                        Upstream.queue_timeout_s, float, 0),
                            default_timeouts)
        routing_raw = self.mapping(top.get("routing"), "routing", ("strategy", "max_attempts"))
        routing = Routing(self.choice(routing_raw.get("strategy"), "routing.strategy", "least-latency", STRATEGIES),
                          self.number(routing_raw.get("max_attempts"), "routing.max_attempts", 3, int, 1, 100))
        breaker_raw = self.mapping(top.get("circuit_breaker"), "circuit_breaker", ("failure_threshold", "open_s"))
        breaker = CircuitBreaker(
            self.number(breaker_raw.get("failure_threshold"), "circuit_breaker.failure_threshold", 5, int, 1),
            self.number(breaker_raw.get("open_s"), "circuit_breaker.open_s", 30.0, float, 0))
        logging_raw = self.mapping(top.get("logging"), "logging", ("access_log", "level"))
        logging_ = Logging(self.boolean(logging_raw.get("access_log"), "logging.access_log", True),
                           self.choice(logging_raw.get("level"), "logging.level", "info",
                                       ("debug", "info", "warning", "error")))
        models = self.models(top.get("models"))
        nodes = self.nodes(top.get("nodes"), default_timeouts, models)
        if self.warnings:  # nodes were left out
            models = self.served_models(models, nodes)
        accounts = self.accounts(top.get("accounts"))
        if self.problems:
            return None
        return Config(listen, admin, limits, state, upstream, routing, breaker, logging_, nodes, models, accounts)

    def state(self, raw: dict[str, Any]) -> State:
        backend = self.choice(raw.get("backend"), "state.backend", "embedded", STATE_BACKENDS)
        redis_url = self.string(raw.get("redis_url"), "state.redis_url", "").strip()
        if backend == "redis":
            if not redis_url:
                self.fail("state.redis_url", "is required with state.backend: redis (e.g. redis://127.0.0.1:6379/0)")
            elif not redis_url.startswith(REDIS_URL_SCHEMES):
                self.fail("state.redis_url", f"must start with {', '.join(REDIS_URL_SCHEMES)}, "
                                             f"not {redis_url.split(':', 1)[0]!r}")
        prefix = self.string(raw.get("redis_prefix"), "state.redis_prefix", "infermesh:")
        if not prefix or len(prefix) > 64 or _has_control(prefix) or " " in prefix:
            self.fail("state.redis_prefix", "must be 1 to 64 characters without spaces or control characters")
        return State(self.string(raw.get("dir"), "state.dir", "data"),
                     self.number(raw.get("snapshot_interval_s"), "state.snapshot_interval_s", 30.0, float, 0.1),
                     backend, redis_url, prefix,
                     self.number(raw.get("reservation_ttl_s"), "state.reservation_ttl_s", 60.0, float, 1, 86400),
                     self.number(raw.get("fsync_interval_s"), "state.fsync_interval_s", 0.1, float, 0.001, 5),
                     self.number(raw.get("usage_retention_days"), "state.usage_retention_days", 400, int, 1, 100_000),
                     self.number(raw.get("usage_batch_s"), "state.usage_batch_s", 0.2, float, 0.001, 10))

    def timeouts(self, raw: dict[str, Any], path: str, base: Timeouts) -> Timeouts:
        values = {key: self.number(raw.get(key), _join(path, key), getattr(base, key), float, 0.001)
                  for key in _TIMEOUT_KEYS}
        return Timeouts(**values)

    def models(self, raw: Any) -> dict[str, Model]:
        models: dict[str, Model] = {}
        if raw is None:
            self.fail("models", "is required: at least one model")
            return models
        if not isinstance(raw, dict):
            self.fail("models", "must be a mapping of model id -> settings")
            return models
        seen: dict[str, str] = {}
        for model_id, spec in raw.items():
            path = f"models.{model_id}"
            spec = self.mapping(spec, path, ("kind", "aliases", "price", "fallbacks", "hedge_after_ms"))
            model_id = str(model_id)
            if not model_id or _has_control(model_id):
                self.fail(path, "invalid model id")
                continue
            kind = self.choice(spec.get("kind"), f"{path}.kind", "chat", MODEL_KINDS)
            price_raw = self.mapping(spec.get("price"), f"{path}.price", PRICE_FIELDS)
            if "price" not in spec:
                self.fail(f"{path}.price", "is required")
            price = Price(self.money(price_raw.get("input"), f"{path}.price.input", Decimal(0)) or Decimal(0),
                          self.money(price_raw.get("output"), f"{path}.price.output", Decimal(0)) or Decimal(0),
                          *(self.money(price_raw.get(name), f"{path}.price.{name}") for name in PRICE_FIELDS[2:]))
            aliases = self.string_list(spec.get("aliases"), f"{path}.aliases")
            hedge = spec.get("hedge_after_ms")
            model = Model(model_id, kind, aliases, price,
                          self.string_list(spec.get("fallbacks"), f"{path}.fallbacks"),
                          None if hedge is None else self.number(hedge, f"{path}.hedge_after_ms", 0, int, 1))
            for name in (model_id,) + aliases:
                key = normalize_model_id(name)
                if seen.get(key, model_id) != model_id:
                    self.fail(path, f"{name!r} collides with {seen[key]!r} (ids match case-insensitively, '.' = '-')")
                seen[key] = model_id
            models[normalize_model_id(model_id)] = model
        for key, model in models.items():
            for i, fallback in enumerate(model.fallbacks):
                target = seen.get(normalize_model_id(fallback))
                if target is None:
                    self.fail(f"models.{model.id}.fallbacks[{i}]", f"unknown model {fallback!r}")
                elif normalize_model_id(target) == key:
                    self.fail(f"models.{model.id}.fallbacks[{i}]", "a model cannot fall back to itself")
        return models

    def served_models(self, models: dict[str, Model], nodes: tuple[Node, ...]) -> dict[str, Model]:
        """After nodes were left out: drop the models no node serves now, and fallbacks to them."""
        served = {key for node in nodes for key in node.models}
        dropped = [model.id for key, model in models.items() if key not in served]
        if dropped:
            self.warnings.append(f"models left out (no node with a key serves them): {', '.join(dropped)}")
        kept = {key: model for key, model in models.items() if key in served}
        index = {normalize_model_id(n): k for k, m in kept.items() for n in (m.id,) + m.aliases}
        return {key: replace(model, fallbacks=tuple(f for f in model.fallbacks if normalize_model_id(f) in index))
                for key, model in kept.items()}

    def nodes(self, raw: Any, default_timeouts: Timeouts, models: dict[str, Model]) -> tuple[Node, ...]:
        if not isinstance(raw, list) or not raw:
            self.fail("nodes", "is required: a list of at least one node")
            return ()
        aliases = {normalize_model_id(a): key for key, m in models.items() for a in m.aliases}
        nodes: list[Node] = []
        left_out: list[Node] = []  # api_key names an unset variable
        ids: set[str] = set()
        for i, spec in enumerate(raw):
            path = f"nodes[{i}]"
            spec = self.mapping(spec, path, ("id", "provider", "base_url", "api_key", "weight", "models",
                                             "responses", "headers", "mock") + _TIMEOUT_KEYS)
            node_id = self.string(spec.get("id"), f"{path}.id", required=True)
            if node_id in ids:
                self.fail(f"{path}.id", f"duplicate node id {node_id!r}")
            ids.add(node_id)
            provider = self.choice(spec.get("provider"), f"{path}.provider", "mock", PROVIDERS)
            base_url = self.string(spec.get("base_url"), f"{path}.base_url", required=provider != "mock").rstrip("/")
            if base_url and not base_url.startswith(("http://", "https://")):
                self.fail(f"{path}.base_url", f"must start with http:// or https://, not {base_url!r}")
            node_models: dict[str, str] = {}
            models_raw = spec.get("models")
            if isinstance(models_raw, list):  # shorthand: same id upstream
                models_raw = {str(m): str(m) for m in models_raw}
            if not isinstance(models_raw, dict) or not models_raw:
                self.fail(f"{path}.models", "is required: a mapping of public model id -> node model id")
                models_raw = {}
            for public, own in models_raw.items():
                key = normalize_model_id(str(public))
                key = aliases.get(key, key)
                if key not in models:
                    self.fail(f"{path}.models.{public}", "is not in the models catalogue")
                    continue
                if provider == "anthropic" and models[key].kind == "embedding":
                    self.fail(f"{path}.models.{public}", "anthropic nodes cannot serve embedding models")
                node_models[key] = self.string(own, f"{path}.models.{public}", required=True)
                if _has_control(node_models[key]) or "/.." in node_models[key]:
                    self.fail(f"{path}.models.{public}", "invalid node model id")
            headers_raw = self.mapping(spec.get("headers"), f"{path}.headers", tuple(spec.get("headers") or ()))
            headers = {str(k): self.string(v, f"{path}.headers.{k}") for k, v in headers_raw.items()}
            mock_raw = self.mapping(spec.get("mock"), f"{path}.mock", ("token_delay_ms", "embedding_dim"))
            unset = self.unset_key_variable(spec.get("api_key"))
            if unset:
                # Left out, not an error, so one example config serves any subset of providers; the rest of
                # the node is still checked so a typo shows before its key is set.
                self.warnings.append(f"nodes[{i}] ({node_id}) left out: {unset} is not set")
            mock = MockOptions(self.number(mock_raw.get("token_delay_ms"), f"{path}.mock.token_delay_ms", 0.0, float, 0),
                               self.number(mock_raw.get("embedding_dim"), f"{path}.mock.embedding_dim", 8, int, 1, 65536))
            node = Node(
                id=node_id, provider=provider, base_url=base_url,
                api_key="" if unset else self.string(spec.get("api_key"), f"{path}.api_key", ""),
                weight=self.number(spec.get("weight"), f"{path}.weight", 1, int, 1, 1000),
                models=node_models,
                responses=self.boolean(spec.get("responses"), f"{path}.responses", False),
                headers=headers,
                timeouts=self.timeouts(spec, path, default_timeouts),
                mock=mock,
            )
            (left_out if unset else nodes).append(node)
        if left_out and not nodes:
            self.fail("nodes", "no node can be used: set the api_key variable of at least one")
        served = {key for node in nodes + left_out for key in node.models}
        for key, model in models.items():
            if key not in served:
                self.fail(f"models.{model.id}", "no node serves this model")
        return tuple(nodes)

    def unset_key_variable(self, api_key: Any) -> str | None:
        """The first variable in ``api_key`` that is unset and has no default, if any."""
        if not isinstance(api_key, str):
            return None
        for match in _VAR.finditer(api_key):
            if match.group(1) not in self.env and match.group(2) is None:
                return match.group(1)
        return None

    def accounts(self, raw: Any) -> tuple[Account, ...]:
        if raw is None:
            return ()
        if not isinstance(raw, list):
            self.fail("accounts", "must be a list")
            return ()
        accounts: list[Account] = []
        ids: set[str] = set()
        for i, spec in enumerate(raw):
            path = f"accounts[{i}]"
            spec = self.mapping(spec, path, ("id", "balance_usd", "keys"))
            account_id = self.string(spec.get("id"), f"{path}.id", required=True)
            if account_id in ids:
                self.fail(f"{path}.id", f"duplicate account id {account_id!r}")
            ids.add(account_id)
            keys = self.string_list(spec.get("keys"), f"{path}.keys")
            for k, key in enumerate(keys):
                if len(key) < 16:
                    self.fail(f"{path}.keys[{k}]", "keys must be at least 16 characters")
            accounts.append(Account(account_id, self.money(spec.get("balance_usd"), f"{path}.balance_usd",
                                                           Decimal(0)) or Decimal(0), keys))
        return tuple(accounts)


_TIMEOUT_KEYS = ("connect_timeout_s", "first_byte_timeout_s", "idle_timeout_s", "request_timeout_s")


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _has_control(text: str) -> bool:
    return any(ord(ch) < 32 or ord(ch) == 127 for ch in text)
