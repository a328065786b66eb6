"""One restore path: a streamed reply and a whole one restore the same fields.

The pen test found a streamed reply restoring placeholders in a tool's input but not in its
name, and a whole reply restoring both. Names are identifiers the request never masks (a
value in one refuses it), so neither path restores one; inputs and text are restored in both.
"""

from __future__ import annotations

from typing import Any

import anthropic
import pytest

from tests.support.fakes.anthropic_upstream import FakeAnthropic

INSTANCE = "i-0123456789abcdef0"
# A tool whose name is shaped like the placeholder the instance ID gets in a new namespace:
# the fake calls the first tool by its name, the way a model could write a placeholder there.
TOOLS: list[Any] = [
    {
        "name": "AWS_EC2_001",
        "description": "Describes an instance.",
        "input_schema": {"type": "object", "properties": {"command": {"type": "string"}}},
    }
]


def _tool_use(message: anthropic.types.Message) -> anthropic.types.ToolUseBlock:
    [block] = [b for b in message.content if b.type == "tool_use"]
    assert isinstance(block, anthropic.types.ToolUseBlock)
    return block


@pytest.mark.parametrize("stream", [False, True])
def test_streamed_and_whole_replies_restore_the_input_but_never_the_tool_name(
    client: anthropic.Anthropic, upstream: FakeAnthropic, stream: bool
) -> None:
    fields: dict[str, Any] = {
        "model": "fake-tool",
        "max_tokens": 100,
        "tools": TOOLS,
        "messages": [{"role": "user", "content": f"check {INSTANCE}"}],
    }
    if stream:
        with client.messages.stream(**fields) as events:
            message = events.get_final_message()
    else:
        message = client.messages.create(**fields)
    [request] = upstream.requests
    assert INSTANCE.encode() not in request.body
    assert b"AWS_EC2_001" in request.body  # the value's placeholder and the tool's name
    tool_use = _tool_use(message)
    assert tool_use.name == "AWS_EC2_001"
    assert tool_use.input == {"command": f"describe check {INSTANCE}"}
