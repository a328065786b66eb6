"""Which texts of a Messages request the provider reads, and restoring them in a response.

Pure: the request walker only decides where texts are; masking them is the caller's job,
so that every text of a request is masked in one batch.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

from patterns.engine import PLACEHOLDER_LITERAL_PATTERN, Snapshot, unmask_counted

TextMap = Callable[[str], str]

# Signed by the provider: any change breaks the signature, so they pass byte for byte.
# (An image's bytes pass too, through the binary-source rule below; any other field of an
# image block is masked like text.)
UNTOUCHED_BLOCKS = ("thinking", "redacted_thinking")  # tuples: a client's "type" may not hash
# Fields of blocks that identify, sign or describe a format rather than say something.
_STRUCTURAL_KEYS = frozenset(
    {"type", "id", "tool_use_id", "signature", "cache_control", "media_type"}
)
# Document sources that carry bytes or point elsewhere: nothing in them is text to read.
BINARY_SOURCES = ("base64", "url", "file")


# Top-level fields whose strings are names, flags or settings rather than text to read.
_SETTING_FIELDS = frozenset(
    {"model", "max_tokens", "stream", "temperature", "top_p", "top_k", "tool_choice",
     "thinking", "service_tier", "cache_control", "context_management", "output_config",
     "container", "mcp_servers"}
)  # fmt: skip
_KNOWN_FIELDS = _SETTING_FIELDS | {"system", "messages", "tools", "stop_sequences", "metadata"}


def map_request_texts(body: Mapping[str, Any], fn: TextMap) -> dict[str, Any]:
    """A copy of the request with fn applied to every text the provider reads, in order.

    Fields this module does not know are treated as text: every string in them (dictionary
    keys included) is masked, since the provider might read it.
    """
    result = {k: v if k in _KNOWN_FIELDS else map_leaves(v, fn) for k, v in body.items()}
    if "system" in body:
        result["system"] = _map_content(body["system"], fn)
    if isinstance(body.get("messages"), list):
        result["messages"] = [_map_message(m, fn) for m in body["messages"]]
    if isinstance(body.get("tools"), list):
        result["tools"] = [_map_tool(t, fn) for t in body["tools"]]
    # The model writes placeholders, so a stop sequence must be one too to ever match.
    if isinstance(body.get("stop_sequences"), list):
        result["stop_sequences"] = [_text(s, fn) for s in body["stop_sequences"]]
    metadata = body.get("metadata")
    if isinstance(metadata, dict) and isinstance(metadata.get("user_id"), str):
        result["metadata"] = {**metadata, "user_id": fn(metadata["user_id"])}
    return result


def _text(value: Any, fn: TextMap) -> Any:
    return fn(value) if isinstance(value, str) else value


def request_texts(body: Mapping[str, Any]) -> list[str]:
    texts: list[str] = []

    def collect(text: str) -> str:
        texts.append(text)
        return text

    map_request_texts(body, collect)
    return texts


def replace_request_texts(body: Mapping[str, Any], texts: Iterator[str]) -> dict[str, Any]:
    """The request with its texts replaced, in the order request_texts() listed them."""
    return map_request_texts(body, lambda _: next(texts))


def _map_message(message: Any, fn: TextMap) -> Any:
    if not isinstance(message, dict) or "content" not in message:
        return message
    return {**message, "content": _map_content(message["content"], fn)}


def _map_content(content: Any, fn: TextMap) -> Any:
    if isinstance(content, str):
        return fn(content)
    if isinstance(content, list):
        return [_map_block(block, fn) for block in content]
    return content


def _map_block(block: Any, fn: TextMap) -> Any:
    # Every field of a block is text to mask unless it identifies, signs or carries binary
    # data: fields we do not know (a new block type, an odd shape) fail closed, masked.
    if not isinstance(block, dict) or block.get("type") in UNTOUCHED_BLOCKS:
        return block
    result: dict[str, Any] = {}
    for key, value in block.items():
        if key in _STRUCTURAL_KEYS:
            result[key] = value
        elif key == "content" and isinstance(value, str | list):
            result[key] = _map_content(value, fn)
        elif key == "source" and isinstance(value, dict):
            result[key] = _map_source(value, fn)
        else:
            result[key] = map_leaves(value, fn)
    return result


def _map_source(source: dict[str, Any], fn: TextMap) -> dict[str, Any]:
    if source.get("type") in BINARY_SOURCES:
        return source
    if source.get("type") == "content":
        return {**source, "content": _map_content(source.get("content"), fn)}
    return {k: v if k in _STRUCTURAL_KEYS else map_leaves(v, fn) for k, v in source.items()}


def _map_tool(tool: Any, fn: TextMap) -> Any:
    if not isinstance(tool, dict):
        return tool
    result = _with(tool, "description", fn)
    if isinstance(tool.get("input_schema"), dict):
        result["input_schema"] = _map_descriptions(tool["input_schema"], fn)
    return result


def _map_descriptions(schema: Any, fn: TextMap) -> Any:
    # Only descriptions: property names and types are the tool's contract.
    if isinstance(schema, dict):
        return {
            k: fn(v) if k == "description" and isinstance(v, str) else _map_descriptions(v, fn)
            for k, v in schema.items()
        }
    if isinstance(schema, list):
        return [_map_descriptions(item, fn) for item in schema]
    return schema


def _with(block: dict[str, Any], key: str, fn: TextMap) -> dict[str, Any]:
    value = block.get(key)
    return {**block, key: fn(value)} if isinstance(value, str) else dict(block)


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
        result["content"] = [_restore_block(block, restore_text) for block in message["content"]]
    return result, restored


def _restore_block(block: Any, fn: TextMap) -> Any:
    if not isinstance(block, dict) or block.get("type") in UNTOUCHED_BLOCKS:
        return block
    return {k: v if k in _STRUCTURAL_KEYS else map_leaves(v, fn) for k, v in block.items()}


def unmaskable_leftovers(
    body: Mapping[str, Any], snapshot: Snapshot, known_clean: frozenset[str] = frozenset()
) -> str | None:
    """The path of the first string in a masked request that still holds a value, if any.

    The last line of defence: identifiers, block types, model names and tool names are not
    masked (the provider needs them as they are), so a value there must stop the request.
    Signed thinking blocks and binary sources are not searched: they pass untouched.
    known_clean: strings this snapshot already found nothing in (the same text scans the
    same), such as a long system prompt without values; they are not scanned again.
    """
    for path, text in _strings(body, "body"):
        if text in known_clean:
            continue
        if any(f.pattern != PLACEHOLDER_LITERAL_PATTERN for f in snapshot.find(text)):
            return path
    return None


def _strings(value: Any, path: str) -> Iterator[tuple[str, str]]:
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _strings(item, f"{path}.{index}")
    elif isinstance(value, dict):
        if value.get("type") in UNTOUCHED_BLOCKS or value.get("type") in BINARY_SOURCES:
            return
        for key, item in value.items():
            if isinstance(key, str):
                yield f"{path} (a key)", key
            yield from _strings(item, f"{path}.{key}")
