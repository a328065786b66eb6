// Runs scenarios with the official Anthropic TypeScript SDK (the version pinned in
// package.json) against a Messages API at a base URL, for tests/e2e/test_typescript_sdk.py.
//
// Reads one JSON object on stdin:
//   {"baseURL": "http://127.0.0.1:8000", "key": "mpk-...",
//    "scenarios": [{"name": "...", "kind": "create", "model": "fake-echo", "prompt": "...",
//                   "credential": "apiKey" | "authToken", ...}, ...]}
// and prints one JSON object on stdout: {"sdkVersion": "...", "results": [...]}, a result per
// scenario, in order, each with what the SDK handed back (texts, tool inputs, event counts)
// or the error it threw, and how long it took. A scenario that fails does not stop the others.
//
// Kinds:
//   create   messages.create, not streamed
//   stream   messages.stream: the `text` events, then finalMessage()
//   raw      messages.create({stream: true}): every raw event, counted and put together
//   tools    a tool round trip: the model's tool_use, then a tool_result that says what the tool
//            got ("ran: " + its command), then the model's answer; `stream` picks
//            messages.stream(...).finalMessage() over messages.create for both turns
//
// No retries (maxRetries 0), so an error reaches the caller the first time.

import { readFileSync } from 'node:fs';
import Anthropic from '@anthropic-ai/sdk';
import { VERSION } from '@anthropic-ai/sdk/version';

const MAX_TOKENS = 1024;
const TIMEOUT_MS = 20_000;
const TOOL = {
  name: 'Bash',
  description: 'Runs a shell command.',
  input_schema: {
    type: 'object',
    properties: { command: { type: 'string' } },
    required: ['command'],
  },
};

function client(input, scenario) {
  // Both credentials are explicit, so nothing is read from ANTHROPIC_* variables.
  const credential =
    scenario.credential === 'authToken'
      ? { apiKey: null, authToken: scenario.key ?? input.key }
      : { apiKey: scenario.key ?? input.key, authToken: null };
  return new Anthropic({
    baseURL: input.baseURL,
    ...credential,
    maxRetries: 0,
    timeout: TIMEOUT_MS,
  });
}

function params(scenario) {
  return {
    model: scenario.model,
    max_tokens: MAX_TOKENS,
    messages: [{ role: 'user', content: scenario.prompt }],
  };
}

function texts(message) {
  return message.content.filter((b) => b.type === 'text').map((b) => b.text);
}

function toolUses(message) {
  return message.content
    .filter((b) => b.type === 'tool_use')
    .map((b) => ({ id: b.id, name: b.name, input: b.input }));
}

function summary(message) {
  return {
    id: message.id,
    stopReason: message.stop_reason,
    texts: texts(message),
    toolUses: toolUses(message),
    blockTypes: message.content.map((b) => b.type),
  };
}

function describeError(error) {
  // The SDK's classes name themselves (error.name); the instanceof checks say which of its
  // exported types a user's `catch` would match.
  const is = {};
  for (const type of [
    'APIError',
    'AuthenticationError',
    'BadRequestError',
    'RateLimitError',
    'InternalServerError',
    'OverloadedError',
    'APIConnectionError',
  ]) {
    is[type] = Anthropic[type] !== undefined && error instanceof Anthropic[type];
  }
  const headers = error?.headers;
  return {
    name: error?.name ?? null,
    is,
    status: error?.status ?? null,
    type: error?.type ?? null,
    message: String(error?.message ?? error),
    apiMessage: error?.apiMessage ?? null,
    requestID: error?.requestID ?? null,
    retryAfter: headers?.get?.('retry-after') ?? null,
    contentType: headers?.get?.('content-type') ?? null,
  };
}

async function create(sdk, scenario, out) {
  const { data, response } = await sdk.messages.create(params(scenario)).withResponse();
  Object.assign(out, summary(data), { requestID: response.headers.get('request-id') });
}

async function stream(sdk, scenario, out) {
  const stream = sdk.messages.stream(params(scenario));
  Object.assign(out, { textEvents: 0, streamedText: '', errorEvents: 0 });
  stream.on('text', (delta) => {
    out.textEvents += 1;
    out.streamedText += delta;
  });
  stream.on('error', () => {
    out.errorEvents += 1;
  });
  out.final = summary(await stream.finalMessage());
}

async function raw(sdk, scenario, out) {
  const events = await sdk.messages.create({ ...params(scenario), stream: true });
  const counts = {};
  const blocks = [];
  Object.assign(out, { counts, blocks, streamedText: '' });
  for await (const event of events) {
    counts[event.type] = (counts[event.type] ?? 0) + 1;
    if (event.type === 'content_block_start') {
      blocks[event.index] = { type: event.content_block.type, text: '', json: '' };
    } else if (event.type === 'content_block_delta') {
      const block = blocks[event.index];
      if (event.delta.type === 'text_delta') block.text += event.delta.text;
      if (event.delta.type === 'input_json_delta') block.json += event.delta.partial_json;
      out.streamedText = blocks.map((b) => b?.text ?? '').join('');
    }
  }
  for (const block of blocks) {
    if (block?.type === 'tool_use') block.input = JSON.parse(block.json || '{}');
  }
}

async function tools(sdk, scenario, out) {
  const send = async (body) => {
    if (!scenario.stream) return sdk.messages.create(body);
    const stream = sdk.messages.stream(body);
    let inputJsonEvents = 0;
    stream.on('inputJson', () => {
      inputJsonEvents += 1;
    });
    const message = await stream.finalMessage();
    message.inputJsonEvents = inputJsonEvents;
    return message;
  };
  const request = { ...params(scenario), tools: [TOOL] };
  const first = await send(request);
  const calls = toolUses(first);
  // The "tool" reports the command it was given, as a command's output would quote it.
  const results = calls.map((call) => ({
    type: 'tool_result',
    tool_use_id: call.id,
    content: 'ran: ' + call.input.command,
  }));
  const second = await send({
    ...request,
    messages: [
      ...request.messages,
      { role: 'assistant', content: first.content },
      { role: 'user', content: results },
    ],
  });
  Object.assign(out, {
    first: { ...summary(first), inputJsonEvents: first.inputJsonEvents ?? null },
    toolResults: results.map((r) => r.content),
    second: summary(second),
  });
}

const KINDS = { create, stream, raw, tools };

async function run(input, scenario) {
  const started = performance.now();
  // What the scenario received so far: a stream that fails part-way keeps what came first.
  const out = {};
  const result = { name: scenario.name, kind: scenario.kind, out, error: null };
  try {
    const kind = KINDS[scenario.kind];
    if (kind === undefined) throw new Error(`unknown kind: ${scenario.kind}`);
    await kind(client(input, scenario), scenario, out);
  } catch (error) {
    result.error = describeError(error);
  }
  result.ms = Math.round((performance.now() - started) * 10) / 10;
  return result;
}

async function main() {
  const input = JSON.parse(readFileSync(0, 'utf8'));
  const results = [];
  for (const scenario of input.scenarios) {
    results.push(await run(input, scenario));
  }
  process.stdout.write(JSON.stringify({ sdkVersion: VERSION, results }) + '\n');
}

await main();
