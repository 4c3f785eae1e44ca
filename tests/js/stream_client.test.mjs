import assert from "node:assert/strict";
import { test } from "node:test";

import { StreamClient } from "../../ai_features/static/ai_features/js/stream_client.js";
import { eventStream, fakeService, jsonResponse, recorder, sse } from "./fake_fetch.mjs";

const FAST = { delayMs: () => 1, restartResumeMs: 1, stopGraceMs: 1 };
const START = { type: "start", content: "", conversation_id: "c1", message_id: "m1", user_message_id: "u1", parent_id: null, model: "fake" };

function client(service, rec, extra = {}) {
  return new StreamClient({
    request: service.request,
    onUpdate: rec.onUpdate,
    body: { message: "hi", conversation_id: null },
    options: FAST,
    ...extra,
  });
}

test("a whole answer: start, text, done", async () => {
  const service = fakeService([
    eventStream([
      sse(1, START),
      sse(2, { type: "content", content: "Hel" }),
      ": ping\n\n",
      sse(3, { type: "content", content: "lo" }),
      sse(4, { type: "done", content: "", message_id: "m1", finish_reason: "stop", usage: { total_tokens: 3 } }),
    ]),
  ]);
  const rec = recorder();
  const c = client(service, rec);
  c.start();
  const end = await rec.ended;
  assert.deepEqual(rec.types(), ["connecting", "start", "text", "text", "end"]);
  assert.equal(rec.updates[1].userMessageId, "u1");
  assert.equal(rec.updates[1].model, "fake");
  assert.equal(rec.updates[3].text, "Hello");
  assert.deepEqual([end.status, end.finishReason, end.usage.total_tokens], ["complete", "stop", 3]);
  assert.equal(service.calls[0].method, "POST");
  assert.deepEqual(JSON.parse(service.calls[0].body), { message: "hi", conversation_id: null });
  assert.equal(c.lastEventId, 4);
});

test("a dropped connection resumes after the last event id and the text carries on", async () => {
  const service = fakeService([
    eventStream([sse(1, START), sse(2, { type: "content", content: "one " })], { drop: true }),
    // The resume replays from the start event (the server's replay), then continues.
    eventStream([sse(1, START), sse(2, { type: "content", content: "one " }), sse(3, { type: "content", content: "two" }), sse(4, { type: "done", finish_reason: "stop" })]),
  ]);
  const rec = recorder();
  client(service, rec).start();
  const end = await rec.ended;
  assert.equal(end.status, "complete");
  assert.deepEqual(rec.types(), ["connecting", "start", "text", "reconnecting", "connecting", "reconnected", "start", "text", "text", "end"]);
  assert.equal(rec.updates.findLast((u) => u.type === "text").text, "one two");
  assert.equal(service.calls[1].suffix, "m1/");
  assert.equal(service.calls[1].method, "GET");
  assert.equal(service.calls[1].headers["Last-Event-ID"], "2");
});

test("a resume that meets 502 or server_restarting keeps reconnecting", async () => {
  const service = fakeService([
    eventStream([sse(1, START)], { drop: true }),
    new Response("bad gateway", { status: 502 }),
    jsonResponse(503, { error: { code: "server_restarting", message: "restarting" } }),
    eventStream([sse(2, { type: "content", content: "x" }), sse(3, { type: "done", finish_reason: "stop" })]),
  ]);
  const rec = recorder();
  client(service, rec).start();
  const end = await rec.ended;
  assert.equal(end.status, "complete");
  assert.deepEqual(rec.updates.filter((u) => u.type === "reconnecting").map((u) => u.attempt), [1, 2, 3]);
  assert.equal(service.pending(), 0);
});

test("gives up after maxReconnects with network_error", async () => {
  const drops = Array.from({ length: 4 }, () => new TypeError("Failed to fetch"));
  const service = fakeService([eventStream([sse(1, START)], { drop: true }), ...drops]);
  const rec = recorder();
  client(service, rec, { options: { ...FAST, maxReconnects: 3 } }).start();
  const end = await rec.ended;
  assert.deepEqual([end.status, end.code], ["error", "network_error"]);
  assert.equal(service.calls.length, 4);
});

test("a POST that never reached the server is not sent again", async () => {
  const service = fakeService([new TypeError("Failed to fetch")]);
  const rec = recorder();
  client(service, rec).start();
  const end = await rec.ended;
  assert.deepEqual([end.status, end.code, end.preStream], ["error", "network_error", true]);
  assert.equal(service.calls.length, 1);
});

test("dropped before the answer had an id: lost, no resume", async () => {
  const service = fakeService([eventStream([": ping\n\n"], { drop: true })]);
  const rec = recorder();
  client(service, rec).start();
  assert.equal((await rec.ended).type, "lost");
  assert.equal(service.calls.length, 1);
});

for (const [status, body, code, headers] of [
  [400, { error: { code: "invalid_request", message: "Bad" } }, "invalid_request", {}],
  [401, null, "unauthenticated", {}],
  [403, { error: { code: "csrf_failed", message: "CSRF" } }, "csrf_failed", {}],
  [404, null, "not_found", {}],
  [413, null, "payload_too_large", {}],
  [429, { error: { code: "rate_limited", message: "Slow down" } }, "rate_limited", { "Retry-After": "7" }],
  [500, null, "internal_error", {}],
]) {
  test(`a ${status} before streaming ends with ${code}`, async () => {
    const reply = body ? jsonResponse(status, body, headers) : new Response("", { status, headers });
    const service = fakeService([reply]);
    const rec = recorder();
    client(service, rec).start();
    const end = await rec.ended;
    assert.deepEqual([end.status, end.code, end.preStream], ["error", code, true]);
    if (headers["Retry-After"]) assert.equal(end.retryAfter, 7);
    if (body) assert.equal(end.content, body.error.message);
  });
}

test("an error body as one SSE event is read too", async () => {
  const text = sse(1, { type: "error", content: "Too long", code: "invalid_request" });
  const service = fakeService([new Response(text, { status: 400, headers: { "Content-Type": "text/event-stream" } })]);
  const rec = recorder();
  client(service, rec).start();
  const end = await rec.ended;
  assert.deepEqual([end.code, end.content], ["invalid_request", "Too long"]);
});

test("an error event mid-stream ends the answer with its code", async () => {
  const service = fakeService([eventStream([sse(1, START), sse(2, { type: "content", content: "a" }), sse(3, { type: "error", content: "x", code: "upstream_timeout" })])]);
  const rec = recorder();
  client(service, rec).start();
  const end = await rec.ended;
  assert.deepEqual([end.status, end.code, end.resumeScheduled], ["error", "upstream_timeout", false]);
});

test("server_restarting ends as interrupted and resumes once by itself", async () => {
  const service = fakeService([
    eventStream([sse(1, START), sse(2, { type: "error", content: "", code: "server_restarting" })]),
    eventStream([sse(1, START), sse(3, { type: "content", content: "back" }), sse(4, { type: "done", finish_reason: "stop" })]),
  ]);
  const updates = [];
  let resolve;
  const done = new Promise((r) => {
    resolve = r;
  });
  const c = new StreamClient({
    request: service.request,
    body: {},
    options: FAST,
    onUpdate(update) {
      updates.push(update);
      if (update.type === "end" && update.status === "complete") resolve();
    },
  });
  c.start();
  await done;
  const ends = updates.filter((u) => u.type === "end");
  assert.deepEqual(ends.map((u) => [u.status, u.code ?? null, u.resumeScheduled ?? false]), [["interrupted", "server_restarting", true], ["complete", null, false]]);
  assert.equal(service.calls[1].suffix, "m1/");
});

test("stop: posts to the stop endpoint and the stream reports stopped", async () => {
  let finish;
  const encoder = new TextEncoder();
  const body = new ReadableStream({
    start(controller) {
      controller.enqueue(encoder.encode(sse(1, START) + sse(2, { type: "content", content: "par" })));
      finish = () => {
        controller.enqueue(encoder.encode(sse(3, { type: "done", finish_reason: "stopped" })));
        controller.close();
      };
    },
  });
  const service = fakeService([
    new Response(body, { headers: { "Content-Type": "text/event-stream" } }),
    () => {
      finish();
      return jsonResponse(200, { status: "stopped" });
    },
  ]);
  const rec = recorder();
  const c = client(service, rec);
  c.onUpdate = (update) => {
    rec.onUpdate(update);
    if (update.type === "text") c.stop();
  };
  c.start();
  const end = await rec.ended;
  assert.deepEqual([end.status, end.finishReason], ["stopped", "stopped"]);
  assert.equal(service.calls[1].suffix, "m1/stop/");
  assert.equal(service.calls[1].method, "POST");
  assert.equal(rec.updates.filter((u) => u.type === "end").length, 1);
});

test("stop before the start event is sent once the id is known", async () => {
  let release;
  const gate = new Promise((r) => {
    release = r;
  });
  const service = fakeService([
    async () => {
      await gate;
      return eventStream([sse(1, START), sse(2, { type: "done", finish_reason: "stopped" })]);
    },
    jsonResponse(200, { status: "stopped" }),
  ]);
  const rec = recorder();
  const c = client(service, rec);
  c.start();
  c.stop();
  release();
  const end = await rec.ended;
  assert.equal(end.status, "stopped");
  await new Promise((r) => setTimeout(r, 5));
  assert.equal(service.calls[1].suffix, "m1/stop/");
});

test("stop while the stream cannot report it ends with the stop endpoint's status", async () => {
  const service = fakeService([
    eventStream([sse(1, START)], { drop: true }),
    jsonResponse(200, { status: "stopped" }),
  ]);
  const rec = recorder();
  const c = client(service, rec, { options: { ...FAST, delayMs: () => 60000 } });
  c.onUpdate = (update) => {
    rec.onUpdate(update);
    if (update.type === "reconnecting") c.stop();
  };
  c.start();
  const end = await rec.ended;
  assert.equal(end.status, "stopped");
  c.detach();
});

test("detach: no more updates and no reconnects", async () => {
  const service = fakeService([eventStream([sse(1, START)], { drop: true })]);
  const rec = recorder();
  const c = client(service, rec, { options: { ...FAST, delayMs: () => 20 } });
  c.onUpdate = (update) => {
    rec.onUpdate(update);
    if (update.type === "reconnecting") c.detach();
  };
  c.start();
  await new Promise((r) => setTimeout(r, 60));
  assert.equal(rec.types().at(-1), "reconnecting");
  assert.equal(service.calls.length, 1);
});

// Issue 8 item 5: after the stream service is killed and restarted, the resume is a replay
// from the database (a `start`, then the saved text, seconds behind what was streamed,
// then `error` `interrupted`). What the reader already saw must stay on screen.
const REPLAY_ID = 1_000_000_001; // the server's replay ids (service.REPLAY_ID_BASE + 1)

function textLengths(updates) {
  return updates.filter((u) => u.type === "start" || u.type === "text").map((u) => u.text.length);
}

test("a replay after a crash never shows less than was shown, and ends interrupted", async () => {
  const service = fakeService([
    eventStream(
      [
        sse(1, START),
        sse(2, { type: "content", content: "one " }),
        sse(3, { type: "content", content: "two " }),
        sse(4, { type: "content", content: "three " }),
      ],
      { drop: true },
    ),
    new TypeError("Failed to fetch"), // the service is down
    eventStream([
      sse(REPLAY_ID, START),
      sse(REPLAY_ID + 1, { type: "content", content: "one " }), // all that was saved
      ": ping\n\n",
      sse(REPLAY_ID + 2, { type: "error", content: "interrupted", code: "interrupted" }),
    ]),
  ]);
  const rec = recorder();
  const c = client(service, rec);
  c.start();
  const end = await rec.ended;
  assert.deepEqual([end.status, end.code], ["interrupted", "interrupted"]);
  const lengths = textLengths(rec.updates);
  for (let i = 1; i < lengths.length; i += 1) {
    assert.ok(lengths[i] >= lengths[i - 1], `shown text shrank: ${lengths}`);
  }
  const replayStart = rec.updates.filter((u) => u.type === "start")[1];
  assert.equal(replayStart.text, "one two three ");
  assert.equal(rec.updates.findLast((u) => u.type === "text").text, "one two three ");
  assert.equal(service.calls[2].headers["Last-Event-ID"], "4");
  // The client's own event text follows the replay's ids, for a later resume.
  assert.deepEqual([c.text, c.lastEventId], ["one ", REPLAY_ID + 2]);
});

test("a replay that gets past what was shown carries on from the replay", async () => {
  const service = fakeService([
    eventStream([sse(1, START), sse(2, { type: "content", content: "one " })], { drop: true }),
    eventStream([
      sse(REPLAY_ID, START),
      sse(REPLAY_ID + 1, { type: "content", content: "one two " }),
      sse(REPLAY_ID + 2, { type: "content", content: "three" }),
      sse(REPLAY_ID + 3, { type: "error", content: "", code: "interrupted" }),
    ]),
  ]);
  const rec = recorder();
  client(service, rec).start();
  await rec.ended;
  assert.deepEqual(
    rec.updates.filter((u) => u.type === "text").map((u) => u.text),
    ["one ", "one two ", "one two three"],
  );
});

test("a resume after a reload keeps the text it was given through a shorter replay", async () => {
  const service = fakeService([
    eventStream([sse(REPLAY_ID, START), sse(REPLAY_ID + 1, { type: "content", content: "saved" }), sse(REPLAY_ID + 2, { type: "error", content: "", code: "interrupted" })]),
  ]);
  const rec = recorder();
  const c = client(service, rec, { body: null, messageId: "m1", lastEventId: 9, text: "saved and more" });
  c.resume();
  const end = await rec.ended;
  assert.equal(end.status, "interrupted");
  assert.deepEqual(textLengths(rec.updates), ["saved and more".length, "saved and more".length]);
  assert.equal(service.calls[0].headers["Last-Event-ID"], "9");
});
