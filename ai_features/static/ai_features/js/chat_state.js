// Pure predicates and mappings for the chat page's states: no DOM, no network, so that
// `node --test` checks them directly (tests/js/chat_state.test.mjs).

/** The codes the page can show a text for, by HTTP status of a failed stream request. */
const CODE_BY_STATUS = {
  400: "invalid_request",
  401: "unauthenticated",
  403: "csrf_failed",
  404: "not_found",
  413: "payload_too_large",
  429: "rate_limited",
  503: "server_restarting",
};

/** The error code of a failed (non-stream) response: the body's code, else by status. */
export function errorCodeFor(status, data) {
  if (data && typeof data.code === "string" && data.code) return data.code;
  return CODE_BY_STATUS[status] || (status >= 500 ? "internal_error" : "invalid_request");
}

/**
 * The error of a failed response body: one SSE `error` event (the stream endpoints, as the
 * streaming contract says), else the one JSON error shape `{"error": {"code", "message"}}`
 * (the stop endpoint and the JSON API). Returns {code, content} or null (a proxy's page).
 */
export function parseErrorBody(text, firstEventData) {
  const event = firstEventData(text);
  if (event) return { code: event.code, content: event.content };
  try {
    const json = JSON.parse(text);
    if (json && json.error && typeof json.error === "object") {
      return { code: json.error.code, content: json.error.message };
    }
  } catch {
    /* not JSON either */
  }
  return null;
}

/** A resume that meets a proxy error or a restarting server is a dropped connection. */
export function resumeShouldRetry(status, code) {
  return status >= 502 || code === "server_restarting";
}

/** How a final stream event ends an answer: {status, ...} for the renderer. */
export function endingOf(event) {
  if (event.type === "done") {
    return {
      status: event.finish_reason === "stopped" ? "stopped" : "complete",
      finishReason: event.finish_reason || "stop",
      usage: event.usage || null,
      model: event.model || null,
    };
  }
  const code = event.code || "internal_error";
  const interrupted = code === "server_restarting" || code === "interrupted";
  return { status: interrupted ? "interrupted" : "error", code, content: event.content || "" };
}

/** Reconnection back-off: 0.5 s, 1 s, 2 s … capped at 15 s. */
export function reconnectDelayMs(attempt) {
  return Math.min(15000, 500 * 2 ** Math.max(0, attempt - 1));
}

/** Whether the send button may be used. */
export function canSend({ text, streaming, maxChars }) {
  return !streaming && text.trim().length > 0 && text.length <= maxChars;
}

/** Whether the last answer (messages: [{role, status}] in screen order) can be regenerated. */
export function canRegenerate(messages, streaming) {
  if (streaming || messages.length < 2) return false;
  const last = messages[messages.length - 1];
  if (last.role !== "assistant" || last.status === "streaming") return false;
  return messages.slice(0, -1).some((m) => m.role === "user");
}

/** Keys that scroll the message list when it (or the page) has focus. */
const SCROLL_KEYS = new Set(["ArrowUp", "ArrowDown", "PageUp", "PageDown", "Home", "End", " "]);

/** Whether a keydown is a user scrolling the messages (not typing in a field). */
export function isScrollKey(key, targetIsEditable) {
  return !targetIsEditable && SCROLL_KEYS.has(key);
}

/**
 * Whether the view keeps following new text after a scroll event. Only a scroll the user
 * made (wheel, touch, keys, scrollbar) may stop following; scrolls the page makes itself
 * (new text, layout changes) never do. Coming back to the bottom always resumes it.
 */
export function followsAfterScroll({ following, userInitiated, atBottom }) {
  if (atBottom) return true;
  return userInitiated ? false : following;
}

/** Distance from the bottom within which the view counts as "at the bottom". */
export const STICK_THRESHOLD_PX = 6;

export function isAtBottom({ scrollHeight, scrollTop, clientHeight }) {
  return scrollHeight - scrollTop - clientHeight < STICK_THRESHOLD_PX;
}

/** "2/3" for the version switcher; null when a turn has one version. */
export function versionLabel(index, count) {
  if (!Number.isInteger(count) || count < 2) return null;
  return `${index + 1}/${count}`;
}

/** Keyboard shortcuts: the action for a keydown, or null. */
export function shortcutFor({ key, ctrlKey, metaKey, shiftKey, altKey, isComposing }, { typing, streaming, dialogOpen }) {
  if (isComposing) return null;
  const mod = ctrlKey || metaKey;
  if (key === "Escape" && streaming && !dialogOpen) return "stop";
  if (mod && shiftKey && !altKey && (key === "o" || key === "O")) return "new-chat";
  if (mod && !shiftKey && !altKey && (key === "k" || key === "K")) return "focus-search";
  if (!mod && !altKey && key === "?" && !typing && !dialogOpen) return "help";
  return null;
}

/** The conversation id in a chat URL path (/ai/chat/<id>/), or null for a new chat. */
export function conversationIdFromPath(pathname, base) {
  if (!pathname.startsWith(base)) return null;
  const rest = pathname.slice(base.length).replace(/\/+$/, "");
  if (!rest || rest.includes("/")) return null;
  try {
    return decodeURIComponent(rest);
  } catch {
    return null;
  }
}

export function pathForConversation(base, id) {
  return id ? `${base}${encodeURIComponent(id)}/` : base;
}
