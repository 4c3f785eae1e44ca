// The stream client: turns one answer's HTTP stream (POST, then resumes by message id with
// Last-Event-ID) into typed updates. It owns reconnection, resume and stop, and knows
// nothing of the DOM: the page (chat.js) renders the updates, tests drive it with a fake
// fetch (tests/js/stream_client.test.mjs).
//
// Updates passed to onUpdate(update):
//   {type: "connecting", mode: "post" | "resume"}
//   {type: "start", messageId, conversationId, userMessageId, parentId, model, text}
//                             text: what to keep showing ("" for a new answer; on a replay,
//                             the text already shown, which the replay must not wipe)
//   {type: "text", text}      the whole answer so far, never shorter than text shown before
//   {type: "reconnecting", attempt, delayMs}  the connection dropped; trying again
//   {type: "reconnected"}                     events flow again after "reconnecting"
//   {type: "end", status, finishReason?, usage?, model?, code?, content?, retryAfter?,
//                 preStream?, resumeScheduled?}   exactly once per run, unless detached
//   {type: "lost"}            dropped before the answer had an id: reload the conversation
//   {type: "stop-unconfirmed"}  a stop request got no answer; the stream goes on

import { endingOf, errorCodeFor, parseErrorBody, reconnectDelayMs, resumeShouldRetry } from "./chat_state.js";
import { firstEventData, readEventStream } from "./sse.js";

const DEFAULTS = {
  maxReconnects: 8,
  restartResumeMs: 3000,
  stopGraceMs: 2500,
  delayMs: reconnectDelayMs,
};

export class StreamClient {
  /**
   * request(suffix, init) -> Promise<Response>: fetch against the stream service
   * (Api.streamFetch in the page, a fake in tests). body: the POST JSON for a new answer.
   */
  constructor({
    request,
    onUpdate,
    body = null,
    conversationId = null,
    messageId = null,
    lastEventId = 0,
    text = "",
    isOnline = () => true,
    waitOnline = null,
    canAutoResume = () => true,
    options = {},
  }) {
    this.request = request;
    this.onUpdate = onUpdate;
    this.body = body;
    this.conversationId = conversationId;
    this.messageId = messageId;
    this.lastEventId = lastEventId;
    this.text = text;
    // The longest text shown for this answer. `text` restarts from "" at every `start`
    // (it must match lastEventId), but a replay from the database after a crash holds
    // only what was saved, seconds behind what the reader already showed: the page keeps
    // showing the longer of the two (the saved text is a prefix of the streamed one).
    this.shown = text;
    this.isOnline = isOnline;
    this.waitOnline = waitOnline;
    this.canAutoResume = canAutoResume;
    this.options = { ...DEFAULTS, ...options };
    this.attempts = 0;
    this.final = false;
    this.detached = false;
    this.reconnecting = false;
    this.stopRequested = false;
    this.autoResumed = false;
    this.controller = null;
    this.timer = null;
    this.running = null;
  }

  emit(update) {
    if (!this.detached) this.onUpdate(update);
  }

  /** Post the new message and read its answer. */
  start() {
    return this.run("post");
  }

  /** Read the answer again from the event after lastEventId (reload, reconnect, retry). */
  resume() {
    this.attempts = 0;
    return this.run("resume");
  }

  /** Stop reading; the generation goes on on the server (switching conversations). */
  detach() {
    this.detached = true;
    clearTimeout(this.timer);
    this.controller?.abort();
  }

  async run(mode) {
    if (this.detached) return;
    clearTimeout(this.timer);
    this.final = false;
    this.emit({ type: "connecting", mode });
    this.controller = new AbortController();
    const { signal } = this.controller;
    let response;
    try {
      response =
        mode === "post"
          ? await this.request("", {
              method: "POST",
              signal,
              headers: { "Content-Type": "application/json", Accept: "text/event-stream" },
              body: JSON.stringify(this.body),
            })
          : await this.request(`${encodeURIComponent(this.messageId)}/`, {
              signal,
              headers: { Accept: "text/event-stream", "Last-Event-ID": String(this.lastEventId || 0) },
            });
    } catch {
      if (this.detached) return;
      if (mode === "post" && !this.messageId) {
        // The request may never have reached the server: do not send it twice on our own.
        this.end({ status: "error", code: "network_error", preStream: true });
      } else {
        this.dropped();
      }
      return;
    }
    if (this.detached) return;
    const type = response.headers.get("content-type") || "";
    if (!response.ok || !type.includes("text/event-stream")) {
      await this.failed(response, mode);
      return;
    }
    try {
      await readEventStream(response, (event) => this.onEvent(event));
    } catch {
      /* the connection dropped: handled below */
    }
    if (this.detached || this.final) return;
    this.dropped();
  }

  onEvent(event) {
    if (this.detached || this.final) return;
    let data;
    try {
      data = JSON.parse(event.data);
    } catch {
      return;
    }
    if (event.id !== null && /^\d+$/.test(event.id)) this.lastEventId = Number(event.id);
    this.attempts = 0;
    if (this.reconnecting) {
      this.reconnecting = false;
      this.emit({ type: "reconnected" });
    }
    switch (data.type) {
      case "start":
        // Every start means "the event text begins here": replays start from empty. What
        // was already shown stays on screen until the replay's text is longer.
        this.shown = this.visibleText();
        this.text = "";
        if (data.message_id) this.messageId = data.message_id;
        if (data.conversation_id) this.conversationId = data.conversation_id;
        this.emit({
          type: "start",
          messageId: this.messageId,
          conversationId: this.conversationId,
          userMessageId: data.user_message_id || null,
          parentId: data.parent_id || null,
          model: data.model || null,
          text: this.shown,
        });
        if (this.stopRequested) this.stop();
        break;
      case "content":
        if (!data.content) break;
        this.text += data.content;
        this.emit({ type: "text", text: this.visibleText() });
        break;
      case "done":
      case "error": {
        const ending = endingOf(data);
        const restart = ending.code === "server_restarting" && !this.autoResumed && this.messageId;
        this.end({ ...ending, resumeScheduled: Boolean(restart) });
        if (restart) this.scheduleRestartResume();
        break;
      }
      default:
        break;
    }
  }

  /** The text to show: the event text, or what was shown before a shorter replay. */
  visibleText() {
    return this.text.length >= this.shown.length ? this.text : this.shown;
  }

  end(ending) {
    this.final = true;
    this.reconnecting = false;
    clearTimeout(this.timer);
    this.emit({ type: "end", ...ending });
  }

  scheduleRestartResume() {
    this.autoResumed = true;
    this.timer = setTimeout(() => {
      if (this.detached || !this.canAutoResume()) return;
      this.run("resume");
    }, this.options.restartResumeMs);
  }

  dropped() {
    if (!this.messageId) {
      // Dropped before the answer had an id: the conversation's history knows it.
      this.final = true;
      this.emit({ type: "lost" });
      return;
    }
    this.attempts += 1;
    if (this.attempts > this.options.maxReconnects) {
      this.end({ status: "error", code: "network_error" });
      return;
    }
    this.reconnecting = true;
    const delayMs = this.options.delayMs(this.attempts);
    this.emit({ type: "reconnecting", attempt: this.attempts, delayMs });
    const go = () => {
      if (this.detached || this.final) return;
      if (!this.isOnline() && this.waitOnline) {
        this.waitOnline(go);
        return;
      }
      this.run("resume");
    };
    this.timer = setTimeout(go, delayMs);
  }

  async failed(response, mode) {
    let text = "";
    try {
      text = await response.text();
    } catch {
      text = "";
    }
    const data = parseErrorBody(text, firstEventData);
    const code = errorCodeFor(response.status, data);
    if (mode === "resume" && resumeShouldRetry(response.status, code)) {
      this.dropped();
      return;
    }
    const retryAfter = Number.parseInt(response.headers.get("Retry-After") || "", 10);
    this.end({
      status: "error",
      code,
      content: (data && data.content) || "",
      retryAfter: Number.isFinite(retryAfter) ? retryAfter : 0,
      preStream: mode === "post" && !this.messageId,
    });
  }

  /** Ask the server to stop this answer; before its id is known, as soon as it is. */
  async stop() {
    if (this.final || this.detached) return;
    if (!this.messageId) {
      this.stopRequested = true;
      return;
    }
    this.stopRequested = false;
    let status = "";
    try {
      const response = await this.request(`${encodeURIComponent(this.messageId)}/stop/`, {
        method: "POST",
        headers: { Accept: "application/json" },
      });
      if (response.ok) status = (await response.json()).status || "";
    } catch {
      status = "";
    }
    // The stream itself normally reports `done` (stopped); if it cannot (reconnecting),
    // end here with what the stop endpoint said.
    await new Promise((resolve) => setTimeout(resolve, this.options.stopGraceMs));
    if (this.final || this.detached) return;
    if (status === "stopped" || status === "complete") {
      this.controller?.abort();
      this.end({ status, finishReason: status === "stopped" ? "stopped" : "stop" });
    } else if (status === "error" || status === "interrupted") {
      this.controller?.abort();
      this.end({ status, code: status === "interrupted" ? "interrupted" : "internal_error" });
    } else {
      this.emit({ type: "stop-unconfirmed" });
    }
  }
}
