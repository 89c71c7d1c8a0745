"""Deployment files, checked without a Docker engine or AWS: the Dockerfile and
its build context, the Procfile, the ECS task definition template and its
renderer, ops/build.sh and ops/deploy.sh (against fake docker, aws, make and
git that record their arguments), and shellcheck over the scripts."""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import threading
import tomllib
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
)
from cryptography.x509.oid import NameOID

from vault.config import Settings
from vault.domain.cosignature import CosignerKey

ROOT = Path(__file__).resolve().parents[2]
OPS = ROOT / "ops"
TEMPLATE = OPS / "ecs-task-def.json.template"
BUILD_SH = OPS / "build.sh"
DEPLOY_SH = OPS / "deploy.sh"
SHELL_FILES = (BUILD_SH, DEPLOY_SH, OPS / "lib.sh")


def _load_renderer() -> Any:
    spec = importlib.util.spec_from_file_location("render_task_def", OPS / "render_task_def.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


renderer = _load_renderer()

# Variables the service reads, as `vault check-config` lists them.
SETTINGS_NAMES = [name for name, _ in Settings.from_env({}).describe()]
SECRETS = {"DATABASE_URL", "JWT_PUBLIC_KEY", "LEDGER_SIGNING_KEY"}
# Left out of the task on purpose: the task role provides the credentials.
LEFT_OUT = {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}
FIXED = {"HOST": "0.0.0.0", "PORT": "8000", "VAULT_DATA_DIR": "/var/lib/vault"}

ACCOUNT = "123456789012"
REQUIRED_SAMPLE = {
    "IMAGE_URI": f"{ACCOUNT}.dkr.ecr.eu-west-1.amazonaws.com/document-vault:0123456789ab",
    "AWS_REGION": "eu-west-1",
    "ENVIRONMENT": "prod",
    "LOG_GROUP_NAME": "/ecs/document-vault",
    "ECS_EXECUTION_ROLE_ARN": f"arn:aws:iam::{ACCOUNT}:role/vault-execution",
    "ECS_TASK_ROLE_ARN": f"arn:aws:iam::{ACCOUNT}:role/vault-task",
    "DATABASE_URL_SECRET_ARN": f"arn:aws:secretsmanager:eu-west-1:{ACCOUNT}:secret:vault/db-AbCdEf",
    "JWT_PUBLIC_KEY_SECRET_ARN": f"arn:aws:ssm:eu-west-1:{ACCOUNT}:parameter/vault/jwt-public-key",
    "LEDGER_SIGNING_KEY_SECRET_ARN": (
        f"arn:aws:secretsmanager:eu-west-1:{ACCOUNT}:secret:vault/ledger-key-AbCdEf"
    ),
    "DOCUMENT_VAULT_BUCKET": "vault-documents",
    "AWS_S3_KMS_KEY_ID": f"arn:aws:kms:eu-west-1:{ACCOUNT}:key/1234abcd-12ab-34cd-56ef",
}
SQS = f"https://sqs.eu-west-1.amazonaws.com/{ACCOUNT}"
WITNESS_KEY = CosignerKey.generate("witness.example.com").verifier().format()


def _self_signed_pem() -> str:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Sample TSA root")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name)
        .public_key(key.public_key()).serial_number(1)
        .not_valid_before(now).not_valid_after(now + timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(Encoding.PEM).decode()


TSA_ROOT_PEM = _self_signed_pem()
OPTIONAL_SAMPLE = {
    "TASK_FAMILY": "document-vault-prod",
    "TASK_CPU": "2048",
    "TASK_MEMORY": "4096",
    "CPU_ARCHITECTURE": "ARM64",
    "DATABASE_POOL_PRE_PING": "false",
    "LOG_LEVEL": "WARNING",
    "LOG_FORMAT": "json",
    "PUBLIC_BASE_URL": "https://vault.example.com",
    "SHUTDOWN_GRACE_SECONDS": "25",
    "AWS_ENDPOINT_URL": "https://aws-endpoints.internal.example.com",
    "AWS_S3_ENDPOINT_URL": "https://s3.eu-west-1.amazonaws.com",
    "DOCUMENT_EVENTS_QUEUE_URL": f"{SQS}/document-events",
    "AUDIT_SNS_TOPIC_ARN": f"arn:aws:sns:eu-west-1:{ACCOUNT}:audit-events",
    "COMPLIANCE_ALERT_QUEUE_URL": f"{SQS}/compliance-alerts",
    "ENABLE_DOCUMENT_CONSUMER": "true",
    "DOCUMENT_VAULT_SQS_URL": f"{SQS}/entity-deleted",
    "DOCUMENT_CONSUMER_MAX_MESSAGES": "10",
    "DOCUMENT_CONSUMER_WAIT_TIME": "20",
    "DOCUMENT_CONSUMER_VISIBILITY_TIMEOUT": "120",
    "OUTBOX_RETENTION_HOURS": "72",
    "OUTBOX_LEASE_SECONDS": "45",
    "ORPHAN_BLOB_GRACE_SECONDS": "600",
    "MAX_UPLOAD_FILE_SIZE_BYTES": "52428800",
    "ALLOWED_MIME_TYPES": '["application/pdf", "image/png"]',
    "ENABLE_DUPLICATE_HASH_DETECTION": "true",
    "EPR_SERVICE_URL": "https://epr.internal.example.com",
    "EPR_MOCK_MODE": "false",
    "EPR_MOCK_ROLES": '{"6f1c1c1e-8d1b-4c57-9a53-2f4d6f0c9d10": "auditor"}',
    "EPR_SERVICE_TIMEOUT": "3",
    "EPR_CACHE_TTL_SECONDS": "15",
    "JWT_ISSUER": "https://auth.example.com/",
    "JWT_AUDIENCE": "document-vault",
    "PRESIGNED_URL_EXPIRATION_SECONDS": "600",
    "LEDGER_ORIGIN": "vault.example.com/prod",
    "LEDGER_CHECKPOINT_INTERVAL_SECONDS": "2",
    "BLOCKCHAIN_ENDPOINT_URL": "https://rpc.example.com",
    "BLOCKCHAIN_PRIVATE_KEY_SECRET_ARN": (
        f"arn:aws:secretsmanager:eu-west-1:{ACCOUNT}:secret:vault/chain-key-AbCdEf"
    ),
    "INCIDENT_WEBHOOK_URL_SECRET_ARN": (
        f"arn:aws:secretsmanager:eu-west-1:{ACCOUNT}:secret:vault/incident-webhook-AbCdEf"
    ),
    "BLOCKCHAIN_CHAIN_ID": "11155111",
    "BLOCKCHAIN_CONFIRMATIONS": "3",
    "LEDGER_ANCHOR_INTERVAL_SECONDS": "7200",
    "LEDGER_WITNESSES": json.dumps(
        [{"url": "https://witness.example.com", "key": WITNESS_KEY}]
    ),
    "LEDGER_WITNESS_QUORUM": "1",
    "LEDGER_TSA_URL": "https://tsa.example.com",
    "LEDGER_TSA_CERTS": TSA_ROOT_PEM.replace("\n", "\\n"),
    "LEDGER_TIMESTAMP_INTERVAL_SECONDS": "3600",
    "INTEGRITY_SWEEP_PERIOD_HOURS": "24",
    "INTEGRITY_SWEEP_MAX_MB_PER_SECOND": "20",
    "ENTITY_FREEZE_ON_MISMATCH": "false",
}
ALL_SAMPLE = {**REQUIRED_SAMPLE, **OPTIONAL_SAMPLE}
# What an operator's shell may hold; none of it belongs in a task definition.
OPERATOR_SECRETS = {
    "AWS_ACCESS_KEY_ID": "AKIAOPERATORKEY00000",
    "AWS_SECRET_ACCESS_KEY": "operator-secret-access-key",
    "DATABASE_URL": "postgresql://vault:db-password@db.internal:5432/vault",
    "JWT_PUBLIC_KEY": "-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0C\n-----END PUBLIC KEY-----",
}
REGISTERED_ARN = f"arn:aws:ecs:eu-west-1:{ACCOUNT}:task-definition/document-vault:42"


def _container(task: dict[str, Any]) -> dict[str, Any]:
    (container,) = task["containerDefinitions"]
    return container


def _environment(task: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e["value"] for e in _container(task)["environment"]}


def _ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextlib.contextmanager
def _health_server(status: int) -> Iterator[int]:
    """A loopback HTTP server answering ``status`` on /healthz and 404 elsewhere."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(status if self.path == "/healthz" else 404)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


# --- a small Dockerfile parser ------------------------------------------------


@dataclass
class Instruction:
    keyword: str
    args: str


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]

    def last(self, keyword: str) -> Instruction:
        found = self.all(keyword)
        assert found, f"stage {self.name} has no {keyword}"
        return found[-1]

    def env(self) -> dict[str, str]:
        values: dict[str, str] = {}
        for instruction in self.all("ENV"):
            words = shlex.split(instruction.args)
            if "=" not in words[0]:
                values[words[0]] = " ".join(words[1:])
                continue
            for word in words:
                name, _, value = word.partition("=")
                values[name] = value
        return values


def parse_dockerfile(text: str) -> tuple[dict[str, str], list[Stage]]:
    """Global ARG defaults and the stages, with continuation lines joined."""
    logical: list[str] = []
    pending = ""
    for raw in text.splitlines():
        stripped = raw.strip()
        if stripped.startswith("#") or (not stripped and not pending):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        logical.append(pending + stripped)
        pending = ""
    assert not pending, "the Dockerfile ends inside a continuation"
    global_args: dict[str, str] = {}
    stages: list[Stage] = []
    for line in logical:
        keyword, _, args = line.partition(" ")
        keyword, args = keyword.upper(), args.strip()
        if keyword == "FROM":
            words = args.split()
            words = [w for w in words if not w.startswith("--platform")]
            base = re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: global_args[m[1] or m[2]], words[0])
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
            stages.append(Stage(base, name))
        elif not stages:
            assert keyword == "ARG", f"{keyword} before the first FROM"
            arg_name, _, default = args.partition("=")
            global_args[arg_name] = default
        else:
            stages[-1].instructions.append(Instruction(keyword, args))
    return global_args, stages


def exec_form(args: str) -> list[str] | None:
    """The JSON array of an exec-form instruction, or None for shell form."""
    if not args.startswith("["):
        return None
    value = json.loads(args)
    assert isinstance(value, list) and all(isinstance(v, str) for v in value)
    return value


def healthcheck_command(args: str) -> tuple[dict[str, str], list[str] | None]:
    """The options of a HEALTHCHECK and its CMD in exec form (None for shell form)."""
    options: dict[str, str] = {}
    rest = args
    while rest.startswith("--"):
        option, _, rest = rest.partition(" ")
        key, _, value = option[2:].partition("=")
        options[key] = value
        rest = rest.lstrip()
    keyword, _, command = rest.partition(" ")
    assert keyword.upper() == "CMD", f"HEALTHCHECK {keyword}"
    return options, exec_form(command.strip())


DOCKER_GLOBAL_ARGS, STAGES = parse_dockerfile((ROOT / "Dockerfile").read_text())
BUILD_STAGE, FINAL_STAGE = STAGES[0], STAGES[-1]


# --- .dockerignore, as the Docker client applies it ----------------------------


def _glob_regex(pattern: str) -> re.Pattern[str]:
    out = ""
    i = 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif pattern.startswith("**", i):
            out, i = out + ".*", i + 2
        elif pattern[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif pattern[i] == "?":
            out, i = out + "[^/]", i + 1
        elif pattern[i] == "[":
            end = pattern.index("]", i)
            out, i = out + pattern[i : end + 1], end + 1
        else:
            out, i = out + re.escape(pattern[i]), i + 1
    return re.compile(out)


def _dockerignore() -> list[tuple[bool, re.Pattern[str], str]]:
    rules = []
    for line in (ROOT / ".dockerignore").read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        negated = line.startswith("!")
        pattern = line.lstrip("!").strip().strip("/")
        rules.append((negated, _glob_regex(pattern), pattern))
    return rules


def ignored(path: str) -> bool:
    """Whether the Docker client leaves ``path`` out of the build context."""
    parts = path.split("/")
    prefixes = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    result = False
    for negated, regex, _ in _dockerignore():
        if any(regex.fullmatch(p) for p in prefixes):
            result = not negated
    return result


def build_context() -> list[str]:
    """Every file of the repository the Docker client would send."""
    reincluded = [p for negated, _, p in _dockerignore() if negated]
    files: list[str] = []
    for folder, dirs, names in os.walk(ROOT):
        rel = Path(folder).relative_to(ROOT).as_posix()
        rel = "" if rel == "." else rel + "/"
        dirs[:] = [
            d for d in dirs
            if not ignored(rel + d) or any(p.startswith(rel + d + "/") for p in reincluded)
        ]  # fmt: skip
        files.extend(rel + n for n in names if not ignored(rel + n))
    return sorted(files)


def stage_build_stage(dest: Path) -> None:
    """Lay out the build stage's WORKDIR as its COPY instructions would."""
    context = build_context()
    workdir = Path(BUILD_STAGE.last("WORKDIR").args)
    for copy in BUILD_STAGE.all("COPY"):
        assert not copy.args.startswith("--from"), "the build stage copies from the context"
        *sources, target = copy.args.split()
        target_dir = dest / (Path(workdir, target).relative_to(workdir))
        for source in sources:
            chosen = [f for f in context if f == source or f.startswith(source + "/")]
            assert chosen, f"COPY {source}: nothing in the build context"
            for rel in chosen:
                inner = Path(rel).name if rel == source else Path(rel).relative_to(source)
                out = target_dir / inner
                out.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(ROOT / rel, out)


# --- fake docker, aws, make and git ---------------------------------------------

FAKE = """#!{python}
import json, os, sys
config = json.load(open({config!r}))
name, args = os.path.basename(sys.argv[0]), sys.argv[1:]


def matches(key):
    first, *rest = key.split()
    n = len(rest)
    return first == name and any(args[i : i + n] == rest for i in range(len(args) - n + 1))


record = {{"argv": [name, *args]}}
if "--password-stdin" in args:
    record["stdin"] = sys.stdin.read()
for arg in args:
    if arg.startswith("file://"):
        record["file"] = json.load(open(arg[len("file://"):]))
with open(config["log"], "a") as log:
    log.write(json.dumps(record) + "\\n")
if any(matches(key) for key in config["fail"]):
    sys.exit(1)
for key, output in config["outputs"].items():
    if matches(key):
        print(output)
        break
"""


@dataclass
class Fakes:
    bin: Path
    config_path: Path
    log: Path
    config: dict[str, Any]

    def set(self, **changes: Any) -> None:
        self.config.update(changes)
        self.config_path.write_text(json.dumps(self.config))

    def run(self, script: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
        """Run ``script`` with PATH (fakes first) and ``env`` as its whole environment."""
        return subprocess.run(
            [str(script), *args], cwd=ROOT, capture_output=True, text=True, timeout=60,
            env={"PATH": f"{self.bin}:/usr/bin:/bin", **env},
        )  # fmt: skip

    def calls(self) -> list[dict[str, Any]]:
        if not self.log.exists():
            return []
        return [json.loads(line) for line in self.log.read_text().splitlines()]

    def argvs(self) -> list[list[str]]:
        return [c["argv"] for c in self.calls()]


@pytest.fixture
def fakes(tmp_path: Path) -> Fakes:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    config_path = tmp_path / "fakes.json"
    found = Fakes(bin_dir, config_path, tmp_path / "calls.jsonl", {})
    found.set(
        log=str(found.log),
        fail=[],
        outputs={
            "aws ecr get-login-password": "fake-ecr-token",
            "aws ecs register-task-definition": REGISTERED_ARN,
            "aws ecs update-service": f"arn:aws:ecs:eu-west-1:{ACCOUNT}:service/main/vault",
            "aws ecs run-task": f"arn:aws:ecs:eu-west-1:{ACCOUNT}:task/main/0a1b2c\tNone",
            "git rev-parse": "0123456789ab",
            "git status": "",
        },
    )
    for name in ("docker", "aws", "make", "git"):
        path = bin_dir / name
        path.write_text(FAKE.format(python=sys.executable, config=str(config_path)))
        path.chmod(0o755)
    (bin_dir / "python3").symlink_to(sys.executable)
    return found


def _commands(stdout: str) -> list[list[str]]:
    """The ``+ command`` lines a script printed, split as a shell would."""
    return [shlex.split(line[2:]) for line in stdout.splitlines() if line.startswith("+ ")]


BUILD_ENV = {"AWS_REGION": "eu-west-1", "AWS_ACCOUNT_ID": ACCOUNT, "IMAGE_TAG": "0123456789ab"}
REGISTRY = f"{ACCOUNT}.dkr.ecr.eu-west-1.amazonaws.com"
IMAGE = f"{REGISTRY}/document-vault:0123456789ab"
BUILDX_BUILD = [
    "docker", "buildx", "build", "--builder", "vault-multiarch",
    "--platform", "linux/amd64,linux/arm64",
    "--label", "org.opencontainers.image.version=0123456789ab",
    "--tag", IMAGE, "--push", str(ROOT),
]  # fmt: skip
REGISTER_START = ["aws", "ecs", "register-task-definition", "--region", "eu-west-1"]
DEPLOY_ENV = {**REQUIRED_SAMPLE, "CLUSTER": "main", "SERVICE": "vault"}
RUN_TASK_ENV = {
    **REQUIRED_SAMPLE, "CLUSTER": "main",
    "SUBNET_IDS": "subnet-aaa,subnet-bbb", "SECURITY_GROUP_IDS": "sg-123",
}  # fmt: skip


# --- the tests -------------------------------------------------------------------


class TestDockerfileStages:
    def test_two_stages_from_one_slim_python_311(self) -> None:
        """A build stage and a final stage, both from the same slim Python 3.11 image."""
        assert len(STAGES) == 2
        assert [s.name for s in STAGES] == ["build", "runtime"]
        assert BUILD_STAGE.base == FINAL_STAGE.base
        assert re.fullmatch(r"python:3\.11(\.\d+)?-slim(-\w+)?", FINAL_STAGE.base)

    def test_build_stage_installs_the_project_into_a_venv(self) -> None:
        """The build stage creates /opt/venv and installs the project (no editable, no extras)."""
        runs = " && ".join(r.args for r in BUILD_STAGE.all("RUN"))
        assert "python -m venv /opt/venv" in runs
        assert re.search(r"pip install \.(\s|$)", runs)
        assert "-e " not in runs and "[dev]" not in runs
        assert BUILD_STAGE.env()["PATH"].startswith("/opt/venv/bin:")

    def test_final_stage_copies_only_the_venv(self) -> None:
        """The final stage copies /opt/venv from the build stage and installs nothing."""
        copies = FINAL_STAGE.all("COPY")
        assert [c.args for c in copies] == ["--from=build /opt/venv /opt/venv"]
        runs = " ".join(r.args for r in FINAL_STAGE.all("RUN"))
        assert "pip" not in runs and "apt-get" not in runs and "gcc" not in runs
        assert FINAL_STAGE.env()["PATH"].startswith("/opt/venv/bin:")

    def test_final_stage_runs_as_a_non_root_user(self) -> None:
        """The last USER of the final stage is the created, non-root account."""
        user = FINAL_STAGE.last("USER").args.split(":")[0]
        assert user not in ("root", "0")
        runs = " ".join(r.args for r in FINAL_STAGE.all("RUN"))
        assert f"--uid {user}" in runs

    def test_data_dir_is_writable_by_that_user(self) -> None:
        """VAULT_DATA_DIR is /var/lib/vault, created owned by the service account."""
        assert FINAL_STAGE.env()["VAULT_DATA_DIR"] == "/var/lib/vault"
        runs = " ".join(r.args for r in FINAL_STAGE.all("RUN"))
        assert re.search(r"install -d -o vault -g vault -m 0?700 /var/lib/vault", runs)

    def test_exposes_port_8000(self) -> None:
        """The final stage exposes 8000, the port it sets for the service."""
        assert FINAL_STAGE.last("EXPOSE").args == "8000"
        assert FINAL_STAGE.env()["PORT"] == "8000"

    def test_stop_signal_is_sigterm(self) -> None:
        """STOPSIGNAL is SIGTERM, the signal `vault serve` shuts down cleanly on."""
        assert FINAL_STAGE.last("STOPSIGNAL").args == "SIGTERM"

    def test_entrypoint_is_vault_serve_in_exec_form(self) -> None:
        """ENTRYPOINT and CMD, both exec form, make `vault serve`."""
        entrypoint = exec_form(FINAL_STAGE.last("ENTRYPOINT").args)
        cmd = exec_form(FINAL_STAGE.last("CMD").args)
        assert entrypoint is not None and cmd is not None
        assert entrypoint + cmd == ["vault", "serve"]


class TestDockerfileCommands:
    def test_entrypoint_command_is_the_projects_console_script(self) -> None:
        """`vault` is the console script pyproject declares, and it has a `serve` command."""
        entrypoint = exec_form(FINAL_STAGE.last("ENTRYPOINT").args)
        assert entrypoint is not None
        scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
        module_name, _, function = scripts[entrypoint[0]].partition(":")
        module = importlib.import_module(module_name)
        with pytest.raises(SystemExit) as exited:
            getattr(module, function)(["serve", "--help"])
        assert exited.value.code == 0

    def test_healthcheck_uses_python_urllib_on_healthz(self) -> None:
        """The HEALTHCHECK is exec form, runs python (no curl) and asks /healthz."""
        options, command = healthcheck_command(FINAL_STAGE.last("HEALTHCHECK").args)
        assert command is not None and command[:2] == ["python", "-c"]
        assert "urllib.request" in command[2] and "/healthz" in command[2]
        assert {"interval", "timeout", "start-period", "retries"} <= set(options)

    @pytest.mark.parametrize(("status", "healthy"), [(200, True), (503, False)])
    def test_healthcheck_passes_only_on_a_healthy_answer(self, status: int, healthy: bool) -> None:
        """Run against a local server, the HEALTHCHECK exits 0 on 200 and non-zero on 503."""
        _, command = healthcheck_command(FINAL_STAGE.last("HEALTHCHECK").args)
        assert command is not None
        with _health_server(status) as port:
            done = subprocess.run(
                [sys.executable, *command[1:]], env={"PORT": str(port)},
                capture_output=True, timeout=30,
            )  # fmt: skip
        assert (done.returncode == 0) is healthy


class TestBuildContext:
    def test_dockerignore_keeps_what_the_dockerfile_copies(self) -> None:
        """Every source of the build stage's COPY is in the build context."""
        context = build_context()
        for copy in BUILD_STAGE.all("COPY"):
            for source in copy.args.split()[:-1]:
                assert any(f == source or f.startswith(source + "/") for f in context), source

    @pytest.mark.parametrize(
        "path",
        [".git/config", ".venv/bin/python", ".env", ".env.prod", "tests/conftest.py",
         "var/vault.sqlite3", "vault/__pycache__/cli.cpython-311.pyc", "ops/deploy.sh",
         ".mypy_cache/3.11/cache.json"],
    )  # fmt: skip
    def test_dockerignore_leaves_out_local_state(self, path: str) -> None:
        """Repository metadata, the venv, env files, tests, data and caches stay out."""
        assert ignored(path)

    def test_build_stage_builds_a_wheel_with_the_console_script(self, tmp_path: Path) -> None:
        """The build stage's files, laid out as its COPYs would, build a wheel with `vault`."""
        src, out = tmp_path / "src", tmp_path / "dist"
        stage_build_stage(src)
        done = subprocess.run(
            [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(out),
             str(src)],
            capture_output=True, text=True, timeout=600,
        )  # fmt: skip
        output = done.stdout + done.stderr
        if done.returncode != 0 and re.search(
            r"Could not find a version that satisfies|No matching distribution", output
        ):
            pytest.skip(f"the build backend cannot be downloaded here: {output.strip()[-300:]}")
        assert done.returncode == 0, output
        (wheel,) = out.glob("*.whl")
        with zipfile.ZipFile(wheel) as archive:
            names = set(archive.namelist())
            (entry_points,) = [n for n in names if n.endswith(".dist-info/entry_points.txt")]
            scripts = archive.read(entry_points).decode()
        assert "vault = vault.cli:main" in scripts
        assert "serve = vault_http.serve:run" in scripts
        assert {"vault/cli.py", "vault/domain/models.py", "vault/adapters/stores/sqlite.py",
                "vault/adapters/blobs/s3.py", "vault/adapters/aws/sinks.py",
                "actors/__init__.py", "vault_http/serve.py",
                "vault_http/openapi.yaml"} <= names  # fmt: skip
        assert not any(n.startswith("tests/") for n in names)


class TestProcfile:
    def test_is_exactly_web_vault_serve(self) -> None:
        """The Procfile is the one line `web: vault serve`, nothing for a shell to expand."""
        assert (ROOT / "Procfile").read_text() == "web: vault serve\n"


class TestTemplateShape:
    def test_placeholders_are_required_or_have_defaults(self) -> None:
        """Every placeholder is either required or has a default, and no default is stale."""
        names = set(renderer.placeholders(TEMPLATE.read_text()))
        assert names == set(renderer.REQUIRED) | set(renderer.DEFAULTS)
        assert not set(renderer.REQUIRED) & set(renderer.DEFAULTS)

    def test_each_variable_takes_its_own_placeholder(self) -> None:
        """An environment entry's value is `${ITS_NAME}`, or a fixed value for HOST, PORT and
        VAULT_DATA_DIR."""
        container = _container(json.loads(TEMPLATE.read_text()))
        for entry in container["environment"]:
            expected = FIXED.get(entry["name"], f"${{{entry['name']}}}")
            assert entry["value"] == expected, entry

    def test_every_setting_is_in_env_example_once(self) -> None:
        """.env.example, the file ENV_FILE starts from, names every setting once and
        reads cleanly."""
        pairs = renderer.read_env_file(ROOT / ".env.example")
        assert sorted(pairs) == sorted(SETTINGS_NAMES)


class TestRendering:
    def test_sample_values_render_to_valid_json(self) -> None:
        """The template renders to JSON, and the command-line output parses back to it."""
        task = renderer.render(ALL_SAMPLE)
        assert json.loads(renderer.to_text(task)) == task
        assert _container(task)["image"] == ALL_SAMPLE["IMAGE_URI"]

    def test_no_placeholder_is_left(self) -> None:
        """Nothing that looks like ${NAME} is left in the result."""
        text = json.dumps(renderer.render(ALL_SAMPLE))
        assert "${" not in text and not re.search(r"\$[A-Z_]", text)

    def test_every_setting_is_set_exactly_once(self) -> None:
        """Each variable the service reads is in environment or secrets, once (AWS keys aside)."""
        container = _container(renderer.render(ALL_SAMPLE))
        names = [e["name"] for e in container["environment"]]
        names += [s["name"] for s in container["secrets"]]
        assert sorted(names) == sorted(set(SETTINGS_NAMES) - LEFT_OUT)

    def test_secrets_come_from_arns(self) -> None:
        """DATABASE_URL, JWT_PUBLIC_KEY and LEDGER_SIGNING_KEY are secrets from the given ARNs."""
        container = _container(renderer.render(REQUIRED_SAMPLE))
        secrets = {s["name"]: s["valueFrom"] for s in container["secrets"]}
        assert secrets == {
            "DATABASE_URL": REQUIRED_SAMPLE["DATABASE_URL_SECRET_ARN"],
            "JWT_PUBLIC_KEY": REQUIRED_SAMPLE["JWT_PUBLIC_KEY_SECRET_ARN"],
            "LEDGER_SIGNING_KEY": REQUIRED_SAMPLE["LEDGER_SIGNING_KEY_SECRET_ARN"],
        }
        assert not SECRETS & set(_environment(renderer.render(REQUIRED_SAMPLE)))

    def test_operator_credentials_never_reach_the_task(self) -> None:
        """AWS keys, a database URL or a key in the operator's environment are not rendered."""
        task = renderer.render({**ALL_SAMPLE, **OPERATOR_SECRETS})
        text = json.dumps(task)
        assert not LEFT_OUT & set(_environment(task))
        assert "db-password" not in text and "operator-secret" not in text
        assert "AKIAOPERATOR" not in text and "BEGIN PUBLIC KEY" not in text

    def test_port_mapping_is_8000(self) -> None:
        """The container maps TCP 8000 and the service is told to listen there."""
        task = renderer.render(REQUIRED_SAMPLE)
        (mapping,) = _container(task)["portMappings"]
        assert (mapping["containerPort"], mapping["protocol"]) == (8000, "tcp")
        assert _environment(task)["PORT"] == "8000"
        assert _environment(task)["HOST"] == "0.0.0.0"

    def test_health_check_asks_healthz(self) -> None:
        """The container health check runs python's urllib against /healthz on 8000."""
        check = _container(renderer.render(REQUIRED_SAMPLE))["healthCheck"]
        assert check["command"][:3] == ["CMD", "python", "-c"]
        assert "http://127.0.0.1:8000/healthz" in check["command"][3]
        assert check["startPeriod"] >= 30 and check["retries"] >= 1

    @pytest.mark.parametrize(("status", "healthy"), [(200, True), (503, False)])
    def test_health_check_command_judges_the_answer(self, status: int, healthy: bool) -> None:
        """Run against a local server, the health check exits 0 on 200 and non-zero on 503."""
        code = _container(renderer.render(REQUIRED_SAMPLE))["healthCheck"]["command"][3]
        with _health_server(status) as port:
            done = subprocess.run(
                [sys.executable, "-c", code.replace(":8000/", f":{port}/")],
                capture_output=True, timeout=30,
            )  # fmt: skip
        assert (done.returncode == 0) is healthy

    @pytest.mark.parametrize("sample", [REQUIRED_SAMPLE, ALL_SAMPLE], ids=["default", "set"])
    def test_stop_timeout_is_above_the_shutdown_grace(self, sample: dict[str, str]) -> None:
        """stopTimeout, at most Fargate's 120 s, is above SHUTDOWN_GRACE_SECONDS as rendered."""
        task = renderer.render(sample)
        grace = float(_environment(task)["SHUTDOWN_GRACE_SECONDS"])
        assert grace < _container(task)["stopTimeout"] <= 120

    def test_logs_go_to_the_cloudwatch_group(self) -> None:
        """The awslogs driver sends to LOG_GROUP_NAME in AWS_REGION."""
        config = _container(renderer.render(REQUIRED_SAMPLE))["logConfiguration"]
        assert config["logDriver"] == "awslogs"
        assert config["options"]["awslogs-group"] == REQUIRED_SAMPLE["LOG_GROUP_NAME"]
        assert config["options"]["awslogs-region"] == REQUIRED_SAMPLE["AWS_REGION"]
        assert config["options"]["awslogs-stream-prefix"]

    def test_task_is_a_fargate_task_with_both_roles(self) -> None:
        """Fargate, awsvpc, the execution and task roles, and the chosen size and CPU."""
        task = renderer.render(ALL_SAMPLE)
        assert task["requiresCompatibilities"] == ["FARGATE"]
        assert task["networkMode"] == "awsvpc"
        assert task["executionRoleArn"] == ALL_SAMPLE["ECS_EXECUTION_ROLE_ARN"]
        assert task["taskRoleArn"] == ALL_SAMPLE["ECS_TASK_ROLE_ARN"]
        assert (task["cpu"], task["memory"]) == ("2048", "4096")
        assert task["runtimePlatform"]["cpuArchitecture"] == "ARM64"

    def test_empty_optional_values_are_left_out(self) -> None:
        """Unset optional variables do not appear, so the service's defaults apply."""
        env = _environment(renderer.render({**REQUIRED_SAMPLE, "JWT_ISSUER": ""}))
        assert "" not in env.values()
        assert "JWT_ISSUER" not in env and "DOCUMENT_EVENTS_QUEUE_URL" not in env

    def test_values_stay_inside_their_strings(self) -> None:
        """Quotes, backslashes and newlines in a value are escaped, not JSON syntax."""
        awkward = 'a "quoted" \\ value\nover two lines'
        env = _environment(renderer.render({**ALL_SAMPLE, "JWT_AUDIENCE": awkward}))
        assert env["JWT_AUDIENCE"] == awkward
        assert env["EPR_MOCK_ROLES"] == ALL_SAMPLE["EPR_MOCK_ROLES"]

    def test_rendered_configuration_is_accepted_by_the_service(self) -> None:
        """The rendered environment plus the secrets' values is a valid service configuration."""
        env = _environment(renderer.render(ALL_SAMPLE))
        public_key = ed25519.Ed25519PrivateKey.generate().public_key()
        pem = public_key.public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo).decode()
        ledger_key = ed25519.Ed25519PrivateKey.generate().private_bytes(
            Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()
        ).decode()
        secret_values = {
            "DATABASE_URL": OPERATOR_SECRETS["DATABASE_URL"], "JWT_PUBLIC_KEY": pem,
            "LEDGER_SIGNING_KEY": ledger_key, "BLOCKCHAIN_PRIVATE_KEY": "0x" + "ab" * 32,
        }
        settings = Settings.from_env({**env, **secret_values})
        assert settings.ledger_witnesses[0].key.format() == WITNESS_KEY
        assert settings.ledger_tsa_certs == (TSA_ROOT_PEM.encode(),)
        assert settings.port == 8000 and str(settings.vault_data_dir) == "/var/lib/vault"
        assert settings.environment == "prod" and settings.shutdown_grace_seconds == 25

    def test_dockerfile_and_template_agree_on_data_dir_and_port(self) -> None:
        """The image and the task definition use the same data folder and port."""
        env = _environment(renderer.render(REQUIRED_SAMPLE))
        image_env = FINAL_STAGE.env()
        assert env["VAULT_DATA_DIR"] == image_env["VAULT_DATA_DIR"]
        assert env["PORT"] == image_env["PORT"] == FINAL_STAGE.last("EXPOSE").args


class TestRenderingRefusals:
    def test_missing_variables_are_all_named(self) -> None:
        """With nothing set, the error names every required variable."""
        with pytest.raises(renderer.RenderError) as refused:
            renderer.render({})
        for name in renderer.REQUIRED:
            assert name in str(refused.value)

    def test_a_placeholder_inside_a_value_is_refused(self) -> None:
        """A value that still holds ${...} (say, from a literal env file) is refused."""
        with pytest.raises(renderer.RenderError, match=r"unreplaced.*\$\{REGISTRY\}"):
            renderer.render({**REQUIRED_SAMPLE, "IMAGE_URI": "${REGISTRY}/document-vault:1"})

    def test_grace_at_or_above_stop_timeout_is_refused(self) -> None:
        """SHUTDOWN_GRACE_SECONDS not below stopTimeout is refused, naming the variable."""
        with pytest.raises(renderer.RenderError, match="SHUTDOWN_GRACE_SECONDS=30"):
            renderer.render({**REQUIRED_SAMPLE, "SHUTDOWN_GRACE_SECONDS": "30"})

    def test_a_secret_that_is_not_an_arn_is_refused(self) -> None:
        """A secret reference must be an ARN, not a value pasted in its place."""
        with pytest.raises(renderer.RenderError, match="DATABASE_URL"):
            renderer.render({**REQUIRED_SAMPLE, "DATABASE_URL_SECRET_ARN": "postgresql://u:p@h/db"})

    @pytest.mark.parametrize("environment", ["local", "test", "qa"])
    def test_environments_with_header_identity_are_refused(self, environment: str) -> None:
        """ECS tasks run as dev, staging or prod only."""
        with pytest.raises(renderer.RenderError, match="ENVIRONMENT"):
            renderer.render({**REQUIRED_SAMPLE, "ENVIRONMENT": environment})

    def test_command_line_names_missing_variables(self, tmp_path: Path) -> None:
        """The renderer's command line exits 2 naming what is missing, writing nothing."""
        out = tmp_path / "task.json"
        done = subprocess.run(
            [sys.executable, str(OPS / "render_task_def.py"), "--output", str(out)],
            env={"PATH": "/usr/bin:/bin", "IMAGE_URI": "x"}, capture_output=True, text=True,
        )  # fmt: skip
        assert done.returncode == 2
        assert "missing required variable(s): AWS_REGION" in done.stderr
        assert "IMAGE_URI" not in done.stderr and not out.exists()


class TestEnvFile:
    def test_values_are_read_literally(self, tmp_path: Path) -> None:
        """No shell expansion: $, braces and JSON survive; comments and quotes are handled."""
        path = tmp_path / "prod.env"
        path.write_text(
            '# comment\n\nexport CLUSTER=main\nEPR_MOCK_ROLES={"a": "auditor"}\n'
            "JWT_AUDIENCE='$HOME and ${X}'\nLOG_LEVEL=\n"
        )
        assert renderer.read_env_file(path) == {
            "CLUSTER": "main", "EPR_MOCK_ROLES": '{"a": "auditor"}',
            "JWT_AUDIENCE": "$HOME and ${X}", "LOG_LEVEL": "",
        }  # fmt: skip

    def test_a_bad_line_is_named(self, tmp_path: Path) -> None:
        """A line that is not NAME=value is refused with its file and line number."""
        path = tmp_path / "prod.env"
        path.write_text("CLUSTER=main\nthis is not an assignment\n")
        with pytest.raises(renderer.RenderError, match=r"prod\.env:2"):
            renderer.read_env_file(path)

    def test_exports_give_bash_the_same_values(self, tmp_path: Path) -> None:
        """The export lines, eval'd by bash, reproduce each value byte for byte."""
        value = 'it\'s "$HOME" `x` {"a": 1}'
        exports = renderer.shell_exports({"V": value, "EMPTY": ""})
        assert "EMPTY" not in exports
        done = subprocess.run(
            ["bash", "-c", 'eval "$1"; printf %s "$V"', "bash", exports],
            capture_output=True, text=True, env={"PATH": "/usr/bin:/bin"},
        )  # fmt: skip
        assert done.stdout == value


class TestScriptsBasics:
    @pytest.mark.parametrize("script", [BUILD_SH, DEPLOY_SH], ids=lambda p: p.name)
    def test_strict_mode_and_executable(self, script: Path) -> None:
        """The first command is `set -euo pipefail`, and the script is executable."""
        code = [
            line.strip() for line in script.read_text().splitlines()
            if line.strip() and not line.lstrip().startswith("#")
        ]  # fmt: skip
        assert code[0] == "set -euo pipefail"
        assert os.access(script, os.X_OK)

    def test_shellcheck_passes(self) -> None:
        """shellcheck (following `source`) finds nothing in the scripts."""
        if shutil.which("shellcheck") is None:
            message = "shellcheck is not installed (apt-get install shellcheck)"
            if _ci():
                pytest.fail(message + "; CI requires it")
            pytest.skip(message)
        done = subprocess.run(
            ["shellcheck", "--external-sources", *(str(p.relative_to(ROOT)) for p in SHELL_FILES)],
            cwd=ROOT, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert done.returncode == 0, done.stdout + done.stderr


class TestBuildScript:
    def test_missing_variables_are_named_before_any_call(self, fakes: Fakes) -> None:
        """With only PATH set it exits 2 naming AWS_REGION and AWS_ACCOUNT_ID, calling nothing."""
        done = fakes.run(BUILD_SH)
        assert done.returncode == 2
        assert "missing required variable(s): AWS_REGION AWS_ACCOUNT_ID" in done.stderr
        assert fakes.calls() == []

    @pytest.mark.parametrize(("args", "env"), [(["--dry-run"], {}), ([], {"DRY_RUN": "1"})])
    def test_dry_run_prints_the_commands_and_runs_none(
        self, fakes: Fakes, args: list[str], env: dict[str, str]
    ) -> None:
        """--dry-run (or DRY_RUN=1) prints tests, login and the multi-arch push, calling nothing."""
        done = fakes.run(BUILD_SH, *args, **BUILD_ENV, **env)
        assert done.returncode == 0, done.stderr
        commands = _commands(done.stdout)
        assert commands[0] == ["make", "test"]
        assert commands[-1] == BUILDX_BUILD
        assert ["aws", "ecr", "get-login-password", "--region", "eu-west-1", "|", "docker",
                "login", "--username", "AWS", "--password-stdin", REGISTRY] in commands  # fmt: skip
        assert fakes.calls() == []

    def test_runs_the_tests_then_builds_and_pushes(self, fakes: Fakes) -> None:
        """It runs `make test`, logs in to ECR with the token on stdin, then builds and pushes."""
        done = fakes.run(BUILD_SH, **BUILD_ENV)
        assert done.returncode == 0, done.stderr
        argvs = fakes.argvs()
        assert argvs[0] == ["make", "test"]
        assert argvs[-1] == BUILDX_BUILD
        (login,) = [c for c in fakes.calls() if c["argv"][:2] == ["docker", "login"]]
        assert login["stdin"].strip() == "fake-ecr-token"
        assert login["argv"][-1] == REGISTRY
        assert f"pushed {IMAGE}" in done.stdout

    def test_creates_a_missing_repository_and_builder(self, fakes: Fakes) -> None:
        """An absent ECR repository is created with immutable tags, an absent builder too."""
        fakes.set(fail=["aws ecr describe-repositories", "docker buildx inspect"])
        done = fakes.run(BUILD_SH, **BUILD_ENV)
        assert done.returncode == 0, done.stderr
        argvs = fakes.argvs()
        assert ["aws", "ecr", "create-repository", "--region", "eu-west-1",
                "--repository-name", "document-vault", "--image-tag-mutability", "IMMUTABLE",
                "--image-scanning-configuration", "scanOnPush=true"] in argvs  # fmt: skip
        assert ["docker", "buildx", "create", "--name", "vault-multiarch",
                "--driver", "docker-container", "--bootstrap"] in argvs  # fmt: skip

    def test_failing_tests_stop_the_build(self, fakes: Fakes) -> None:
        """When `make test` fails, nothing is pushed and docker is never called."""
        fakes.set(fail=["make test"])
        done = fakes.run(BUILD_SH, **BUILD_ENV)
        assert done.returncode == 2 and "the tests failed" in done.stderr
        assert fakes.argvs() == [["make", "test"]]

    def test_image_tag_defaults_to_the_commit(self, fakes: Fakes) -> None:
        """Without IMAGE_TAG the image is tagged with the current commit."""
        env = {k: v for k, v in BUILD_ENV.items() if k != "IMAGE_TAG"}
        done = fakes.run(BUILD_SH, "--dry-run", **env)
        assert done.returncode == 0, done.stderr
        assert f"image:     {IMAGE}" in done.stdout

    def test_uncommitted_changes_need_an_explicit_tag(self, fakes: Fakes) -> None:
        """Without IMAGE_TAG, a working tree with changes is refused before any build step."""
        fakes.set(outputs={**fakes.config["outputs"], "git status": " M vault/cli.py"})
        env = {k: v for k, v in BUILD_ENV.items() if k != "IMAGE_TAG"}
        done = fakes.run(BUILD_SH, **env)
        assert done.returncode == 2 and "uncommitted changes" in done.stderr
        assert [a[0] for a in fakes.argvs()] == ["git", "git"]

    def test_env_file_supplies_the_variables(self, fakes: Fakes, tmp_path: Path) -> None:
        """ENV_FILE's values are used, and win over the environment's."""
        env_file = tmp_path / "prod.env"
        env_file.write_text(f"AWS_REGION=eu-west-1\nAWS_ACCOUNT_ID={ACCOUNT}\n")
        done = fakes.run(
            BUILD_SH, "--dry-run", ENV_FILE=str(env_file), AWS_REGION="us-east-1",
            IMAGE_TAG="0123456789ab",
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert _commands(done.stdout)[-1] == BUILDX_BUILD


class TestDeployScript:
    def test_missing_variables_are_named_before_any_call(self, fakes: Fakes) -> None:
        """With only PATH set it exits 2 naming CLUSTER, SERVICE and the template's variables."""
        done = fakes.run(DEPLOY_SH)
        assert done.returncode == 2
        assert "missing required variable(s): CLUSTER SERVICE IMAGE_URI AWS_REGION" in done.stderr
        for name in renderer.REQUIRED:
            assert name in done.stderr
        assert fakes.calls() == []

    def test_run_task_needs_its_network(self, fakes: Fakes) -> None:
        """run-task names SUBNET_IDS and SECURITY_GROUP_IDS when they are missing."""
        done = fakes.run(DEPLOY_SH, "run-task", **REQUIRED_SAMPLE, CLUSTER="main")
        assert done.returncode == 2
        assert "missing required variable(s): SUBNET_IDS SECURITY_GROUP_IDS" in done.stderr
        assert fakes.calls() == []

    @pytest.mark.parametrize(("args", "env"), [(["--dry-run"], {}), ([], {"DRY_RUN": "true"})])
    def test_dry_run_prints_the_task_and_commands_and_runs_none(
        self, fakes: Fakes, args: list[str], env: dict[str, str]
    ) -> None:
        """--dry-run (or DRY_RUN) prints the rendered task and the aws commands, calling nothing."""
        done = fakes.run(DEPLOY_SH, *args, **DEPLOY_ENV, **env)
        assert done.returncode == 0, done.stderr
        assert f'"image": "{REQUIRED_SAMPLE["IMAGE_URI"]}"' in done.stdout
        commands = _commands(done.stdout)
        assert [c[:3] for c in commands] == [
            ["aws", "ecs", "register-task-definition"],
            ["aws", "ecs", "update-service"],
            ["aws", "ecs", "wait"],
        ]
        assert commands[0][commands[0].index("--cli-input-json") + 1].startswith("file://")
        assert fakes.calls() == []

    def test_service_mode_registers_then_updates_the_service(self, fakes: Fakes) -> None:
        """It registers the rendered task, points the service at the new revision and waits."""
        done = fakes.run(DEPLOY_SH, **DEPLOY_ENV)
        assert done.returncode == 0, done.stderr
        register, update, wait = fakes.calls()
        assert register["argv"][:5] == REGISTER_START
        assert register["file"] == renderer.render(REQUIRED_SAMPLE)
        assert update["argv"] == [
            "aws", "ecs", "update-service", "--region", "eu-west-1", "--cluster", "main",
            "--service", "vault", "--task-definition", REGISTERED_ARN,
            "--query", "service.serviceArn", "--output", "text",
        ]  # fmt: skip
        assert wait["argv"] == [
            "aws", "ecs", "wait", "services-stable", "--region", "eu-west-1",
            "--cluster", "main", "--services", "vault",
        ]  # fmt: skip

    def test_run_task_mode_starts_one_fargate_task(self, fakes: Fakes) -> None:
        """run-task registers the task and starts it once on Fargate in the given network."""
        done = fakes.run(DEPLOY_SH, "run-task", **RUN_TASK_ENV)
        assert done.returncode == 0, done.stderr
        register, run_task = fakes.argvs()
        assert register[:3] == ["aws", "ecs", "register-task-definition"]
        assert run_task[:12] == [
            "aws", "ecs", "run-task", "--region", "eu-west-1", "--cluster", "main",
            "--launch-type", "FARGATE", "--count", "1", "--task-definition",
        ]  # fmt: skip
        assert run_task[12] == REGISTERED_ARN
        assert run_task[run_task.index("--network-configuration") + 1] == (
            "awsvpcConfiguration={subnets=[subnet-aaa,subnet-bbb],securityGroups=[sg-123],"
            "assignPublicIp=DISABLED}"
        )
        assert "started arn:aws:ecs:" in done.stdout

    def test_a_task_ecs_could_not_place_is_an_error(self, fakes: Fakes) -> None:
        """When ECS starts no task, the script fails with ECS's reason."""
        outputs = {**fakes.config["outputs"], "aws ecs run-task": "None\tRESOURCE:MEMORY"}
        fakes.set(outputs=outputs)
        done = fakes.run(DEPLOY_SH, "run-task", **RUN_TASK_ENV)
        assert done.returncode == 2
        assert "ECS started no task: RESOURCE:MEMORY" in done.stderr

    def test_a_refused_rendering_stops_before_aws(self, fakes: Fakes) -> None:
        """A grace period the stop timeout cannot cover stops the deploy before any aws call."""
        done = fakes.run(DEPLOY_SH, **DEPLOY_ENV, SHUTDOWN_GRACE_SECONDS="45")
        assert done.returncode == 2
        assert "SHUTDOWN_GRACE_SECONDS=45" in done.stderr
        assert fakes.calls() == []

    def test_env_file_with_json_values_is_read(self, fakes: Fakes, tmp_path: Path) -> None:
        """An env file with JSON and $ in values reaches the task definition unchanged."""
        env_file = tmp_path / "prod.env"
        lines = [f"{k}={v}" for k, v in DEPLOY_ENV.items()]
        lines += [f"EPR_MOCK_ROLES={OPTIONAL_SAMPLE['EPR_MOCK_ROLES']}", "JWT_AUDIENCE=$vault"]
        env_file.write_text("\n".join(lines) + "\n")
        done = fakes.run(DEPLOY_SH, ENV_FILE=str(env_file))
        assert done.returncode == 0, done.stderr
        env = _environment(fakes.calls()[0]["file"])
        assert env["EPR_MOCK_ROLES"] == OPTIONAL_SAMPLE["EPR_MOCK_ROLES"]
        assert env["JWT_AUDIENCE"] == "$vault"
