"""Recall through the live proxy on AWS's own API examples (tests/corpus/aws_examples.py):
every labelled value, at every occurrence, is gone from what the provider received, and the
client gets its text back exactly (SDK -> proxy -> LiteLLM -> fake provider).

Examples go as text blocks of one user message, EXAMPLES_PER_REQUEST at a time, as a user
pasting several API outputs would send them.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import anthropic

from tests.corpus import aws_examples
from tests.support.fakes.anthropic_upstream import ECHO_PREFIX, FakeAnthropic

EXAMPLES_PER_REQUEST = 40
RECALL_GOAL = 0.995


def _forwarded_texts(upstream: FakeAnthropic) -> list[str]:
    body: Any = upstream.requests[-1].json
    return [block["text"] for block in body["messages"][-1]["content"]]


def test_no_labelled_value_of_aws_examples_reaches_the_provider(
    client: anthropic.Anthropic, upstream: FakeAnthropic
) -> None:
    examples = [example for example in aws_examples.examples() if example.values]
    sent: Counter[str] = Counter()
    leaked: Counter[str] = Counter()
    leaks: set[str] = set()
    for start in range(0, len(examples), EXAMPLES_PER_REQUEST):
        batch = examples[start : start + EXAMPLES_PER_REQUEST]
        blocks: list[anthropic.types.TextBlockParam] = [
            {"type": "text", "text": example.text} for example in batch
        ]
        message = client.messages.create(
            model="fake-echo", max_tokens=100, messages=[{"role": "user", "content": blocks}]
        )
        reply = "".join(block.text for block in message.content if block.type == "text")
        assert reply == ECHO_PREFIX + "".join(example.text for example in batch)  # exactly
        forwarded = _forwarded_texts(upstream)
        for example, masked in zip(batch, forwarded, strict=True):
            for kind, value, within in example.values:
                sent[kind] += sum(1 for _ in aws_examples.occurrences(example.text, value, within))
                # What is left of it: anywhere it stands alone in the masked text (an ARN
                # name that is an ordinary word is counted where its ARN was, if still there).
                remaining = sum(1 for _ in aws_examples.occurrences(masked, value, within))
                leaked[kind] += remaining
                if remaining:
                    leaks.add(f"{kind}: {value}")
    recall = 1 - sum(leaked.values()) / sum(sent.values())
    print(f"\n[corpus, live proxy] {len(examples)} AWS API examples:")
    for kind in sorted(sent, key=lambda k: -sent[k]):
        hidden = sent[kind] - leaked[kind]
        print(f"  {kind:18} {hidden:5}/{sent[kind]:<5} {hidden / sent[kind]:.2%}")
    print(f"  {'all':18} {recall:.2%} of {sum(sent.values())} occurrences")
    assert recall >= RECALL_GOAL, sorted(leaks)
