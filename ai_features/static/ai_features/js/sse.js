// A Server-Sent Events reader for fetch() responses (EventSource cannot POST or set headers).
// Follows the HTML event-stream grammar: `id:`, `data:` (joined by "\n"), `retry:`,
// comments (": ping") ignored, an event is dispatched on a blank line.

export class SSEParser {
  constructor(onEvent, onRetry) {
    this.onEvent = onEvent;
    this.onRetry = onRetry || (() => {});
    this.buffer = "";
    this.data = [];
    this.eventId = null;
    this.eventType = "";
  }

  push(chunk) {
    this.buffer += chunk;
    let start = 0;
    for (;;) {
      const match = /\r\n|\r|\n/g;
      match.lastIndex = start;
      const found = match.exec(this.buffer);
      if (!found) break;
      // A lone "\r" at the very end may be the first half of "\r\n": wait for more input.
      if (found[0] === "\r" && found.index === this.buffer.length - 1) break;
      this.line(this.buffer.slice(start, found.index));
      start = found.index + found[0].length;
    }
    this.buffer = this.buffer.slice(start);
  }

  /** End of input: a final "\r" is a line end after all. Incomplete events are dropped. */
  end() {
    if (this.buffer.endsWith("\r")) {
      this.line(this.buffer.slice(0, -1));
    }
    this.buffer = "";
  }

  line(text) {
    if (text === "") {
      this.dispatch();
      return;
    }
    if (text.startsWith(":")) return; // comment, e.g. ": ping"
    const colon = text.indexOf(":");
    const field = colon === -1 ? text : text.slice(0, colon);
    let value = colon === -1 ? "" : text.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (field === "data") this.data.push(value);
    else if (field === "id") {
      if (!value.includes("\0")) this.eventId = value;
    } else if (field === "retry") {
      if (/^\d+$/.test(value)) this.onRetry(Number(value));
    } else if (field === "event") this.eventType = value;
  }

  dispatch() {
    const id = this.eventId;
    const data = this.data;
    const type = this.eventType;
    this.data = [];
    this.eventId = null;
    this.eventType = "";
    if (!data.length) return;
    this.onEvent({ id, type: type || "message", data: data.join("\n") });
  }
}

/**
 * Read an event-stream response to its end, calling onEvent({id, type, data}) per event.
 * Resolves when the body ends; rejects when the connection fails or the signal aborts.
 */
export async function readEventStream(response, onEvent, onRetry) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder("utf-8");
  const parser = new SSEParser(onEvent, onRetry);
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      parser.push(decoder.decode(value, { stream: true }));
    }
    parser.push(decoder.decode());
    parser.end();
  } finally {
    try {
      reader.releaseLock();
    } catch {
      /* the stream is already closed */
    }
  }
}

/** The first `data:` JSON of a (short) event-stream body, or null: used for error bodies. */
export function firstEventData(text) {
  let found = null;
  const parser = new SSEParser((event) => {
    if (found === null) found = event.data;
  });
  parser.push(text);
  parser.push("\n\n");
  if (found === null) return null;
  try {
    return JSON.parse(found);
  } catch {
    return null;
  }
}
