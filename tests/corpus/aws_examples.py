"""AWS's own API examples as a regression corpus: every example request and response that
botocore ships (the examples the AWS CLI and SDK documentation show), as the JSON a user
would paste, with the sensitive values in it labelled by the field that holds them.

The labels come from the structure AWS gives each value, not from our rules: the value of an
"Arn" field is an ARN, of "OwnerId" an account ID, of "Bucket" a bucket name, and so on. A
value is in scope when its field says what it is and its shape agrees (a 12-digit owner, a
lower-case bucket name); AWS's own names are not (arn:aws:iam::aws:policy/..., the managed
policies every account shares).
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import botocore

from patterns.engine import is_distinctive, stands_alone

_ARN = re.compile(r"arn:aws[a-z-]*:[a-z0-9-]+:[a-z0-9-]*:(?:[0-9]{12})?:[^\s\"';,]+")
# What in an ARN identifies (AWS's ARN format: arn:partition:service:region:account:resource,
# the resource being resource-id, resource-type/resource-id or resource-type:resource-id):
# the account, and the resource's id (for S3, the bucket).
_ARN_PARTS = re.compile(
    r"arn:aws[a-z-]*:(?:s3:::(?P<bucket>[a-z0-9][a-z0-9.-]+[a-z0-9])(?:/.*)?"
    r"|[a-z0-9-]+:[a-z0-9-]*:(?P<account>[0-9]{12})?:(?:[A-Za-z0-9-]+[/:])?(?P<id>.+))"
)
_ACCOUNT_FIELDS = ("accountid", "ownerid", "registryid", "accountnumber")
_ACCOUNT_NAMES = ("account", "owner")
_RESOURCE_ID = re.compile(r"[a-z][a-z0-9]*(?:-[a-z][a-z0-9]*)*-(?:[0-9a-f]{8}|[0-9a-f]{17})")
_ACCESS_KEY = re.compile(r"(?:AKIA|ASIA)[A-Z0-9]{16}")
_BUCKET_FIELDS = (
    "bucket",
    "bucketname",
    "targetbucket",
    "s3bucket",
    "s3bucketname",
    "destinationbucket",
    "sourcebucket",
)
_BUCKET_NAME = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
_DOTTED_QUAD = re.compile(r"[0-9]{1,3}(?:\.[0-9]{1,3}){3}")


@dataclass(frozen=True)
class Example:
    """One example request or response, as pretty-printed JSON, and the values in it."""

    name: str  # service.Operation.n.input|output
    text: str
    # (kind, value as it stands in the text, where it counts: "" for every occurrence in the
    # text, else only inside that enclosing value: a resource name that could be an ordinary
    # word, "Admins", is the ARN's, not every "Admins" of the text)
    values: tuple[tuple[str, str, str], ...]


def botocore_version() -> str:
    return str(botocore.__version__)


@cache
def examples() -> tuple[Example, ...]:
    """Every example botocore ships, with its labelled values (those with at least one)."""
    found = []
    data_dir = Path(botocore.__file__).parent / "data"
    for path in sorted(data_dir.glob("*/*/examples-1.json")):
        service = path.parent.parent.name
        operations = json.loads(path.read_text(encoding="utf-8")).get("examples", {})
        for operation, cases in sorted(operations.items()):
            for number, case in enumerate(cases):
                for part in ("input", "output"):
                    document = case.get(part)
                    if not document:
                        continue
                    labels = tuple(sorted(set(_labels(document))))
                    text = json.dumps(document, indent=2, ensure_ascii=False)
                    found.append(Example(f"{service}.{operation}.{number}.{part}", text, labels))
    return tuple(found)


def _labels(node: Any, field: str = "") -> Iterator[tuple[str, str, str]]:
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _labels(value, key)
    elif isinstance(node, list):
        for item in node:
            yield from _labels(item, field)
    elif isinstance(node, str):
        kind = label(field, node)
        if kind == "arn":
            yield from _arn_parts(node)
        elif kind is not None:
            yield kind, _as_written(node), ""


def _arn_parts(arn: str) -> Iterator[tuple[str, str, str]]:
    """An ARN's identifying parts: its structure (partition, service, region, type) is not
    sensitive, and the proxy keeps it readable. AWS's own ARNs (no account, as the managed
    policies "arn:aws:iam::aws:policy/...") identify nothing of a customer's."""
    parts = _ARN_PARTS.fullmatch(arn)
    if parts is None:
        return
    if parts.group("bucket"):
        yield "arn_bucket", parts.group("bucket"), ""
    if parts.group("account"):
        yield "arn_account", parts.group("account"), ""
        for segment in _identifying_segments(parts.group("id")):
            within = "" if is_distinctive(segment) else _as_written(arn)
            yield "arn_resource_id", _as_written(segment), within


# Words of AWS's own in ARN resource paths (AWS's ARN formats: load balancer kinds, DynamoDB
# streams and indexes, CloudWatch log streams, IAM's service paths), and values that name no
# one: version numbers, a stream's creation time, $LATEST, wildcards.
_AWS_RESOURCE_WORDS = frozenset(
    {"app", "net", "gwy", "stream", "index", "log-stream", "service-role", "aws-service-role"}
    | {"aws-reserved", "$LATEST", "service_control_policy", "tag_policy", "backup_policy"}
    | {"aiservices_opt_out_policy"}
)
_NAMES_NO_ONE = re.compile(r"[0-9]+|[a-z]+(?:[A-Z][a-z]+)*Name")  # and keys ("policyName")
_NAMES_NO_ONE_INSIDE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:.]+[0-9]|\$LATEST")


def _identifying_segments(resource_id: str) -> Iterator[str]:
    """The parts of an ARN's resource (split at '/' and ':') that identify something of the
    customer's, without the wildcards at their edges ("dev-*" names "dev-")."""
    for segment in re.split(r"[/:]", _NAMES_NO_ONE_INSIDE.sub("", resource_id)):
        segment = segment.strip("*")
        names = any(ch.isalnum() for ch in segment) and not _NAMES_NO_ONE.fullmatch(segment)
        if names and segment not in _AWS_RESOURCE_WORDS:
            yield segment


def _as_written(value: str) -> str:
    return json.dumps(value, ensure_ascii=False)[1:-1]


def label(field: str, value: str) -> str | None:
    """What kind of sensitive value the field holds, if its shape agrees; else None."""
    key = field.lower()
    if _ARN.fullmatch(value):
        return "arn"
    if re.fullmatch(r"[0-9]{12}", value) and (
        key.endswith(_ACCOUNT_FIELDS) or key in _ACCOUNT_NAMES
    ):
        return "account_id"
    if _ACCESS_KEY.fullmatch(value):
        return "access_key_id"
    if key.endswith("id") and _RESOURCE_ID.fullmatch(value):
        return "resource_id"
    if key in _BUCKET_FIELDS and _BUCKET_NAME.fullmatch(value):
        return "bucket"
    if key.endswith("secretaccesskey"):
        return "secret_access_key"
    if key.endswith("sessiontoken"):
        return "session_token"
    if key.endswith("password") and value:
        return "password"
    if "ip" in key and _DOTTED_QUAD.fullmatch(value):
        try:
            return "public_ip" if ipaddress.ip_address(value).is_global else None
        except ValueError:
            return None
    return None


def occurrences(text: str, value: str, within: str = "") -> Iterator[int]:
    """Where value stands as a value of its own in text: not inside a longer run of ASCII
    letters and digits (the engine's boundary: "1234567891011EXAMPLE" holds no account ID).
    within: only its occurrences inside those of this enclosing value."""
    if within:
        offset = within.rfind(value)
        for start in occurrences(text, within):
            yield start + offset
        return
    start = text.find(value)
    while start >= 0:
        if stands_alone(text, start, start + len(value)):
            yield start
        start = text.find(value, start + 1)
