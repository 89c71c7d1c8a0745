#!/usr/bin/env python3
"""Render ops/ecs-task-def.json.template into an ECS task definition.

    python3 ops/render_task_def.py [--template PATH] [--output PATH]
    python3 ops/render_task_def.py --list-missing
    python3 ops/render_task_def.py --exports ENV_FILE

The template is JSON whose string values may hold ``${NAME}`` placeholders.
Each is replaced by the environment variable NAME, escaped as JSON string
content, so any value (quotes, backslashes, newlines) stays one string. A
placeholder with no value fails the rendering, naming every missing variable,
unless it is in ``DEFAULTS``; the required ones are listed in ``REQUIRED``.
Afterwards the result must parse as JSON, hold no ``${...}`` left over, keep
``stopTimeout`` above ``SHUTDOWN_GRACE_SECONDS`` (and within Fargate's 120 s),
and take every secret from an ARN. Environment entries whose value is empty
are dropped: for the service an empty variable and an absent one are the same.

``--exports ENV_FILE`` reads ``NAME=value`` lines literally (no shell
expansion; blank lines and ``#`` comments skipped; one pair of surrounding
quotes removed) and prints ``export NAME='value'`` lines for the deployment
scripts to ``eval``. Empty values are skipped; the others replace the
environment's.

Standard library only, so the deployment scripts run it with any python3.
Exit status: 0 on success, 2 when the rendering or the env file is refused.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import shlex
import string
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

TEMPLATE = Path(__file__).resolve().parent / "ecs-task-def.json.template"

# Placeholders that must be set (non-empty) for a deployment.
REQUIRED: tuple[str, ...] = (
    "IMAGE_URI",
    "AWS_REGION",
    "ENVIRONMENT",
    "LOG_GROUP_NAME",
    "ECS_EXECUTION_ROLE_ARN",
    "ECS_TASK_ROLE_ARN",
    "DATABASE_URL_SECRET_ARN",
    "JWT_PUBLIC_KEY_SECRET_ARN",
    "LEDGER_SIGNING_KEY_SECRET_ARN",
    # A task's disk goes with the task: documents live in S3 on ECS.
    "DOCUMENT_VAULT_BUCKET",
    "AWS_S3_KMS_KEY_ID",
)

# Every other placeholder, with the value used when it is unset. An empty
# value leaves the variable out of the task, so the service's default applies.
DEFAULTS: dict[str, str] = {
    "TASK_FAMILY": "document-vault",
    "TASK_CPU": "1024",
    "TASK_MEMORY": "2048",
    "CPU_ARCHITECTURE": "X86_64",
    "LOG_LEVEL": "INFO",
    "LOG_FORMAT": "json",
    "SHUTDOWN_GRACE_SECONDS": "20",
    "DATABASE_POOL_PRE_PING": "",
    "PUBLIC_BASE_URL": "",
    "AWS_ENDPOINT_URL": "",
    "AWS_S3_ENDPOINT_URL": "",
    "DOCUMENT_EVENTS_QUEUE_URL": "",
    "AUDIT_SNS_TOPIC_ARN": "",
    "COMPLIANCE_ALERT_QUEUE_URL": "",
    "ENABLE_DOCUMENT_CONSUMER": "",
    "DOCUMENT_VAULT_SQS_URL": "",
    "DOCUMENT_CONSUMER_MAX_MESSAGES": "",
    "DOCUMENT_CONSUMER_WAIT_TIME": "",
    "DOCUMENT_CONSUMER_VISIBILITY_TIMEOUT": "",
    "OUTBOX_RETENTION_HOURS": "",
    "OUTBOX_LEASE_SECONDS": "",
    "ORPHAN_BLOB_GRACE_SECONDS": "",
    "MAX_UPLOAD_FILE_SIZE_BYTES": "",
    "ALLOWED_MIME_TYPES": "",
    "ENABLE_DUPLICATE_HASH_DETECTION": "",
    "EPR_SERVICE_URL": "",
    "EPR_MOCK_MODE": "",
    "EPR_MOCK_ROLES": "",
    "EPR_SERVICE_TIMEOUT": "",
    "EPR_CACHE_TTL_SECONDS": "",
    "JWT_ISSUER": "",
    "JWT_AUDIENCE": "",
    "PRESIGNED_URL_EXPIRATION_SECONDS": "",
    "LEDGER_ORIGIN": "",
    "LEDGER_CHECKPOINT_INTERVAL_SECONDS": "",
    "BLOCKCHAIN_ENDPOINT_URL": "",
    "LEDGER_WITNESSES": "",
    "LEDGER_WITNESS_QUORUM": "",
    "LEDGER_TSA_URL": "",
    "LEDGER_TSA_CERTS": "",
    "LEDGER_TIMESTAMP_INTERVAL_SECONDS": "",
    "BLOCKCHAIN_CHAIN_ID": "",
    "BLOCKCHAIN_CONFIRMATIONS": "",
    "LEDGER_ANCHOR_INTERVAL_SECONDS": "",
    "INTEGRITY_SWEEP_PERIOD_HOURS": "",
    "INTEGRITY_SWEEP_MAX_MB_PER_SECOND": "",
    "ENTITY_FREEZE_ON_MISMATCH": "",
    # Optional secrets: left out of the task when unset, like an empty value.
    "BLOCKCHAIN_PRIVATE_KEY_SECRET_ARN": "",
    "INCIDENT_WEBHOOK_URL_SECRET_ARN": "",
}

# The service's own default when SHUTDOWN_GRACE_SECONDS is not in the task.
SERVICE_SHUTDOWN_GRACE_SECONDS = 20.0
DEPLOYED_ENVIRONMENTS = ("dev", "staging", "prod")
FARGATE_MAX_STOP_TIMEOUT = 120
_LEFTOVER = re.compile(r"\$\{[^}]*\}")
_ENTRY = re.compile(
    r'\{\n\s+("name": "[^"\n]*"),\n\s+("value(?:From)?": "(?:[^"\\\n]|\\.)*")\n\s+\}'
)
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class RenderError(Exception):
    """The template cannot be rendered with these values; the message says why."""


def placeholders(template: str) -> list[str]:
    """The distinct placeholder names of ``template``, in order of appearance."""
    names: list[str] = []
    for match in string.Template.pattern.finditer(template):
        if match.group("invalid") is not None:
            line = template.count("\n", 0, match.start()) + 1
            raise RenderError(f"template line {line}: a '$' that is not a ${{NAME}} placeholder")
        name = match.group("named") or match.group("braced")
        if name and name not in names:
            names.append(name)
    return names


def missing_variables(template: str, env: Mapping[str, str]) -> list[str]:
    """Placeholders without a default whose variable is unset or empty, ``REQUIRED`` first."""
    names = placeholders(template)
    ordered = [n for n in REQUIRED if n in names] + [n for n in names if n not in REQUIRED]
    return [n for n in ordered if n not in DEFAULTS and not env.get(n, "").strip()]


def render(env: Mapping[str, str], template: str | None = None) -> dict[str, Any]:
    """The task definition for ``env``; ``RenderError`` when it cannot be made."""
    text = TEMPLATE.read_text(encoding="utf-8") if template is None else template
    missing = missing_variables(text, env)
    if missing:
        raise RenderError(f"missing required variable(s): {', '.join(missing)}")
    values = {name: env.get(name, DEFAULTS.get(name, "")).strip() for name in placeholders(text)}
    escaped = {name: json.dumps(value)[1:-1] for name, value in values.items()}
    rendered = string.Template(text).substitute(escaped)
    try:
        task: dict[str, Any] = json.loads(rendered)
    except json.JSONDecodeError as exc:
        raise RenderError(f"the rendered task definition is not valid JSON: {exc}") from None
    leftover = sorted(set(_LEFTOVER.findall(json.dumps(task))))
    if leftover:
        raise RenderError(f"unreplaced placeholder(s) in the result: {', '.join(leftover)}")
    environment = values.get("ENVIRONMENT")
    if environment is not None and environment.lower() not in DEPLOYED_ENVIRONMENTS:
        raise RenderError(
            f"ENVIRONMENT: expected one of {', '.join(DEPLOYED_ENVIRONMENTS)} on ECS, got "
            f"{environment!r} (local and test accept identity from request headers)"
        )
    for container in task["containerDefinitions"]:
        container["environment"] = [e for e in container.get("environment", []) if e["value"]]
        container["secrets"] = [s for s in container.get("secrets", []) if s["valueFrom"]]
        _check_container(container)
    return task


def _check_container(container: dict[str, Any]) -> None:
    name = container.get("name", "?")
    env_names = [e["name"] for e in container["environment"]]
    secret_names = [s["name"] for s in container.get("secrets", [])]
    names = env_names + secret_names
    doubled = sorted({n for n in names if names.count(n) > 1})
    if doubled:
        raise RenderError(f"container {name}: variable(s) set twice: {', '.join(doubled)}")
    for secret in container.get("secrets", []):
        if not secret["valueFrom"].startswith("arn:"):
            raise RenderError(
                f"container {name}: secret {secret['name']} must come from an SSM parameter or "
                f"Secrets Manager ARN (arn:…), got {secret['valueFrom']!r}"
            )
    environment = {e["name"]: e["value"] for e in container["environment"]}
    raw_grace = environment.get("SHUTDOWN_GRACE_SECONDS")
    try:
        grace = SERVICE_SHUTDOWN_GRACE_SECONDS if raw_grace is None else float(raw_grace)
    except ValueError:
        raise RenderError(f"SHUTDOWN_GRACE_SECONDS: expected a number, got {raw_grace!r}") from None
    stop_timeout = container.get("stopTimeout")
    if not isinstance(stop_timeout, int) or not 0 < stop_timeout <= FARGATE_MAX_STOP_TIMEOUT:
        raise RenderError(
            f"container {name}: stopTimeout must be 1-{FARGATE_MAX_STOP_TIMEOUT} s on Fargate, "
            f"got {stop_timeout!r}"
        )
    if math.isnan(grace) or grace >= stop_timeout:
        raise RenderError(
            f"SHUTDOWN_GRACE_SECONDS={raw_grace} must be below the container's stopTimeout "
            f"({stop_timeout} s), or ECS kills the service before it has stopped"
        )


def to_text(task: Mapping[str, Any]) -> str:
    """Indented JSON with each environment or secret entry on one line."""
    text = json.dumps(task, indent=2, ensure_ascii=False)
    return _ENTRY.sub(r"{\1, \2}", text) + "\n"


def read_env_file(path: Path) -> dict[str, str]:
    """``NAME=value`` pairs of an env file, read literally; ``RenderError`` on a bad line."""
    pairs: dict[str, str] = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.startswith("export "):
            stripped = stripped[len("export ") :].lstrip()
        name, sep, value = stripped.partition("=")
        name = name.strip()
        if not sep or not _NAME.fullmatch(name):
            raise RenderError(f"{path}:{number}: expected NAME=value")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        pairs[name] = value
    return pairs


def shell_exports(pairs: Mapping[str, str]) -> str:
    """``export NAME='value'`` lines for the non-empty values, safe to ``eval``."""
    return "".join(f"export {n}={shlex.quote(v)}\n" for n, v in pairs.items() if v)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="render_task_def.py", description="Render the ECS task definition template."
    )
    parser.add_argument("--template", type=Path, default=TEMPLATE)
    parser.add_argument("--output", type=Path, help="write here instead of standard output")
    what = parser.add_mutually_exclusive_group()
    what.add_argument(
        "--list-missing", action="store_true",
        help="print the required variables that are unset, space-separated, and exit 0",
    )  # fmt: skip
    what.add_argument(
        "--exports", type=Path, metavar="ENV_FILE",
        help="print an env file as shell export lines",
    )  # fmt: skip
    args = parser.parse_args(argv)
    try:
        if args.exports is not None:
            sys.stdout.write(shell_exports(read_env_file(args.exports)))
            return 0
        template = args.template.read_text(encoding="utf-8")
        if args.list_missing:
            print(" ".join(missing_variables(template, os.environ)))
            return 0
        task = render(os.environ, template)
    except (RenderError, OSError) as exc:
        print(f"render_task_def.py: {exc}", file=sys.stderr)
        return 2
    text = to_text(task)
    if args.output is None:
        sys.stdout.write(text)
    else:
        args.output.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
