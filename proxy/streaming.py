"""The provider's SSE stream: parsed incrementally, placeholders restored, relayed as it comes."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from patterns.engine import StreamUnmasker, unmask_counted
from proxy.masking import restore_block

_LINE_END = re.compile(rb"[\r\n]")
_LINE_SPLIT = re.compile(r"\r\n|\r|\n")
_CR = 0x0D
_LF = 0x0A
# The deltas whose text is restored: the field holding it, and whether it is raw partial
# JSON. thinking_delta and signature_delta are absent on purpose: a thinking block must
# reach the client byte for byte, or its signature no longer verifies.
_RESTORED_DELTAS: Mapping[str, tuple[str, bool]] = {
    "text_delta": ("text", False),
    "input_json_delta": ("partial_json", True),
}
# Nothing may still be held back once one of these is relayed: the message is over.
_END_EVENTS = frozenset({"message_delta", "message_stop", "error"})
_FINAL_EVENTS = frozenset({"message_stop", "error"})


@dataclass(frozen=True)
class StreamFailure:
    """An error event sent in place of one the gateway wrote, with the status to audit."""

    status: int
    error_type: str
    message: str


@dataclass(frozen=True)
class SSEEvent:
    """One server-sent event: its type, its data lines joined, and its bytes as received.

    The raws of a stream's events add up to the stream, except for blank lines after the last
    event, which carry nothing. A blank line or the LF of a CRLF cut from its CR by a chunk
    boundary opens the next event's raw.
    """

    event: str | None
    data: str
    raw: bytes


class SSEParser:
    """Splits a byte stream into server-sent events, however the bytes are chunked.

    Follows the SSE spec for line endings (LF, CRLF, CR), comments, multi-line data and the
    optional space after a colon. Unlike a browser it also returns blocks with no data field
    (a comment used as a keep-alive), so that a relay can pass every byte on. Each byte is
    scanned once, and an event is decoded from UTF-8 only when complete, so a character
    split across chunks is never cut.
    """

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._scan = 0  # where the search for the next line end resumes
        self._line_start = 0
        self._event_start = 0
        self._in_event = False  # a non-blank line was read since the last event
        self._lf_may_follow = False  # the last byte read was a CR that ended a line
        self._at_stream_start = True
        self._truncated = False

    @property
    def truncated(self) -> bool:
        """Whether close() found bytes of an event that never got its blank line."""
        return self._truncated

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        """The events that chunk completes, in order."""
        if not chunk:
            return []
        buffer = self._buffer
        buffer += chunk
        position = self._scan
        if self._lf_may_follow:
            self._lf_may_follow = False
            if buffer[position] == _LF:
                # The LF of a CRLF split across chunks: the line already ended at the CR.
                # It opens the next event's raw bytes, so that raws still add up to the stream.
                position += 1
                self._line_start = position
        events: list[SSEEvent] = []
        while (match := _LINE_END.search(buffer, position)) is not None:
            end = match.start()
            position = end + 1
            if buffer[end] == _CR:
                if position == len(buffer):
                    # A lone CR is a whole line end: dispatch now, rather than wait a read.
                    self._lf_may_follow = True
                elif buffer[position] == _LF:
                    position += 1
            if end > self._line_start:
                self._in_event = True
            elif self._in_event:
                events.append(self._parse(bytes(buffer[self._event_start : position]))[0])
                self._event_start = position
                self._in_event = False
            # A blank line with no event pending carries nothing; it opens the next raw.
            self._line_start = position
        self._scan = len(buffer)
        if self._event_start:
            # Once per feed, so a long event arriving in small chunks is not copied per line.
            del buffer[: self._event_start]
            self._line_start -= self._event_start
            self._scan -= self._event_start
            self._event_start = 0
        return events

    def close(self) -> list[SSEEvent]:
        """The end of the stream: an event left without its blank line, if it has data."""
        pending = bytes(self._buffer[self._event_start :])
        self._truncated = self._in_event or len(self._buffer) > self._line_start
        self._buffer = bytearray()
        self._scan = self._line_start = self._event_start = 0
        self._in_event = self._lf_may_follow = False
        if not self._truncated:
            return []
        event, has_data = self._parse(pending)
        return [event] if has_data else []

    def _parse(self, raw: bytes) -> tuple[SSEEvent, bool]:
        text = raw.decode("utf-8", "replace")
        if self._at_stream_start:
            self._at_stream_start = False
            text = text.removeprefix("\ufeff")
        event: str | None = None
        data: list[str] = []
        for line in _LINE_SPLIT.split(text):
            if not line or line.startswith(":"):
                continue
            name, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if name == "event":
                event = value or None
            elif name == "data":
                data.append(value)
            # id and retry mean nothing to a relay; they stay in raw.
        return SSEEvent(event=event, data="\n".join(data), raw=raw), bool(data)


_ERROR_TYPE = re.compile(r"[a-z_]{1,64}\Z")


def _error_type(data: str) -> str:
    """The error type of an error event's data: an identifier, or api_error for anything else."""
    payload = _load(data)
    error = payload.get("error") if payload is not None else None
    kind = error.get("type") if isinstance(error, dict) else None
    # Only an identifier goes on: the type reaches the audit and the logs.
    return kind if isinstance(kind, str) and _ERROR_TYPE.match(kind) else "api_error"


def encode_sse(event: str, data: Mapping[str, Any]) -> bytes:
    """One event as the provider writes it: event line, compact JSON data line, blank line."""
    if "\n" in event or "\r" in event:
        raise ValueError("An SSE event name cannot contain a line break.")
    try:
        body = json.dumps(dict(data), ensure_ascii=False, separators=(",", ":")).encode()
    except UnicodeEncodeError:
        # A lone surrogate (JSON's "\ud83d" without its pair) has no UTF-8 form: escape it,
        # as the provider did.
        body = json.dumps(dict(data), separators=(",", ":")).encode()
    return b"event: " + event.encode() + b"\ndata: " + body + b"\n\n"


class StreamRestorer:
    """Restores placeholders in a provider's SSE stream, relaying each event once it is safe.

    Only text_delta text, input_json_delta partial JSON and the text or tool input a block
    starts with are rewritten; every other event is relayed as the exact bytes received.
    Text that may be the beginning of a placeholder is held back (never longer than the
    longest placeholder) and sent as an extra delta right before its block's
    content_block_stop at the latest. Without a restore map nothing is rewritten, but the
    stream is still parsed, so that only whole events reach the client: an error event the
    caller sends after a cut stream then cannot merge with half an event.

    gateway_error: says which error events were written by the gateway (LiteLLM) rather than
    the provider, and the failure to send in their place.

    Security assumption: restore holds only placeholders issued for values the caller sent.
    """

    def __init__(
        self,
        restore: Mapping[str, str],
        *,
        gateway_error: Callable[[Mapping[str, Any]], StreamFailure | None] | None = None,
    ) -> None:
        self._restore = dict(restore)
        self._gateway_error = gateway_error
        self.gateway_failure: StreamFailure | None = None
        self._parser = SSEParser()
        # One unmasker per block and delta type (in practice one per block).
        self._unmaskers: dict[tuple[int, str], StreamUnmasker] = {}
        self._restored = 0  # by retired unmaskers and in block starts
        self._finished = False
        self._error_type: str | None = None

    @property
    def finished(self) -> bool:
        """Whether the provider ended the stream itself (message_stop or an error event)."""
        return self._finished

    @property
    def error_type(self) -> str | None:
        """The type of the error event the provider ended the stream with, if it did."""
        return self._error_type

    @property
    def truncated(self) -> bool:
        """Whether the stream ended partway through an event (known after close())."""
        return self._parser.truncated

    @property
    def restored(self) -> int:
        """How many placeholders were restored, in deltas and in block starts (for the audit
        row)."""
        return self._restored + sum(u.restored for u in self._unmaskers.values())

    def feed(self, chunk: bytes) -> bytes:
        """The bytes to send to the client now for this chunk from the provider."""
        out: list[bytes] = []
        for event in self._parser.feed(chunk):
            self._handle(event, out)
        return b"".join(out)

    def close(self) -> bytes:
        """The bytes that remain at the end of the stream: held text, as delta events."""
        out: list[bytes] = []
        for event in self._parser.close():
            if _load(event.data) is None:
                # Cut inside its data: relaying a fragment would corrupt the next event the
                # client reads. The caller sees truncated and can send an error event.
                continue
            self._handle(replace(event, raw=_render(event)), out)
        self._flush_all(out)
        return b"".join(out)

    def _handle(self, event: SSEEvent, out: list[bytes]) -> None:
        if event.event == "error":
            event = self._replace_gateway_error(event)
        if event.event in _FINAL_EVENTS:
            self._finished = True
            if event.event == "error":
                self._error_type = _error_type(event.data)
        if not self._restore:
            out.append(event.raw)
            return
        payload = _load(event.data)
        kind = payload.get("type") if payload is not None else None
        if payload is None or not isinstance(kind, str):
            out.append(event.raw)
        elif kind == "content_block_delta":
            self._delta(event, payload, out)
        elif kind == "content_block_start":
            self._start(event, payload, out)
        else:
            if kind == "content_block_stop":
                self._flush_block(payload.get("index"), out)
            elif kind in _END_EVENTS:
                self._flush_all(out)
            out.append(event.raw)

    def _replace_gateway_error(self, event: SSEEvent) -> SSEEvent:
        payload = _load(event.data)
        if self._gateway_error is None or payload is None:
            return event
        failure = self._gateway_error(payload)
        if failure is None:
            return event
        self.gateway_failure = failure
        data = {"type": "error", "error": {"type": failure.error_type, "message": failure.message}}
        return SSEEvent(event="error", data=json.dumps(data), raw=encode_sse("error", data))

    def _delta(self, event: SSEEvent, payload: dict[str, Any], out: list[bytes]) -> None:
        index, delta = payload.get("index"), payload.get("delta")
        if not isinstance(index, int) or not isinstance(delta, dict):
            out.append(event.raw)
            return
        kind = delta.get("type")
        if kind == "citations_delta" and isinstance(delta.get("citation"), dict):
            # A whole citation at once: restored like the citations of a whole reply.
            restored_delta = {**delta, "citation": restore_block(delta["citation"], self._unmask)}
            self._send_rewritten(out, event, payload, "delta", restored_delta)
            return
        if not isinstance(kind, str) or kind not in _RESTORED_DELTAS:
            out.append(event.raw)
            return
        field, json_mode = _RESTORED_DELTAS[kind]
        text = delta.get(field)
        if not isinstance(text, str):
            out.append(event.raw)
            return
        unmasker = self._unmaskers.get((index, kind))
        if unmasker is None:
            unmasker = StreamUnmasker(self._restore, json_mode=json_mode)
            self._unmaskers[index, kind] = unmasker
        restored = unmasker.feed(text)
        if restored == text:
            out.append(event.raw)
        elif restored:  # else all held back: the text goes out with a later delta
            rewritten = {**payload, "delta": {**delta, field: restored}}
            out.append(encode_sse(event.event or "content_block_delta", rewritten))

    def _start(self, event: SSEEvent, payload: dict[str, Any], out: list[bytes]) -> None:
        index, block = payload.get("index"), payload.get("content_block")
        self._flush_block(index, out)  # a reused index (never seen) closes the old block
        if not isinstance(block, dict):
            out.append(event.raw)
            return
        # The places a whole reply's blocks are restored in, and no others (names never).
        self._send_rewritten(
            out, event, payload, "content_block", restore_block(block, self._unmask)
        )

    def _send_rewritten(
        self, out: list[bytes], event: SSEEvent, payload: dict[str, Any], key: str, value: Any
    ) -> None:
        """The event as received when payload[key] is unchanged, else re-encoded with value."""
        if value == payload[key]:
            out.append(event.raw)
        else:
            rewritten = {**payload, key: value}
            out.append(encode_sse(event.event or str(payload.get("type")), rewritten))

    def _unmask(self, text: str) -> str:
        restored, count = unmask_counted(text, self._restore)
        self._restored += count
        return restored

    def _flush_block(self, index: object, out: list[bytes]) -> None:
        for key in [key for key in self._unmaskers if key[0] == index]:
            self._retire(key, out)

    def _flush_all(self, out: list[bytes]) -> None:
        for key in list(self._unmaskers):
            self._retire(key, out)

    def _retire(self, key: tuple[int, str], out: list[bytes]) -> None:
        unmasker = self._unmaskers.pop(key)
        held = unmasker.flush()
        self._restored += unmasker.restored
        if held:
            index, kind = key
            field = _RESTORED_DELTAS[kind][0]
            payload = {
                "type": "content_block_delta",
                "index": index,
                "delta": {"type": kind, field: held},
            }
            out.append(encode_sse("content_block_delta", payload))


def _load(data: str) -> dict[str, Any] | None:
    """An event's data as a JSON object, or None when it is not one (relayed untouched)."""
    try:
        payload = json.loads(data)
    except (ValueError, RecursionError):  # RecursionError: absurdly deep nesting
        return None
    return payload if isinstance(payload, dict) else None


def _render(event: SSEEvent) -> bytes:
    """A whole event with the same type and data, for one that arrived without its blank line."""
    lines = [] if event.event is None else [f"event: {event.event}"]
    lines.extend(f"data: {line}" for line in event.data.split("\n"))
    return ("\n".join(lines) + "\n\n").encode()
