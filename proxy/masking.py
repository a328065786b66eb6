"""Which texts of a Messages request the provider reads, and restoring them in a response.

Pure: the request walker only decides where texts are; masking them is the caller's job,
so that every text of a request is masked in one batch.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

from patterns.engine import unmask_counted

TextMap = Callable[[str], str]

# Signed by the provider: any change breaks the signature, so they pass byte for byte.
UNTOUCHED_BLOCKS = frozenset({"thinking", "redacted_thinking", "image"})
# Fields of unknown blocks that identify or sign rather than say something.
_STRUCTURAL_KEYS = frozenset(
    {"type", "id", "tool_use_id", "signature", "cache_control", "media_type"}
)


def map_request_texts(body: Mapping[str, Any], fn: TextMap) -> dict[str, Any]:
    """A copy of the request with fn applied to every text the provider reads, in order."""
    result = dict(body)
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
    if not isinstance(block, dict):
        return block
    kind = block.get("type")
    if kind in UNTOUCHED_BLOCKS:
        return block
    if kind == "text":
        # Citations quote documents: their text is the provider's to read as well.
        result = _with(block, "text", fn)
        if "citations" in block:
            result["citations"] = map_leaves(block["citations"], fn)
        return result
    if kind in ("tool_use", "server_tool_use"):
        return {**block, "input": map_leaves(block.get("input"), fn)} if "input" in block else block
    if kind == "tool_result":
        return (
            {**block, "content": _map_content(block["content"], fn)}
            if "content" in block
            else block
        )
    if kind == "document":
        return _map_document(block, fn)
    # A block type we do not know yet: mask every string the provider could read in it.
    return {k: v if k in _STRUCTURAL_KEYS else map_leaves(v, fn) for k, v in block.items()}


def _map_document(block: dict[str, Any], fn: TextMap) -> dict[str, Any]:
    result = _with(_with(block, "title", fn), "context", fn)
    source = block.get("source")
    if isinstance(source, dict):
        if source.get("type") == "text":
            result["source"] = _with(source, "data", fn)
        elif source.get("type") == "content":
            result["source"] = {**source, "content": _map_content(source.get("content"), fn)}
    return result


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
    """value with fn applied to every string leaf (dict keys are left alone)."""
    if isinstance(value, str):
        return fn(value)
    if isinstance(value, list):
        return [map_leaves(item, fn) for item in value]
    if isinstance(value, dict):
        return {k: map_leaves(v, fn) for k, v in value.items()}
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
