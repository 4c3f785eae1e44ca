// A fake of the stream service for the stream client's tests: each call to the returned
// request(suffix, init) takes the next scripted reply. A reply is a Response, an Error (the
// fetch rejects), or {events, drop}: an event stream of those events that ends cleanly or,
// with drop: true, fails mid-body as a lost connection does.

export function sse(id, data) {
  return `id: ${id}\ndata: ${JSON.stringify(data)}\n\n`;
}

export function eventStream(chunks, { drop = false } = {}) {
  const encoder = new TextEncoder();
  const queue = [...chunks];
  // One chunk per read, so that a drop comes after the reader has seen every chunk
  // (erroring a stream discards what is still queued).
  const body = new ReadableStream({
    pull(controller) {
      if (queue.length) controller.enqueue(encoder.encode(queue.shift()));
      else if (drop) controller.error(new TypeError("network error"));
      else controller.close();
    },
  });
  return new Response(body, { status: 200, headers: { "Content-Type": "text/event-stream; charset=utf-8" } });
}

export function jsonResponse(status, data, headers = {}) {
  return new Response(JSON.stringify(data), { status, headers: { "Content-Type": "application/json", ...headers } });
}

export function fakeService(replies) {
  const calls = [];
  const queue = [...replies];
  async function request(suffix, init = {}) {
    calls.push({ suffix, method: init.method || "GET", headers: init.headers || {}, body: init.body });
    const reply = queue.shift();
    if (reply === undefined) throw new Error(`unexpected request ${init.method || "GET"} ${suffix}`);
    const value = typeof reply === "function" ? reply(suffix, init) : reply;
    if (value instanceof Error) throw value;
    return value;
  }
  return { request, calls, pending: () => queue.length };
}

/** Collect a client's updates; `ended` resolves at the first `end` or `lost`. */
export function recorder() {
  const updates = [];
  let resolve;
  const ended = new Promise((r) => {
    resolve = r;
  });
  const onUpdate = (update) => {
    updates.push(update);
    if (update.type === "end" || update.type === "lost") resolve(update);
  };
  return { updates, ended, onUpdate, types: () => updates.map((u) => u.type) };
}
