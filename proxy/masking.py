"""Where the strings of a Messages request sit, what each is to the provider, and restoring.

Pure. Only the top-level fields in FORWARDED_FIELDS are forwarded at all; every string of
those has one of three places, decided by where it sits in the Messages schema (never by a
`type` a client could write anywhere):

- text the model reads: masked, its values becoming placeholders;
- a name, id, setting, address or opaque token the provider acts on: checked, since a
  placeholder there would change what the provider does: a value in one refuses the request;
- signed or binary data: skipped. Only two positions: thinking, redacted_thinking and
  compaction blocks of assistant turns, with only the fields such blocks have (their signatures
  must verify), and the data of a base64 source that decodes to the file type it declares.

Security assumption: a string this module does not know the place of is masked (text) or,
in settings, checked; nothing unknown is skipped.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from patterns.engine import PLACEHOLDER_LITERAL_PATTERN, Snapshot, unmask_counted

TextMap = Callable[[str], str]

# The Messages API request fields LiteLLM forwards to the provider. LiteLLM reads many other
# keyword arguments as options (where to send, with which key, which callbacks, which files):
# a client's field must never become one, so every other top-level field is dropped.
FORWARDED_FIELDS = frozenset(
    {"model", "messages", "max_tokens", "system", "stream", "temperature", "top_p", "top_k",
     "stop_sequences", "tools", "tool_choice", "thinking", "metadata", "service_tier",
     "container", "context_management", "mcp_servers", "output_config", "output_format",
     "cache_control", "inference_geo", "speed", "compaction"}
)  # fmt: skip
# Blocks the provider signs, with the fields they have: any change breaks the signature, so in
# an assistant turn (where the provider wrote them) they pass byte for byte, both ways. A block
# with another field is not one of them: a client cannot dress text up as a signed block.
SIGNED_BLOCKS: Mapping[str, frozenset[str]] = {
    "thinking": frozenset({"type", "thinking", "signature"}),
    "redacted_thinking": frozenset({"type", "data"}),
    "compaction": frozenset(
        {"type", "content", "encrypted_content", "signature", "tool_changes", "cache_control"}
    ),
}
# Fields of blocks that identify, sign or configure rather than say something.
_CHECKED_BLOCK_KEYS = frozenset(
    {"type", "id", "tool_use_id", "name", "server_name", "file_id", "media_type",
     "cache_control", "signature", "encrypted_content", "encrypted_index", "container_id"}
)  # fmt: skip
# Source fields the provider acts on: it fetches the URL or looks up the file.
_CHECKED_SOURCE_KEYS = frozenset({"type", "media_type", "url", "file_id"})
# Tool fields the model reads; every other field of a tool definition configures it.
_TOOL_TEXT_KEYS = frozenset({"description", "input_examples"})
# JSON Schema keywords whose values are prose or sample values, not structure.
_SCHEMA_TEXT_KEYS = frozenset(
    {"description", "title", "examples", "example", "default", "enum", "const", "$comment"}
)
# Settings fields that are prompts (compaction's and context editing's instructions).
_SETTING_TEXT_KEYS = frozenset({"instructions"})
# What a base64 source's data must start with, decoded, to count as the file it says it is.
_FILE_SIGNATURES: Mapping[str, tuple[bytes, ...]] = {
    "image/png": (b"\x89PNG\r\n\x1a\n",),
    "image/jpeg": (b"\xff\xd8\xff",),
    "image/gif": (b"GIF87a", b"GIF89a"),
    "image/webp": (b"RIFF",),
    "application/pdf": (b"%PDF-",),
}


@dataclass(frozen=True)
class Visitor:
    """What to do with each kind of string: mask (text) and check (names, settings).

    prose: for the pieces of prose the model reads back to back (a text block, a string
    content), told whether the piece continues the one before; mask when not given.
    """

    mask: TextMap
    check: TextMap
    prose: Callable[[str, bool], str] | None = None

    def piece(self, text: str, joins: bool) -> str:
        return self.mask(text) if self.prose is None else self.prose(text, joins)


@dataclass
class _Run:
    """Whether the next piece of prose continues the last one: adjacent text blocks, and the
    edges of consecutive messages of one role (the API merges those into one turn)."""

    role: Any = None
    open: bool = False


def _same(text: str) -> str:
    return text


def forwarded_request(body: Mapping[str, Any]) -> dict[str, Any]:
    """The fields of a request that go to the provider; metadata reduced to its user_id."""
    forwarded = {key: value for key, value in body.items() if key in FORWARDED_FIELDS}
    if "metadata" in forwarded:
        metadata = forwarded.pop("metadata")
        user_id = metadata.get("user_id") if isinstance(metadata, dict) else None
        if isinstance(user_id, str):
            forwarded["metadata"] = {"user_id": user_id}
    return forwarded


def map_request(body: Mapping[str, Any], visitor: Visitor) -> dict[str, Any]:
    """A copy of a (forwarded) request with each string mapped by its place, in order."""
    result: dict[str, Any] = {}
    for key, value in body.items():
        if key == "messages" and isinstance(value, list):
            run = _Run()
            result[key] = [_map_message(message, visitor, run) for message in value]
        elif key == "system":
            result[key] = _map_content(value, visitor, signed=False, run=_Run())
        elif key == "tools" and isinstance(value, list):
            result[key] = [_map_tool(tool, visitor) for tool in value]
        elif key in ("stop_sequences", "metadata"):
            # The model writes placeholders, so a stop sequence must be one too to ever match.
            result[key] = map_leaves(value, visitor.mask)
        else:
            result[key] = _map_setting(value, visitor)
    return result


@dataclass(frozen=True)
class RequestStrings:
    """A request's strings by place, in the order map_request visits them.

    runs: for each text, the number of the run it belongs to: texts with one number are
    pieces of prose the model reads back to back, to be scanned as one.
    """

    texts: list[str]
    checked: list[str]
    runs: list[int]


def request_strings(body: Mapping[str, Any]) -> RequestStrings:
    texts: list[str] = []
    checked: list[str] = []
    runs: list[int] = []
    last_prose = [-1]  # the run of the last piece of prose (other texts may come between)

    def add_text(text: str) -> str:
        runs.append(len(runs))
        texts.append(text)
        return text

    def add_prose(text: str, joins: bool) -> str:
        run = last_prose[0] if joins and last_prose[0] >= 0 else len(runs)
        last_prose[0] = run
        runs.append(run)
        texts.append(text)
        return text

    def add_checked(text: str) -> str:
        checked.append(text)
        return text

    map_request(body, Visitor(mask=add_text, check=add_checked, prose=add_prose))
    return RequestStrings(texts=texts, checked=checked, runs=runs)


def request_texts(body: Mapping[str, Any]) -> list[str]:
    """The texts the model reads, in order (what masking replaces)."""
    return request_strings(body).texts


def replace_request_texts(body: Mapping[str, Any], texts: Iterator[str]) -> dict[str, Any]:
    """The request with its texts replaced, in the order request_texts() listed them."""
    return map_request(body, Visitor(mask=lambda _: next(texts), check=_same))


def _map_message(message: Any, visitor: Visitor, run: _Run) -> Any:
    if not isinstance(message, dict):
        run.open = False
        return _map_setting(message, visitor)
    role = message.get("role")
    if role != run.role:
        run.role, run.open = role, False
    signed = role == "assistant"
    return {
        visitor.check(key): _map_content(value, visitor, signed=signed, run=run)
        if key == "content"
        else _map_setting(value, visitor)
        for key, value in message.items()
    }


def _map_content(content: Any, visitor: Visitor, *, signed: bool, run: _Run) -> Any:
    if isinstance(content, str):
        text = visitor.piece(content, run.open)
        run.open = True
        return text
    if isinstance(content, list):
        mapped = []
        for block in content:
            mapped.append(_map_block(block, visitor, signed=signed, run=run))
            run.open = _is_text_block(block)
        return mapped
    run.open = False
    return map_leaves(content, visitor.mask)


def _is_text_block(block: Any) -> bool:
    return isinstance(block, dict) and block.get("type") == "text" and "text" in block


def is_signed_block(block: Mapping[str, Any], *, exact: bool = True) -> bool:
    """Whether a block is one the provider signs; exact: with only the fields such blocks have
    (a client's request), else by its type alone (the provider's own reply)."""
    kind = block.get("type")
    fields = SIGNED_BLOCKS.get(kind) if isinstance(kind, str) else None
    return fields is not None and (not exact or block.keys() <= fields)


def _map_block(
    block: Any, visitor: Visitor, *, signed: bool, exact: bool = True, run: _Run | None = None
) -> Any:
    """One content block; signed: whether the provider wrote it (an assistant turn); run:
    the prose it may continue, for a block of a message or system list."""
    if not isinstance(block, dict):
        return map_leaves(block, visitor.mask)
    if signed and is_signed_block(block, exact=exact):
        return block
    prose = run is not None and _is_text_block(block)
    result: dict[str, Any] = {}
    for key, value in block.items():
        name = visitor.check(key)
        if key in _CHECKED_BLOCK_KEYS:
            result[name] = map_leaves(value, visitor.check)
        elif key == "text" and prose and isinstance(value, str) and run is not None:
            result[name] = visitor.piece(value, run.open)
        elif key == "content" and isinstance(value, str | list):
            result[name] = _map_content(value, visitor, signed=False, run=_Run())
        elif key == "source" and isinstance(value, dict):
            result[name] = _map_source(value, visitor)
        elif key == "citations" and isinstance(value, list):
            result[name] = [_map_block(item, visitor, signed=False) for item in value]
        else:
            # Text, a tool's input, or a field this module does not know: the model may read
            # it, so it is masked (keys included).
            result[name] = map_leaves(value, visitor.mask)
    return result


def _map_source(source: dict[str, Any], visitor: Visitor) -> dict[str, Any]:
    kind = source.get("type")
    result: dict[str, Any] = {}
    for key, value in source.items():
        name = visitor.check(key)
        if key == "data" and kind == "base64" and is_binary(value, source.get("media_type")):
            result[name] = value
        elif key in _CHECKED_SOURCE_KEYS or (key == "data" and kind == "base64"):
            # A URL the provider fetches, a file it looks up, or base64 that is not the file it
            # claims to be: a placeholder would not do, so a value here refuses the request.
            result[name] = map_leaves(value, visitor.check)
        elif key == "content" and kind == "content":
            result[name] = _map_content(value, visitor, signed=False, run=_Run())
        else:
            result[name] = map_leaves(value, visitor.mask)
    return result


def is_binary(data: Any, media_type: Any) -> bool:
    """Whether base64 data decodes to the start of a file of its declared media type."""
    signatures = _FILE_SIGNATURES.get(media_type) if isinstance(media_type, str) else None
    if not isinstance(data, str) or signatures is None:
        return False
    try:
        head = base64.b64decode(data[:24], validate=True)
    except (binascii.Error, ValueError):
        return False
    return any(head.startswith(signature) for signature in signatures)


def _map_tool(tool: Any, visitor: Visitor) -> Any:
    if not isinstance(tool, dict):
        return _map_setting(tool, visitor)
    result: dict[str, Any] = {}
    for key, value in tool.items():
        name = visitor.check(key)
        if key in _TOOL_TEXT_KEYS:
            result[name] = map_leaves(value, visitor.mask)
        elif key == "input_schema":
            result[name] = _map_schema(value, visitor)
        else:
            result[name] = _map_setting(value, visitor)
    return result


def _map_schema(schema: Any, visitor: Visitor) -> Any:
    """A JSON Schema: its prose and sample values are text; names and types are checked."""
    if isinstance(schema, dict):
        return {
            visitor.check(key): map_leaves(value, visitor.mask)
            if key in _SCHEMA_TEXT_KEYS
            else _map_schema(value, visitor)
            for key, value in schema.items()
        }
    if isinstance(schema, list):
        return [_map_schema(item, visitor) for item in schema]
    return visitor.check(schema) if isinstance(schema, str) else schema


def _map_setting(value: Any, visitor: Visitor) -> Any:
    """A setting (tool_choice, thinking, mcp_servers, ...): checked, but for its prompts."""
    if isinstance(value, str):
        return visitor.check(value)
    if isinstance(value, list):
        return [_map_setting(item, visitor) for item in value]
    if isinstance(value, dict):
        result: dict[Any, Any] = {}
        for key, item in value.items():
            name = visitor.check(key) if isinstance(key, str) else key
            if key in _SETTING_TEXT_KEYS:
                result[name] = map_leaves(item, visitor.mask)
            elif key == "schema":
                result[name] = _map_schema(item, visitor)
            else:
                result[name] = _map_setting(item, visitor)
        return result
    return value


def map_leaves(value: Any, fn: TextMap) -> Any:
    """value with fn applied to every string in it, dictionary keys included."""
    if isinstance(value, str):
        return fn(value)
    if isinstance(value, list):
        return [map_leaves(item, fn) for item in value]
    if isinstance(value, dict):
        # Keys too: a tool input such as {"i-0123456789abcdef0": "running"} says as much.
        return {fn(k) if isinstance(k, str) else k: map_leaves(v, fn) for k, v in value.items()}
    return value


def restore_block(block: Any, restore_text: TextMap) -> Any:
    """A reply's content block with restore_text applied where masking would mask.

    The same places both ways, streamed or not: text, tool inputs, citations; never names,
    ids or signed blocks (the request's were checked, so they hold no placeholder of ours).
    """
    return _map_block(block, Visitor(mask=restore_text, check=_same), signed=True, exact=False)


def restore_response(
    message: Mapping[str, Any], restore: Mapping[str, str]
) -> tuple[dict[str, Any], int]:
    """A provider message with this request's placeholders restored, and how many were."""
    result = dict(message)
    restored = 0

    def restore_text(text: str) -> str:
        nonlocal restored
        text, count = unmask_counted(text, restore)
        restored += count
        return text

    if restore and isinstance(message.get("content"), list):
        result["content"] = [restore_block(block, restore_text) for block in message["content"]]
    return result, restored


def holds_value(text: str, snapshot: Snapshot) -> bool:
    """Whether text holds a sensitive value (a placeholder-shaped literal is not one)."""
    return any(f.pattern != PLACEHOLDER_LITERAL_PATTERN for f in snapshot.find(text))
