"""The AWS values a user pastes when asking about infrastructure, the prompt that holds them,
and how the end-to-end suites (Claude Code, the TypeScript SDK, an OpenAI route) check what
reached the provider and what came back."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any

from tests.support.e2e import SdkRun
from tests.support.fakes.anthropic_upstream import FakeAnthropic, RecordedRequest

# One value of each kind a user pastes when asking about AWS. Composite values keep their
# structure: the ARN's account and role name, the bucket of an s3:// URI and the instance
# label of an RDS endpoint are masked, each with its own placeholder.
EC2 = "i-0abc1234def567890"
VPC = "vpc-1a2b3c4d"
SUBNET = "subnet-0f1e2d3c4b5a69788"
SECURITY_GROUP = "sg-0123456789abcdef0"
PUBLIC_IP = "52.95.110.17"
ACCESS_KEY = "AKIAZ7Q3KX5MPL2RWT4N"
SECRET_KEY = "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"
ACCOUNT = "123456789012"
ARN_ACCOUNT = "210987654321"
ROLE = "deploy-bot"
ARN = f"arn:aws:iam::{ARN_ACCOUNT}:role/{ROLE}"
BUCKET_NAME = "acme-payroll-exports"
BUCKET = f"s3://{BUCKET_NAME}"
RDS_NAME = "orders-db.c9akciq32xyz"
RDS = f"{RDS_NAME}.us-east-1.rds.amazonaws.com"
# Each of these is replaced by one placeholder.
MASKED_VALUES = (
    EC2,
    VPC,
    SUBNET,
    SECURITY_GROUP,
    PUBLIC_IP,
    ACCESS_KEY,
    SECRET_KEY,
    ACCOUNT,
    ARN_ACCOUNT,
    ROLE,
    BUCKET_NAME,
    RDS_NAME,
)
PROMPT = (
    f"Instance {EC2} in {VPC} ({SUBNET}, {SECURITY_GROUP}) cannot reach {PUBLIC_IP} "
    f"or {RDS}. It runs as {ACCESS_KEY} with aws_secret_access_key={SECRET_KEY} in account "
    f"{ACCOUNT}, assumes {ARN} and writes to {BUCKET}/2025/."
)
# What must never reach the upstream: each value, and the parts a reader would recognise.
VALUES = (*MASKED_VALUES, "c9akciq32xyz")
# A placeholder anywhere in a text: a prefix, an underscore, at least three digits.
PLACEHOLDER = re.compile(r"\b[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)*_[0-9]{3,}\b")


def assert_nothing_leaked(upstream: FakeAnthropic, secrets: Sequence[str]) -> None:
    """No value (nor the proxy key) in any path, header or body the upstream received."""
    raw = upstream.raw_bodies()
    assert upstream.requests, "nothing reached the upstream"
    leaked = [secret for secret in secrets if secret.encode() in raw]
    assert leaked == [], f"reached the upstream: {leaked}"


def last_user_blocks(request: RecordedRequest) -> list[dict[str, object]]:
    body = request.json or {}
    users = [m for m in body.get("messages", []) if m.get("role") == "user"]
    content = users[-1]["content"]
    return [{"type": "text", "text": content}] if isinstance(content, str) else list(content)


def prompt_as_sent(request: RecordedRequest) -> str:
    """The last text block of the last user message: where Claude Code puts the prompt."""
    texts = [b["text"] for b in last_user_blocks(request) if b.get("type") == "text"]
    return str(texts[-1])


def masked_form(text: str, masked: str, values: Sequence[str]) -> dict[str, str]:
    """value -> placeholder, checking that `masked` is `text` with each value replaced."""
    values = list(values)
    anyone = re.compile("|".join(re.escape(v) for v in sorted(values, key=len, reverse=True)))
    pattern, position, named = [], 0, set()
    for found in anyone.finditer(text):
        name = f"v{values.index(found.group())}"
        pattern.append(re.escape(text[position : found.start()]))
        # A value met again must come back as the same placeholder.
        pattern.append(f"(?P={name})" if name in named else f"(?P<{name}>{PLACEHOLDER.pattern})")
        named.add(name)
        position = found.end()
    pattern.append(re.escape(text[position:]))
    match = re.fullmatch("".join(pattern), masked)
    assert match is not None, f"not the text with placeholders in place of values:\n{masked}"
    placeholders = {values[int(name[1:])]: p for name, p in match.groupdict().items()}
    assert len(set(placeholders.values())) == len(placeholders), f"shared: {placeholders}"
    return placeholders


def present(values: Sequence[str], text: str) -> list[str]:
    return [value for value in values if value in text]


def blocks_of(request: RecordedRequest, role: str, kind: str) -> list[dict[str, Any]]:
    """The content blocks of one type in the messages of one role, in order.

    A message whose content is a string counts as one text block.
    """
    messages = (request.json or {}).get("messages", [])
    contents = [m["content"] for m in messages if m["role"] == role]
    blocks = [[{"type": "text", "text": c}] if isinstance(c, str) else c for c in contents]
    return [b for c in blocks for b in c if b.get("type") == kind]


def text_of(content: object) -> str:
    if isinstance(content, str):
        return content
    assert isinstance(content, list), content
    return "".join(str(b["text"]) for b in content if b.get("type") == "text")


def scenario(name: str, kind: str, model: str, **more: Any) -> dict[str, Any]:
    return {"name": name, "kind": kind, "model": model, "prompt": PROMPT, **more}


def assert_no_placeholder_reached_the_client(run: SdkRun) -> None:
    """Nothing the SDK handed back (texts, tool inputs, errors) holds a placeholder."""
    found = PLACEHOLDER.findall(json.dumps([r["out"] for r in run.results.values()]))
    assert found == [], f"placeholders reached the client: {found}"


def report(label: str, run: SdkRun) -> None:
    times = ", ".join(f"{name} {r['ms']:.0f} ms" for name, r in run.results.items())
    print(
        f"\n  {label}: SDK {run.sdk_version}, {len(run.results)} scenarios in "
        f"{run.seconds:.2f} s (node included): {times}",
        end="",
    )
