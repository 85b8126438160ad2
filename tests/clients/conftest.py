"""Real agent CLIs (Claude Code, Codex, Gemini CLI) against a gateway whose nodes are real loopback upstreams.

One gateway per test module serves one public model per node kind, each
node a virtual node of the mock upstream process (``bench/mock_upstream.py``)
speaking that provider's wire format and checking requests as the real API
does: ``anthropic``, ``openai`` (Chat only), ``openai`` with
``responses: true``, and ``gemini``. Every node has its own key and its own
model id, so a test can tell that the node got the request in its own terms.

The CLIs run with a temporary HOME, only the variables they need, and their
update checks, telemetry and other traffic switched off: they talk to
127.0.0.1 only.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import pytest
import yaml

from tests.support.keys import TEST_KEY
from tests.conftest import MockUpstream, RunningGateway, base_config


@dataclass(frozen=True)
class NodeKind:
    kind: str  # test id
    provider: str
    model: str  # public model id the CLI asks for
    own_model: str  # the node's own id for it
    api_key: str
    responses: bool = False

    def config(self, upstream: MockUpstream, name: str) -> dict[str, Any]:
        suffix = "/v1" if self.provider == "openai" else ""
        node: dict[str, Any] = {"id": name, "provider": self.provider, "base_url": upstream.base(name, suffix),
                                "api_key": self.api_key, "models": {self.model: self.own_model}}
        if self.responses:
            node["responses"] = True
        return node


KINDS = [
    NodeKind("anthropic", "anthropic", "claude-sonnet-4-6", "claude-sonnet-4-6-20991231", "sk-node-anthropic"),
    # gpt-5.5: a model Codex knows, so it also offers its free-form (custom) apply_patch tool
    NodeKind("openai-chat", "openai", "gpt-5.5", "own-gpt-5.5", "sk-node-chat"),
    NodeKind("openai-responses", "openai", "gpt-4.1", "own-gpt-4.1", "sk-node-responses", responses=True),
    NodeKind("gemini", "gemini", "gemini-2.5-flash", "own-gemini-2.5-flash", "sk-node-gemini"),
]
MODELS = {
    "claude-sonnet-4-6": {"price": {"input": 3.00, "output": 15.00, "cached_input": 0.30}},
    "gpt-5.5": {"price": {"input": 1.25, "output": 10.00}},
    "gpt-4.1": {"price": {"input": 2.00, "output": 8.00}},
    "gemini-2.5-flash": {"price": {"input": 0.30, "output": 2.50}},
}


class CliGateway:
    """The module's gateway and its nodes; per run: what each node received and what was billed."""

    def __init__(self, gateway: RunningGateway, upstream: MockUpstream, prefix: str) -> None:
        self.gateway = gateway
        self.upstream = upstream
        self.prefix = prefix
        self.url = gateway.url

    def node(self, kind: NodeKind) -> str:
        return f"{self.prefix}-{kind.kind}"

    def requests(self, kind: NodeKind) -> int:
        return int(self.upstream.stats(self.node(kind))["requests"])

    def last(self, kind: NodeKind) -> dict[str, Any]:
        return self.upstream.stats(self.node(kind))["last"]

    def usage(self) -> list[dict[str, Any]]:
        return usage_records(self.url, TEST_KEY)


def usage_records(url: str, key: str) -> list[dict[str, Any]]:
    request = urllib.request.Request(url + "/v1/usage?limit=1000", headers={"Authorization": f"Bearer {key}"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())["data"]


@pytest.fixture(scope="module")
def cli_gateway(upstream: MockUpstream, tmp_path_factory: pytest.TempPathFactory,
                request: pytest.FixtureRequest) -> Iterator[CliGateway]:
    prefix = request.module.__name__.rsplit(".", 1)[-1].replace("_", "-")
    root = tmp_path_factory.mktemp(prefix)
    nodes = [kind.config(upstream, f"{prefix}-{kind.kind}") for kind in KINDS]
    config = base_config(root / "state", nodes, models=MODELS)
    path = root / "gateway.yaml"
    path.write_text(yaml.safe_dump(config))
    gateway = RunningGateway(path)
    yield CliGateway(gateway, upstream, prefix)
    gateway.stop()


@dataclass(frozen=True)
class Command:
    argv: list[str]
    env: dict[str, str]
    cwd: Path


def claude_command(url: str, key: str, model: str, home: Path, prompt: str, *extra: str) -> Command:
    """``claude -p`` configured as the README says, current variable names, nothing but loopback traffic."""
    env = {
        "HOME": str(home),
        "ANTHROPIC_BASE_URL": url,
        "ANTHROPIC_AUTH_TOKEN": key,
        "ANTHROPIC_MODEL": model,
        "ANTHROPIC_DEFAULT_SONNET_MODEL": model,
        "ANTHROPIC_DEFAULT_HAIKU_MODEL": model,
        "ANTHROPIC_DEFAULT_OPUS_MODEL": model,
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        "DISABLE_AUTOUPDATER": "1",
        "DISABLE_TELEMETRY": "1",
        "DISABLE_ERROR_REPORTING": "1",
    }
    return Command([require("claude"), "-p", prompt, "--model", model, *extra], env, _work(home))


CODEX_CONFIG = """\
model = "{model}"
model_provider = "infermesh"
check_for_update_on_startup = false

[model_providers.infermesh]
name = "Infer Mesh"
base_url = "{url}/v1"
wire_api = "responses"
env_key = "INFERMESH_API_KEY"

[analytics]
enabled = false
"""


def codex_command(url: str, key: str, model: str, home: Path, prompt: str) -> Command:
    """``codex exec`` with the README's provider block in a temporary ``~/.codex/config.toml``."""
    codex_home = home / ".codex"
    codex_home.mkdir(parents=True, exist_ok=True)
    (codex_home / "config.toml").write_text(CODEX_CONFIG.format(model=model, url=url))
    env = {"HOME": str(home), "CODEX_HOME": str(codex_home), "INFERMESH_API_KEY": key}
    argv = [require("codex"), "exec", "--skip-git-repo-check", "--dangerously-bypass-approvals-and-sandbox",
            "--color", "never", prompt]
    return Command(argv, env, _work(home))


GEMINI_SETTINGS = {  # ~/.gemini/settings.json: the API-key auth type (else "Invalid auth method selected"), no telemetry
    "security": {"auth": {"selectedType": "gemini-api-key"}},
    "telemetry": {"enabled": False},
    "privacy": {"usageStatisticsEnabled": False},
    "general": {"disableAutoUpdate": True, "disableUpdateNag": True},
}


def gemini_command(url: str, key: str, model: str, home: Path, prompt: str) -> Command:
    """``gemini -p`` as the README says: two variables, the settings file, and the workspace trusted
    (``~/.gemini/trustedFolders.json``; an untrusted one makes headless runs exit 55)."""
    gemini_home = home / ".gemini"
    gemini_home.mkdir(parents=True, exist_ok=True)
    (gemini_home / "settings.json").write_text(json.dumps(GEMINI_SETTINGS))
    work = _work(home)
    (gemini_home / "trustedFolders.json").write_text(json.dumps({str(work): "TRUST_FOLDER"}))
    env = {"HOME": str(home), "GEMINI_API_KEY": key, "GOOGLE_GEMINI_BASE_URL": url}
    return Command([require("gemini"), "-m", model, "-p", prompt], env, work)


def _work(home: Path) -> Path:
    work = home / "work"
    work.mkdir(parents=True, exist_ok=True)
    return work


def execute(command: Command, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    base_env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8", "TERM": "dumb"}
    return subprocess.run(command.argv, env={**base_env, **command.env}, cwd=command.cwd, stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=timeout)


@dataclass
class Run:
    returncode: int
    stdout: str
    stderr: str
    requests: int  # requests the node received during the run
    records: list[dict[str, Any]]  # usage records the run added


def run_cli(cli: CliGateway, kind: NodeKind, command: Command) -> Run:
    """Run a CLI to completion; what its node received and what the gateway billed meanwhile."""
    before_requests, before_records = cli.requests(kind), {r["request_id"] for r in cli.usage()}
    proc = execute(command)
    records = [r for r in cli.usage() if r["request_id"] not in before_records]
    return Run(proc.returncode, proc.stdout, proc.stderr, cli.requests(kind) - before_requests, records)


def require(binary: str) -> str:
    path = shutil.which(binary)
    if path is None:
        pytest.skip(f"{binary} is not installed (.ci/run installs it from npm)")
    return path
