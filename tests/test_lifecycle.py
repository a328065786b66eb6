"""Start-up and shutdown of a serving process (proxy/lifecycle.py), as a server's lifespan
messages drive them, in a fresh interpreter: what start-up built is moved out of the cyclic
garbage collector's way, so that the garbage requests leave is collected soon and quickly."""

from __future__ import annotations

import json

from tests.support.processes import in_fresh_interpreter

LIFESPAN = """
import asyncio, gc, json
from config.asgi import application

async def main():
    messages = [{"type": "lifespan.startup"}]
    sent = []
    started = asyncio.Event()
    async def receive():
        if messages:
            return messages.pop(0)
        await started.wait()
        return {"type": "lifespan.shutdown"}
    async def send(message):
        sent.append(message["type"])
        if message["type"] == "lifespan.startup.complete":
            shown["frozen"] = gc.get_freeze_count()
            shown["young"] = gc.get_count()[0]
            started.set()
    await application({"type": "lifespan"}, receive, send)
    shown["sent"] = sent

shown = {"before": gc.get_freeze_count()}
asyncio.run(main())
print(json.dumps(shown))
"""


def test_start_up_moves_what_it_built_out_of_the_collectors_way() -> None:
    done = in_fresh_interpreter(
        LIFESPAN, lambda name: False, DJANGO_SETTINGS_MODULE="tests.settings"
    )
    assert done.returncode == 0, done.stderr[-2000:]
    shown = json.loads(done.stdout.strip().splitlines()[-1])
    assert shown["sent"] == ["lifespan.startup.complete", "lifespan.shutdown.complete"]
    assert shown["before"] == 0
    # Django, DRF and LiteLLM imported: hundreds of thousands of objects, none left to walk.
    assert shown["frozen"] > 100_000
    assert shown["young"] < 1_000
