import assert from "node:assert/strict";
import { test } from "node:test";

import * as s from "../../ai_features/static/ai_features/js/chat_state.js";
import { firstEventData } from "../../ai_features/static/ai_features/js/sse.js";

test("errorCodeFor: the body's code wins, else the status decides", () => {
  assert.equal(s.errorCodeFor(400, { code: "invalid_request" }), "invalid_request");
  assert.equal(s.errorCodeFor(429, null), "rate_limited");
  assert.equal(s.errorCodeFor(403, {}), "csrf_failed");
  assert.equal(s.errorCodeFor(502, null), "internal_error");
  assert.equal(s.errorCodeFor(418, null), "invalid_request");
});

test("parseErrorBody reads an SSE error event and the one JSON error shape", () => {
  assert.deepEqual(s.parseErrorBody('data: {"type":"error","code":"not_found","content":"x"}\n\n', firstEventData), { code: "not_found", content: "x" });
  assert.deepEqual(s.parseErrorBody('{"error":{"code":"rate_limited","message":"m"}}', firstEventData), { code: "rate_limited", content: "m" });
  assert.equal(s.parseErrorBody("<html>", firstEventData), null);
  // Anything else (a framework's own {"detail"}) is left to the status.
  assert.equal(s.parseErrorBody('{"detail":"Not Found"}', firstEventData), null);
});

test("resumeShouldRetry: proxy errors and restarts only", () => {
  assert.ok(s.resumeShouldRetry(502, "internal_error"));
  assert.ok(s.resumeShouldRetry(503, "server_restarting"));
  assert.ok(!s.resumeShouldRetry(404, "not_found"));
});

test("endingOf maps final events", () => {
  assert.equal(s.endingOf({ type: "done", finish_reason: "stopped" }).status, "stopped");
  assert.deepEqual(s.endingOf({ type: "done", finish_reason: "length" }).finishReason, "length");
  assert.equal(s.endingOf({ type: "error", code: "interrupted" }).status, "interrupted");
  assert.deepEqual([s.endingOf({ type: "error" }).status, s.endingOf({ type: "error" }).code], ["error", "internal_error"]);
});

test("reconnectDelayMs doubles and is capped", () => {
  assert.deepEqual([1, 2, 3, 10].map(s.reconnectDelayMs), [500, 1000, 2000, 15000]);
});

test("canSend and canRegenerate", () => {
  assert.ok(s.canSend({ text: "hi", streaming: false, maxChars: 5 }));
  assert.ok(!s.canSend({ text: "  ", streaming: false, maxChars: 5 }));
  assert.ok(!s.canSend({ text: "toolong", streaming: false, maxChars: 5 }));
  assert.ok(!s.canSend({ text: "hi", streaming: true, maxChars: 5 }));
  const turn = [{ role: "user" }, { role: "assistant", status: "complete" }];
  assert.ok(s.canRegenerate(turn, false));
  assert.ok(!s.canRegenerate(turn, true));
  assert.ok(!s.canRegenerate([{ role: "user" }, { role: "assistant", status: "streaming" }], false));
  assert.ok(!s.canRegenerate([{ role: "assistant", status: "complete" }], false));
});

test("following: only a user scroll away stops it; reaching the bottom resumes it", () => {
  assert.equal(s.followsAfterScroll({ following: true, userInitiated: false, atBottom: false }), true);
  assert.equal(s.followsAfterScroll({ following: true, userInitiated: true, atBottom: false }), false);
  assert.equal(s.followsAfterScroll({ following: false, userInitiated: false, atBottom: true }), true);
  assert.equal(s.followsAfterScroll({ following: false, userInitiated: false, atBottom: false }), false);
  assert.ok(s.isScrollKey("PageUp", false));
  assert.ok(!s.isScrollKey("PageUp", true));
  assert.ok(!s.isScrollKey("a", false));
  assert.ok(s.isAtBottom({ scrollHeight: 1000, scrollTop: 598, clientHeight: 400 }));
  assert.ok(!s.isAtBottom({ scrollHeight: 1000, scrollTop: 500, clientHeight: 400 }));
});

test("versionLabel", () => {
  assert.equal(s.versionLabel(1, 2), "2/2");
  assert.equal(s.versionLabel(0, 1), null);
});

test("shortcuts", () => {
  const ctx = { typing: false, streaming: false, dialogOpen: false };
  assert.equal(s.shortcutFor({ key: "O", ctrlKey: true, shiftKey: true }, ctx), "new-chat");
  assert.equal(s.shortcutFor({ key: "k", metaKey: true }, ctx), "focus-search");
  assert.equal(s.shortcutFor({ key: "?" }, ctx), "help");
  assert.equal(s.shortcutFor({ key: "?" }, { ...ctx, typing: true }), null);
  assert.equal(s.shortcutFor({ key: "Escape" }, { ...ctx, streaming: true }), "stop");
  assert.equal(s.shortcutFor({ key: "Escape" }, ctx), null);
  assert.equal(s.shortcutFor({ key: "k", ctrlKey: true, isComposing: true }, ctx), null);
});

test("conversation paths round-trip", () => {
  assert.equal(s.conversationIdFromPath("/ai/chat/abc-1/", "/ai/chat/"), "abc-1");
  assert.equal(s.conversationIdFromPath("/ai/chat/", "/ai/chat/"), null);
  assert.equal(s.conversationIdFromPath("/ai/chat/a/b/", "/ai/chat/"), null);
  assert.equal(s.pathForConversation("/ai/chat/", "abc"), "/ai/chat/abc/");
  assert.equal(s.pathForConversation("/ai/chat/", null), "/ai/chat/");
});
