// c3-app chat page. Plain ES module, no build step. Visible text comes from the template
// (#chat-strings, translated by Django); configuration from #chat-config.

import { Api, ApiError } from "./js/api.js";
import {
  conversationIdFromPath,
  followsAfterScroll,
  isAtBottom as atBottom,
  isScrollKey,
  pathForConversation,
  shortcutFor,
  versionLabel,
} from "./js/chat_state.js";
import { StreamClient } from "./js/stream_client.js";
import { CHECK_ICON, COPY_ICON, icon, markdownReady, renderInto, setLabels } from "./js/markdown.js";

const config = JSON.parse(document.getElementById("chat-config").textContent);
const STRINGS = JSON.parse(document.getElementById("chat-strings").textContent);
const LANG = document.documentElement.lang || "ja";

const INFLIGHT_KEY = "c3.inflight";
const HISTORY_LIMIT = 200;
const MAX_RECONNECTS = 8;
const RESTART_RESUME_DELAY_MS = 3000;

const ICONS = {
  left: ["M15 6l-6 6 6 6"],
  right: ["M9 6l6 6-6 6"],
  pencil: ["M12 20h9", "M16.5 3.5a2.1 2.1 0 0 1 3 3L7 19l-4 1 1-4z"],
  trash: ["M3 6h18", "M8 6V4h8v2", "M19 6l-1 14H6L5 6", "M10 11v6M14 11v6"],
  refresh: ["M21 12a9 9 0 1 1-2.64-6.36", "M21 3v6h-6"],
  edit: ["M4 20h4L19 9l-4-4L4 16z", "M14 6l4 4"],
  plug: ["M9 7V3M15 7V3", "M6 7h12v4a6 6 0 0 1-12 0z", "M12 17v4"],
};

// ------------------------------------------------------------------------------ helpers

function t(key, params) {
  let text = STRINGS[key] ?? key;
  if (params) {
    for (const [name, value] of Object.entries(params)) text = text.split(`{${name}}`).join(String(value));
  }
  return text;
}

function errorText(code, fallback) {
  return (code && STRINGS.errors[code]) || fallback || STRINGS.errors.internal_error;
}

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "className") node.className = value;
    else if (key === "text") node.textContent = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? "" : value);
  }
  node.append(...children.filter((c) => c !== null && c !== undefined));
  return node;
}

function iconButton(className, label, paths, extra = {}) {
  return el("button", { type: "button", className: `icon-button ${className}`, "aria-label": label, title: label, ...extra }, icon(paths));
}

function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

const timeFormat = new Intl.DateTimeFormat(LANG, { hour: "2-digit", minute: "2-digit" });
const dateTimeFormat = new Intl.DateTimeFormat(LANG, { dateStyle: "medium", timeStyle: "short" });

async function copyText(text) {
  try {
    await navigator.clipboard.writeText(text);
    return true;
  } catch {
    const area = el("textarea", { className: "visually-hidden", "aria-hidden": "true" });
    area.value = text;
    document.body.append(area);
    area.select();
    let ok = false;
    try {
      ok = document.execCommand("copy");
    } catch {
      ok = false;
    }
    area.remove();
    return ok;
  }
}

// ------------------------------------------------------------------------------ DOM

const $ = (id) => document.getElementById(id);
const dom = {
  app: $("app"),
  sidebar: $("sidebar"),
  list: $("conversation-list"),
  listEmpty: $("conversation-empty"),
  newButton: $("new-conversation"),
  topNewButton: $("topbar-new-conversation"),
  toggle: $("sidebar-toggle"),
  close: $("sidebar-close"),
  backdrop: $("sidebar-backdrop"),
  title: $("conversation-title"),
  topbar: document.querySelector(".topbar"),
  container: $("chat-container"),
  emptyState: $("empty-state"),
  scrollButton: $("scroll-to-bottom"),
  form: $("chat-form"),
  input: $("chat-input"),
  send: $("send-button"),
  stop: $("stop-button"),
  charCount: $("char-count"),
  composerError: $("composer-error"),
  status: $("chat-status"),
  sessionBanner: $("session-expired"),
  search: $("conversation-search"),
  shortcutsButton: $("shortcuts-button"),
  shortcutsDialog: $("shortcuts-dialog"),
  modelSelect: $("model-select"),
  settingsButton: $("settings-button"),
  settingsDialog: $("settings-dialog"),
  settingsForm: $("settings-form"),
  settingsError: $("settings-error"),
  instructions: $("conversation-instructions"),
  exportButton: $("export-button"),
  exportMenu: $("export-menu"),
  exportMarkdown: $("export-markdown"),
  exportJson: $("export-json"),
  deleteAllButton: $("delete-all-button"),
  deleteAllDialog: $("delete-all-dialog"),
};

setLabels({ copyCode: t("copyCode"), copy: t("copy"), copied: t("copied"), code: t("code"), table: t("table") });

const api = new Api(config, {
  onSessionExpired() {
    dom.sessionBanner.hidden = false;
  },
});

const state = {
  conversations: [],
  matches: null, // search results while the search field holds a query
  query: "",
  currentId: null,
  newChatModel: null, // the model picked for a chat that has no conversation yet
  loadSeq: 0,
  loading: false, // a conversation's history is on its way: sending waits (it would be wiped)
  stream: null, // the answer the composer is waiting on (see newAnswer)
  background: new Set(), // answers switched away from, still read for the sidebar marker
  live: new Set(), // conversation ids with an answer streaming in this tab
  stick: true,
  unloading: false,
};

// Per message element: { role, text, status, stream, userText, userEl, preStream }
const messages = new WeakMap();

function announce(text) {
  dom.status.textContent = "";
  setTimeout(() => {
    dom.status.textContent = text;
  }, 50);
}

function showComposerError(text) {
  dom.composerError.textContent = text;
  dom.composerError.hidden = !text;
}

// ------------------------------------------------------------------------------ sidebar

const narrow = window.matchMedia("(max-width: 720px)");

function setSidebar(open, { focus = true } = {}) {
  const isOpen = open && narrow.matches;
  dom.app.classList.toggle("sidebar-open", isOpen);
  dom.toggle.setAttribute("aria-expanded", String(isOpen));
  dom.toggle.setAttribute("aria-label", isOpen ? t("closeSidebar") : t("openSidebar"));
  dom.backdrop.hidden = !isOpen;
  dom.sidebar.inert = narrow.matches && !isOpen;
  if (!focus) return;
  if (isOpen) {
    const current = dom.list.querySelector(".is-current .conversation-link");
    (current || dom.newButton).focus();
  } else if (narrow.matches && dom.sidebar.contains(document.activeElement)) {
    dom.toggle.focus();
  }
}

narrow.addEventListener("change", () => setSidebar(false, { focus: false }));
dom.toggle.addEventListener("click", () => setSidebar(!dom.app.classList.contains("sidebar-open")));
dom.close.addEventListener("click", () => setSidebar(false));
dom.backdrop.addEventListener("click", () => setSidebar(false));
document.addEventListener("keydown", (event) => {
  if (event.key === "Escape" && dom.app.classList.contains("sidebar-open")) setSidebar(false);
});

function groupLabel(date, now) {
  const startOfDay = (d) => new Date(d.getFullYear(), d.getMonth(), d.getDate()).getTime();
  const days = Math.round((startOfDay(now) - startOfDay(date)) / 86400000);
  if (days <= 0) return t("today");
  if (days === 1) return t("yesterday");
  if (days < 7) return t("previous7");
  if (days < 30) return t("previous30");
  return t("older");
}

function conversationTitle(conversation) {
  return (conversation && conversation.title) || t("untitled");
}

function renderConversationList({ force = false } = {}) {
  // Never pull the list out from under an inline rename; it re-renders when that ends.
  if (!force && dom.list.querySelector(".rename-input")) return;
  const focused = dom.list.contains(document.activeElement) ? document.activeElement : null;
  const focusId = focused && focused.closest(".conversation-item")?.dataset.conversationId;
  const focusClass = focused && ["conversation-link", "rename-conversation", "delete-conversation"].find((c) => focused.classList.contains(c));
  const now = new Date();
  let lastGroup = null;
  const shown = state.matches ?? state.conversations;
  const items = shown.map((conversation) => {
    const group = groupLabel(new Date(conversation.updated_at), now);
    const title = conversationTitle(conversation);
    const current = conversation.id === state.currentId;
    const item = el("li", {
      className: `conversation-item${conversation.title ? "" : " is-untitled"}`,
      "data-conversation-id": conversation.id,
      "data-group-label": group !== lastGroup ? group : null,
    });
    if (current) item.classList.add("is-current");
    lastGroup = group;
    const link = el(
      "button",
      { type: "button", className: "conversation-link", title, "aria-current": current ? "page" : null },
      el("span", { className: "conversation-title-text", text: title }),
      state.live.has(conversation.id) || conversation.streaming ? el("span", { className: "conversation-live", title: t("streamingBadge") }) : null,
    );
    const actions = el(
      "div",
      { className: "conversation-actions" },
      iconButton("rename-conversation", t("renameLabel", { title }), ICONS.pencil),
      iconButton("delete-conversation", t("deleteLabel", { title }), ICONS.trash),
    );
    item.append(el("div", { className: "conversation-row" }, link, actions));
    return item;
  });
  dom.list.replaceChildren(...items);
  if (focusId && focusClass) {
    dom.list.querySelector(`[data-conversation-id="${CSS.escape(focusId)}"] .${focusClass}`)?.focus({ preventScroll: true });
  }
  dom.listEmpty.textContent = state.matches ? t("noMatches") : t("noConversations");
  dom.listEmpty.hidden = shown.length > 0;
  updateTitle();
}

function updateTitle() {
  const conversation = state.conversations.find((c) => c.id === state.currentId);
  const title = conversationTitle(conversation);
  dom.title.textContent = title;
  document.title = `${title} · c3-app`;
}

async function loadConversations() {
  try {
    const data = await api.json("GET", config.conversationsUrl);
    state.conversations = data.conversations || [];
  } catch (error) {
    if (!state.conversations.length) {
      dom.listEmpty.textContent = t("listFailed");
      dom.listEmpty.hidden = false;
    }
    throw error;
  }
  renderConversationList();
  return state.conversations;
}

let listRefreshTimer = null;
function refreshConversationsSoon(delay = 250) {
  clearTimeout(listRefreshTimer);
  listRefreshTimer = setTimeout(() => {
    loadConversations().catch(() => {});
    if (state.query) searchConversations();
  }, delay);
}

// Search: the server matches titles and message text (?q=); the list shows the matches
// until the field is cleared.
let searchSeq = 0;
let searchTimer = null;
async function searchConversations() {
  const query = dom.search.value.trim();
  state.query = query;
  const seq = ++searchSeq;
  if (!query) {
    state.matches = null;
    renderConversationList();
    return;
  }
  try {
    const data = await api.json("GET", `${config.conversationsUrl}?${new URLSearchParams({ q: query })}`);
    if (seq !== searchSeq) return;
    state.matches = data.conversations || [];
  } catch {
    if (seq !== searchSeq) return;
    state.matches = [];
  }
  renderConversationList();
  announce(state.matches.length ? t("matches", { count: state.matches.length }) : t("noMatches"));
}

dom.search.addEventListener("input", () => {
  clearTimeout(searchTimer);
  searchTimer = setTimeout(searchConversations, 200);
});
dom.search.addEventListener("keydown", (event) => {
  if (event.isComposing || event.keyCode === 229) return;
  if (event.key === "Escape" && dom.search.value) {
    event.preventDefault();
    event.stopPropagation();
    dom.search.value = "";
    searchConversations();
  } else if (event.key === "ArrowDown" || event.key === "Enter") {
    const first = dom.list.querySelector(".conversation-link");
    if (first) {
      event.preventDefault();
      first.focus();
    }
  }
});

dom.list.addEventListener("click", (event) => {
  const item = event.target.closest(".conversation-item");
  if (!item) return;
  const id = item.dataset.conversationId;
  if (event.target.closest(".rename-conversation")) {
    startRename(item, id);
  } else if (event.target.closest(".delete-conversation")) {
    deleteConversation(id);
  } else if (event.target.closest(".conversation-link")) {
    setSidebar(false, { focus: false });
    if (id !== state.currentId) openConversation(id);
    if (!narrow.matches) dom.input.focus({ preventScroll: true });
  }
});

function startRename(item, id) {
  const conversation = state.conversations.find((c) => c.id === id);
  if (!conversation || item.querySelector(".rename-input")) return;
  const row = item.querySelector(".conversation-row");
  const link = row.querySelector(".conversation-link");
  const input = el("input", {
    type: "text",
    className: "rename-input",
    maxlength: "200",
    "aria-label": t("renameInput"),
  });
  input.value = conversation.title;
  link.hidden = true;
  row.querySelector(".conversation-actions").hidden = true;
  row.prepend(input);
  input.focus();
  input.select();
  let done = false;
  const finish = async (save) => {
    if (done) return;
    done = true;
    const title = input.value.replace(/\s+/g, " ").trim();
    if (!save || title === conversation.title) {
      input.remove();
      renderConversationList({ force: true });
      dom.list.querySelector(`[data-conversation-id="${CSS.escape(id)}"] .rename-conversation`)?.focus();
      return;
    }
    try {
      const updated = await api.json("PATCH", `${config.conversationsUrl}${encodeURIComponent(id)}/`, { title });
      // The list may have been reloaded while the input was open: update the current copy too.
      for (const c of [conversation, state.conversations.find((item) => item.id === id)]) {
        if (c) Object.assign(c, updated);
      }
    } catch {
      showComposerError(t("renameFailed"));
    }
    input.remove();
    renderConversationList({ force: true });
    dom.list.querySelector(`[data-conversation-id="${CSS.escape(id)}"] .conversation-link`)?.focus();
  };
  input.addEventListener("keydown", (event) => {
    if (event.isComposing || event.keyCode === 229) return;
    if (event.key === "Enter") {
      event.preventDefault();
      finish(true);
    } else if (event.key === "Escape") {
      event.preventDefault();
      event.stopPropagation();
      finish(false);
    }
  });
  input.addEventListener("blur", () => finish(true));
}

async function deleteConversation(id) {
  const conversation = state.conversations.find((c) => c.id === id);
  if (!conversation) return;
  if (!window.confirm(t("deleteConfirm", { title: conversationTitle(conversation) }))) return;
  try {
    await api.json("DELETE", `${config.conversationsUrl}${encodeURIComponent(id)}/`);
  } catch (error) {
    if (!(error instanceof ApiError && error.status === 404)) {
      showComposerError(t("deleteFailed"));
      return;
    }
  }
  state.conversations = state.conversations.filter((c) => c.id !== id);
  dropBackgroundReaders(id);
  state.live.delete(id);
  const inflight = readInflight();
  if (inflight && inflight.conversation_id === id) clearInflight();
  if (id === state.currentId) {
    await openConversation(state.conversations.length ? state.conversations[0].id : null);
  }
  if (state.matches) state.matches = state.matches.filter((c) => c.id !== id);
  renderConversationList();
  // The deleted row held the focus: give it to the input rather than to <body>.
  if (!dom.list.contains(document.activeElement) || document.activeElement === document.body) dom.input.focus();
}

/** A new chat: nothing is created on the server until its first message is sent. */
async function newConversation() {
  setSidebar(false, { focus: false });
  state.newChatModel = null; // a new chat starts on the default model
  if (state.currentId || state.stream) await openConversation(null);
  else updateConversationTools();
  dom.input.focus();
}

dom.newButton.addEventListener("click", newConversation);
dom.topNewButton.addEventListener("click", newConversation);

// ------------------------------------------------------------------------------ messages

function isAtBottom() {
  return atBottom(dom.container);
}

function scrollToBottom(force = false) {
  if (force) state.stick = true;
  if (state.stick) dom.container.scrollTop = dom.container.scrollHeight;
  updateScrollButton();
}

function updateScrollButton() {
  const c = dom.container;
  dom.scrollButton.hidden = c.scrollHeight - c.scrollTop - c.clientHeight < 120;
  dom.topbar.classList.toggle("is-scrolled", c.scrollTop > 4);
}

// Following new text stops only when the user scrolls (wheel, touch, keys, scrollbar):
// scroll events the page causes itself (text growing, an indicator appearing) never do.
const USER_SCROLL_WINDOW_MS = 300;
let userScrollUntil = 0;
let draggingScrollbar = false;
function userScrolling() {
  userScrollUntil = performance.now() + USER_SCROLL_WINDOW_MS;
}

dom.container.addEventListener("scroll", () => {
  const userInitiated = draggingScrollbar || performance.now() < userScrollUntil;
  state.stick = followsAfterScroll({ following: state.stick, userInitiated, atBottom: isAtBottom() });
  updateScrollButton();
}, { passive: true });
dom.container.addEventListener("wheel", (event) => {
  userScrolling();
  if (event.deltaY < 0 && dom.container.scrollHeight > dom.container.clientHeight) state.stick = false;
}, { passive: true });
dom.container.addEventListener("touchmove", userScrolling, { passive: true });
dom.container.addEventListener("pointerdown", (event) => {
  // A press right of the content box is on the scrollbar.
  if (event.target === dom.container && event.offsetX >= dom.container.clientWidth) draggingScrollbar = true;
});
window.addEventListener("pointerup", () => {
  if (draggingScrollbar) userScrolling();
  draggingScrollbar = false;
});
document.addEventListener("keydown", (event) => {
  const target = event.target;
  const editable = target instanceof HTMLElement && (target.isContentEditable || /^(INPUT|TEXTAREA|SELECT)$/.test(target.tagName));
  if (isScrollKey(event.key, editable)) userScrolling();
});
dom.scrollButton.addEventListener("click", () => {
  state.stick = true;
  dom.container.scrollTo({ top: dom.container.scrollHeight, behavior: "smooth" });
});
// Anything that changes the height of the list (text, an indicator, a notice, a code block
// finishing) keeps the view at the bottom while it follows.
const resizes = new ResizeObserver(() => scrollToBottom());
resizes.observe(dom.container);

function showEmptyState() {
  dom.emptyState.hidden = Boolean(dom.container.querySelector(".message"));
}

function clearMessages() {
  for (const node of [...dom.container.children]) {
    if (node !== dom.emptyState) node.remove();
  }
}

function createMessage({ role, content = "", status = "complete", id = null, createdAt = null, versions = null, model = null, usage = null }) {
  const article = el("article", {
    className: "message",
    "data-role": role,
    "aria-label": role === "user" ? t("you") : t("assistant"),
  });
  if (id) article.dataset.messageId = id;
  const body = el("div", { className: "message-body" });
  const contentEl = el("div", { className: "message-content" });
  const actions = el("div", { className: "message-actions" });
  body.append(contentEl, actions);
  if (role === "assistant") {
    article.dataset.status = status;
    article.append(el("div", { className: "message-avatar", "aria-hidden": "true", text: "c3" }));
  }
  article.append(body);
  resizes.observe(article);
  const info = { role, text: content, status, createdAt, versions, model, usage };
  messages.set(article, info);
  if (role === "user") {
    contentEl.textContent = content;
  } else {
    renderInto(contentEl, content, { final: status !== "streaming" });
  }
  buildActions(article);
  return article;
}

/** Previous/next buttons and "2/3" for a turn with several versions, else null. */
function versionSwitcher(info) {
  const v = info.versions;
  const label = v ? versionLabel(v.index - 1, v.count) : null;
  if (!label) return null;
  return el(
    "div",
    { className: "version-switcher", role: "group", "aria-label": t("versions") },
    iconButton("version-button", t("previousVersion"), ICONS.left, { "data-action": "previous-version", disabled: v.index <= 1 }),
    el("span", { className: "version-label", "data-role": "version-label", text: label }),
    iconButton("version-button", t("nextVersion"), ICONS.right, { "data-action": "next-version", disabled: v.index >= v.count }),
  );
}

/** "model · 123 tokens": what is stored about an answer, shown with its footer. */
function answerMeta(info) {
  const parts = [];
  if (info.model) parts.push(info.model);
  const usage = info.usage;
  if (usage) {
    const total = usage.total_tokens ?? (usage.prompt_tokens || 0) + (usage.completion_tokens || 0);
    if (total) parts.push(t("tokens", { count: total }));
  }
  if (!parts.length) return null;
  return el("span", { className: "message-meta", "data-role": "answer-meta", text: parts.join(" · ") });
}

function buildActions(article) {
  const info = messages.get(article);
  const actions = article.querySelector(".message-actions");
  const regenerate = actions.querySelector("#regenerate-button");
  actions.replaceChildren();
  if (info.role === "assistant" && info.status === "streaming") return;
  const items = info.text ? [iconButton("copy-message", t("copyMessage"), COPY_ICON)] : [];
  if (info.role === "user" && article.dataset.messageId) {
    items.push(iconButton("edit-message", t("edit"), ICONS.edit, { "data-action": "edit" }));
  }
  if (regenerate) items.push(regenerate);
  items.push(versionSwitcher(info));
  if (info.role === "assistant") items.push(answerMeta(info));
  if (info.createdAt) {
    const date = new Date(info.createdAt);
    if (!Number.isNaN(date.getTime())) {
      items.push(el("time", { className: "message-time", datetime: date.toISOString(), title: dateTimeFormat.format(date), text: timeFormat.format(date) }));
    }
  }
  actions.append(...items.filter(Boolean));
}

function appendMessage(options) {
  const article = createMessage(options);
  dom.container.append(article);
  dom.emptyState.hidden = true;
  return article;
}

function setTyping(article, on) {
  const body = article.querySelector(".message-body");
  const existing = body.querySelector(".typing-indicator");
  if (on && !existing) {
    const indicator = el(
      "div",
      { className: "typing-indicator", role: "status" },
      el("span", { className: "dot", "aria-hidden": "true" }),
      el("span", { className: "dot", "aria-hidden": "true" }),
      el("span", { className: "dot", "aria-hidden": "true" }),
      el("span", { className: "visually-hidden", text: t("thinking") }),
    );
    body.insertBefore(indicator, body.querySelector(".message-actions"));
  } else if (!on && existing) {
    existing.remove();
  }
  // In the same task as the change, so the view never shows a gap under the last line.
  scrollToBottom();
}

function setNotice(article, notice) {
  const body = article.querySelector(".message-body");
  body.querySelector(".message-notice")?.remove();
  if (!notice) return null;
  const node = el("div", { className: `message-notice ${notice.kind ? `is-${notice.kind}` : ""}`, role: notice.kind === "error" ? "alert" : null });
  node.append(el("span", { className: "notice-text", text: notice.text }));
  for (const action of notice.actions || []) node.append(action);
  body.insertBefore(node, body.querySelector(".message-actions"));
  scrollToBottom();
  return node;
}

function noticeButton(className, label, paths) {
  return el("button", { type: "button", className: `notice-button ${className}` }, icon(paths), el("span", { text: label }));
}

/** Show the final state of an answer: its notice, its actions. */
function applyStatus(article, { status, finishReason = "", code = "", content = "", retryAfter = 0 }) {
  const info = messages.get(article);
  info.status = status;
  article.dataset.status = status;
  article.removeAttribute("aria-busy");
  setTyping(article, false);
  clearInterval(info.countdown);
  if (status === "complete") {
    setNotice(article, finishReason === "length" ? { kind: "muted", text: t("statusLength") } : null);
  } else if (status === "stopped") {
    setNotice(article, { kind: "muted", text: t("statusStopped") });
  } else if (status === "interrupted") {
    const restarting = code === "server_restarting";
    setNotice(article, {
      kind: "warning",
      text: errorText(restarting ? "server_restarting" : "interrupted", content),
      actions: [noticeButton("retry-button", t("retry"), ICONS.refresh)],
    });
  } else if (status === "error") {
    const actions = [];
    if (code === "network_error" && info.stream && info.stream.client.messageId) {
      actions.push(noticeButton("resume-button", t("resume"), ICONS.plug));
    }
    if (code !== "unauthenticated" && code !== "upstream_auth") {
      actions.push(noticeButton("retry-button", t("retry"), ICONS.refresh));
    }
    const notice = setNotice(article, { kind: "error", text: errorText(code, content), actions });
    if (code === "rate_limited" && retryAfter > 0) startCountdown(article, notice, retryAfter);
  }
  buildActions(article);
}

function startCountdown(article, notice, seconds) {
  const info = messages.get(article);
  const text = notice.querySelector(".notice-text");
  const button = notice.querySelector(".retry-button");
  let left = seconds;
  const tick = () => {
    if (left <= 0) {
      clearInterval(info.countdown);
      text.textContent = errorText("rate_limited");
      if (button) button.disabled = false;
      return;
    }
    text.textContent = `${errorText("rate_limited")} ${t("retryAfter", { seconds: left })}`;
    if (button) button.disabled = true;
    left -= 1;
  };
  tick();
  info.countdown = setInterval(tick, 1000);
}

/** Mark the last message, and give the last answer the regenerate button. */
function updateMessageChrome() {
  const all = dom.container.querySelectorAll(".message");
  all.forEach((node, index) => node.classList.toggle("is-last", index === all.length - 1));
  const existing = document.getElementById("regenerate-button");
  const last = all[all.length - 1];
  const lastInfo = last && messages.get(last);
  const canRegenerate =
    !state.stream && last && lastInfo.role === "assistant" && lastInfo.status !== "streaming" && previousUserText(last);
  if (!canRegenerate) {
    existing?.remove();
    return;
  }
  const button = existing || iconButton("regenerate", t("regenerateLabel"), ICONS.refresh, { id: "regenerate-button" });
  const actions = last.querySelector(".message-actions");
  if (button.parentElement !== actions) {
    actions.insertBefore(button, actions.querySelector(".version-switcher, .message-meta, .message-time"));
  }
}

function previousUserText(article) {
  let node = article.previousElementSibling;
  while (node) {
    const info = messages.get(node);
    if (info && info.role === "user") return info.text;
    node = node.previousElementSibling;
  }
  return "";
}

// Throttled Markdown rendering: at most once per animation frame.
const dirty = new Set();
let frame = 0;
function scheduleRender(article) {
  dirty.add(article);
  if (!frame) frame = requestAnimationFrame(flushRender);
}

function flushRender() {
  frame = 0;
  for (const article of dirty) renderMessage(article);
  dirty.clear();
  scrollToBottom();
}

function renderNow(article) {
  dirty.delete(article);
  renderMessage(article);
  scrollToBottom();
}

const CURSOR_HOSTS = new Set(["P", "UL", "OL", "LI", "BLOCKQUOTE", "H1", "H2", "H3", "H4", "H5", "H6"]);

function renderMessage(article) {
  const info = messages.get(article);
  const content = article.querySelector(".message-content");
  const streaming = info.status === "streaming";
  for (const cursor of content.querySelectorAll(".stream-cursor")) cursor.remove();
  renderInto(content, info.text, { final: !streaming });
  if (!streaming || !info.text) return;
  // The caret goes at the end of the text, inside the last paragraph or list item.
  let host = content;
  for (;;) {
    const last = host.lastElementChild;
    if (!last || (host.lastChild && host.lastChild.nodeType === Node.TEXT_NODE && host.lastChild.textContent.trim())) break;
    if (CURSOR_HOSTS.has(last.tagName)) host = last;
    else if (last.classList.contains("code-block")) {
      host = last.querySelector("code") || last;
      break;
    } else break;
  }
  if (host.closest(".table-wrap")) host = content;
  host.append(el("span", { className: "stream-cursor", "aria-hidden": "true" }));
}

dom.container.addEventListener("click", async (event) => {
  const target = event.target.closest("button");
  if (!target || !dom.container.contains(target)) return;
  const article = target.closest(".message");
  if (target.classList.contains("suggestion")) {
    dom.input.value = target.textContent.trim();
    onInput();
    submit();
  } else if (target.classList.contains("copy-code-button")) {
    const code = target.closest(".code-block")?.querySelector("pre")?.textContent ?? "";
    flashCopied(target, await copyText(code));
  } else if (target.classList.contains("copy-message") && article) {
    flashCopied(target, await copyText(messages.get(article).text));
  } else if (target.classList.contains("edit-message") && article) {
    startEdit(article);
  } else if (target.classList.contains("edit-save") && article) {
    saveEdit(article);
  } else if (target.classList.contains("edit-cancel") && article) {
    cancelEdit(article);
  } else if (target.dataset.action === "previous-version" || target.dataset.action === "next-version") {
    if (article) switchVersion(article, target.dataset.action === "next-version" ? 1 : -1, target.dataset.action);
  } else if (target.id === "regenerate-button" || target.classList.contains("retry-button")) {
    if (article) retryAnswer(article);
  } else if (target.classList.contains("resume-button") && article) {
    resumeAnswer(article);
  } else if (target.classList.contains("retry-load")) {
    openConversation(state.currentId);
  }
});

function flashCopied(button, ok) {
  announce(ok ? t("copied") : t("copyFailed"));
  if (!ok || button.classList.contains("is-done")) return;
  const label = button.querySelector("span");
  const svg = button.querySelector("svg");
  const previous = label ? label.textContent : null;
  const copyIcon = svg;
  const check = icon(CHECK_ICON);
  const name = button.getAttribute("aria-label");
  svg?.replaceWith(check);
  if (label) label.textContent = t("copied");
  // Screen readers read the accessible name, not the visible text: it says "Copied" too.
  button.setAttribute("aria-label", t("copied"));
  button.classList.add("is-done");
  clearTimeout(button._copiedTimer);
  button._copiedTimer = setTimeout(() => {
    check.replaceWith(copyIcon);
    if (label) label.textContent = previous;
    if (name) button.setAttribute("aria-label", name);
    button.classList.remove("is-done");
  }, 1600);
}

// ------------------------------------------------------------------------------ in-flight record

function readInflight() {
  try {
    const record = JSON.parse(sessionStorage.getItem(INFLIGHT_KEY) || "null");
    return record && typeof record.message_id === "string" ? record : null;
  } catch {
    return null;
  }
}

function clearInflight(messageId) {
  const record = readInflight();
  if (!messageId || (record && record.message_id === messageId)) {
    try {
      sessionStorage.removeItem(INFLIGHT_KEY);
    } catch {
      /* storage unavailable */
    }
  }
}

function writeInflight(answer) {
  const { client } = answer;
  if (!client.messageId || answer.background) return;
  answer.savedAt = Date.now();
  clearTimeout(answer.saveTimer);
  answer.saveTimer = null;
  try {
    // The text and the id of the last event it includes are saved together, so a reload
    // can show this text and ask the server only for what came after.
    sessionStorage.setItem(
      INFLIGHT_KEY,
      JSON.stringify({
        message_id: client.messageId,
        conversation_id: answer.conversationId,
        last_event_id: client.lastEventId,
        text: client.text,
      }),
    );
  } catch {
    /* storage full or unavailable: a reload then replays the answer from the start */
  }
}

function saveInflightSoon(answer) {
  if (Date.now() - (answer.savedAt || 0) > 400) writeInflight(answer);
  else if (!answer.saveTimer) {
    answer.saveTimer = setTimeout(() => !answer.client.final && state.stream === answer && writeInflight(answer), 400);
  }
}

window.addEventListener("pagehide", () => {
  state.unloading = true;
  const answer = state.stream;
  if (answer && !answer.client.final) writeInflight(answer);
});

// ------------------------------------------------------------------------------ streaming
// The stream client (js/stream_client.js) owns the HTTP side; what follows renders its
// updates into one answer element.

function newAnswer(article, { conversationId, messageId = null, lastEventId = 0, text = "", userText = "", userEl = null, body = null }) {
  const info = messages.get(article);
  const answer = { article, info, conversationId, userText, userEl, background: false, savedAt: 0, saveTimer: null };
  info.stream = answer;
  answer.client = new StreamClient({
    request: (suffix, init) => api.streamFetch(suffix, init),
    onUpdate: (update) => (answer.background ? onBackgroundUpdate(answer, update) : onAnswerUpdate(answer, update)),
    body,
    conversationId,
    messageId,
    lastEventId,
    text,
    isOnline: () => navigator.onLine,
    waitOnline: (go) => window.addEventListener("online", go, { once: true }),
    canAutoResume: () => !state.stream && state.currentId === answer.conversationId && article.isConnected,
  });
  return answer;
}

function onAnswerUpdate(answer, update) {
  if (state.unloading) return;
  const { article, info } = answer;
  switch (update.type) {
    case "connecting":
      beginStream(answer);
      break;
    case "reconnecting":
      setNotice(article, { kind: "warning", text: t("reconnecting") });
      break;
    case "reconnected":
      setNotice(article, null);
      break;
    case "start": {
      // A replay (a resume after a crash or a restart) starts over with what the server
      // saved, which can be less than what is on screen: keep showing that until the
      // replay has more (the client's update.text), and no dots over it.
      info.text = update.text || "";
      if (update.messageId) article.dataset.messageId = update.messageId;
      if (update.conversationId && update.conversationId !== answer.conversationId) {
        const wasCurrent = state.currentId === answer.conversationId;
        if (answer.conversationId) state.live.delete(answer.conversationId);
        answer.conversationId = update.conversationId;
        state.live.add(answer.conversationId);
        if (wasCurrent) conversationOpened(answer.conversationId, { replace: true });
      }
      if (update.userMessageId && answer.userEl) {
        answer.userEl.dataset.messageId = update.userMessageId;
        const userInfo = messages.get(answer.userEl);
        if (answer.userSiblingIds) {
          const ids = [...answer.userSiblingIds, update.userMessageId];
          userInfo.versions = { index: ids.length, count: ids.length, ids };
        }
        buildActions(answer.userEl);
      }
      if (answer.siblingIds && update.messageId) {
        const ids = [...answer.siblingIds, update.messageId];
        info.versions = { index: ids.length, count: ids.length, ids };
      }
      if (update.model) info.model = update.model;
      setTyping(article, !info.text);
      scheduleRender(article);
      writeInflight(answer);
      announce(t("generating"));
      refreshConversationsSoon();
      break;
    }
    case "text":
      info.text = update.text;
      setTyping(article, false);
      scheduleRender(article);
      saveInflightSoon(answer);
      break;
    case "end":
      finishAnswer(answer, update);
      break;
    case "lost":
      // Dropped before the answer had an id: the conversation's history knows it.
      endStream(answer);
      sleep(1000).then(() => {
        if (answer.background) return;
        if (state.currentId === answer.conversationId && answer.conversationId) openConversation(answer.conversationId);
        else if (!answer.conversationId) init({ reopen: true });
      });
      break;
    case "stop-unconfirmed":
      dom.stop.disabled = false;
      break;
    default:
      break;
  }
}

/** An answer the user switched away from: only its "still answering" marker is kept up. */
function onBackgroundUpdate(answer, update) {
  if (update.type === "start" && update.conversationId) answer.conversationId = update.conversationId;
  if (update.type !== "end" && update.type !== "lost") return;
  answer.client.detach();
  state.background.delete(answer);
  if (answer.conversationId && !liveElsewhere(answer)) {
    state.live.delete(answer.conversationId);
    renderConversationList();
  }
  // The list's own "streaming" flags (and the new title) are from before the end.
  refreshConversationsSoon(400);
}

function liveElsewhere(answer) {
  if (state.stream && state.stream !== answer && state.stream.conversationId === answer.conversationId) return true;
  return [...state.background].some((other) => other !== answer && other.conversationId === answer.conversationId);
}

function finishAnswer(answer, ending) {
  const { article } = answer;
  const messageId = answer.client.messageId;
  if (ending.preStream) answer.info.preStream = true;
  if (ending.code === "network_error" && messageId) writeInflight(answer);
  else clearInflight(messageId);
  endStream(answer);
  applyStatus(article, ending);
  if (ending.model) answer.info.model = ending.model;
  if (ending.usage) answer.info.usage = ending.usage;
  if (ending.resumeScheduled) {
    const notice = article.querySelector(".message-notice .notice-text");
    if (notice) notice.textContent = t("resumingSoon");
  }
  renderNow(article);
  updateMessageChrome();
  if (ending.status === "complete") announce(t("answerComplete"));
  else if (ending.status === "stopped") announce(t("statusStopped"));
  else announce(errorText(ending.code, ending.content));
  if (messageId) refreshConversationsSoon(400);
}

function setStreamingUI(on) {
  const stopHadFocus = document.activeElement === dom.stop;
  dom.stop.hidden = !on;
  dom.stop.disabled = false;
  dom.send.hidden = on;
  // The stop button disappears: keep the keyboard in the composer, not on <body>.
  if (stopHadFocus && !on) dom.input.focus();
  updateSendState();
  updateMessageChrome();
}

function beginStream(answer) {
  state.stream = answer;
  answer.info.status = "streaming";
  answer.article.dataset.status = "streaming";
  answer.article.setAttribute("aria-busy", "true");
  buildActions(answer.article);
  if (!answer.info.text) setTyping(answer.article, true);
  if (answer.conversationId) {
    state.live.add(answer.conversationId);
    renderConversationList();
  }
  setStreamingUI(true);
}

function endStream(answer) {
  clearTimeout(answer.saveTimer);
  if (state.stream === answer) state.stream = null;
  if (answer.conversationId && !liveElsewhere(answer) && state.live.delete(answer.conversationId)) renderConversationList();
  setStreamingUI(Boolean(state.stream));
}

/**
 * Stop rendering an answer without stopping its generation (switching conversations).
 * Its client keeps reading in the background so the sidebar can show that the
 * conversation is still answering, until the answer ends.
 */
function detachStream(answer) {
  if (!answer) return;
  clearTimeout(answer.saveTimer);
  clearInflight(answer.client.messageId);
  if (state.stream === answer) state.stream = null;
  if (answer.client.final || !answer.client.messageId) {
    answer.client.detach();
  } else {
    answer.background = true;
    state.background.add(answer);
  }
  setStreamingUI(Boolean(state.stream));
}

/** Opening a conversation again: its own resume replaces any background reader. */
function dropBackgroundReaders(conversationId) {
  for (const answer of [...state.background]) {
    if (answer.conversationId === conversationId) {
      answer.client.detach();
      state.background.delete(answer);
    }
  }
}

function stopAnswer() {
  const answer = state.stream;
  if (!answer) return;
  // The stop button goes away when the answer ends: move the keyboard to the input now,
  // before disabling the button drops focus to <body>.
  if (document.activeElement === dom.stop) dom.input.focus();
  dom.stop.disabled = true;
  answer.client.stop();
}

dom.stop.addEventListener("click", stopAnswer);

function resumeAnswer(article) {
  const info = messages.get(article);
  const answer = info && info.stream;
  if (!answer || !answer.client.messageId || state.stream) return;
  setNotice(article, null);
  answer.client.resume();
}

/** An answer is on its way, or a conversation is loading (what is on screen is about to go). */
function busy() {
  return Boolean(state.stream) || state.loading;
}

/** What every new answer's request carries besides the message. */
function streamOptions() {
  const options = { include_history: true, language: LANG.startsWith("en") ? "en" : "ja" };
  if (models.length > 1) options.model = dom.modelSelect.value;
  return options;
}

function retryAnswer(article) {
  if (busy()) return;
  const info = messages.get(article);
  // An answer the server stored gets a new version; one whose request never reached it
  // is sent again with its question.
  if (article.dataset.messageId && state.currentId && !info.preStream) {
    regenerateAnswer(article);
    return;
  }
  const text = (info.stream && info.stream.userText) || previousUserText(article);
  if (!text) return;
  if (info.preStream) {
    info.stream?.userEl?.remove();
    article.remove();
  }
  sendMessage(text);
}

/** Regenerate in place: a new version of this answer to the same, single question. */
function regenerateAnswer(article) {
  const info = messages.get(article);
  const previous = info.versions || { index: 1, count: 1, ids: [article.dataset.messageId] };
  const fresh = createMessage({ role: "assistant", status: "streaming", createdAt: new Date().toISOString() });
  article.replaceWith(fresh);
  state.stick = true;
  updateMessageChrome();
  scrollToBottom(true);
  const body = { message: "", regenerate_message_id: article.dataset.messageId, conversation_id: state.currentId, ...streamOptions() };
  const answer = newAnswer(fresh, { conversationId: state.currentId, userText: previousUserText(fresh), body });
  answer.siblingIds = previous.ids;
  answer.client.start();
}

function sendMessage(text, { editOf = null } = {}) {
  if (busy()) return;
  showComposerError("");
  state.stick = true;
  const userEl = appendMessage({ role: "user", content: text, createdAt: new Date().toISOString() });
  const article = appendMessage({ role: "assistant", status: "streaming", createdAt: new Date().toISOString() });
  updateMessageChrome();
  scrollToBottom(true);
  const body = { message: text, ...streamOptions() };
  if (editOf) body.edit_message_id = editOf.id;
  if (state.currentId) body.conversation_id = state.currentId;
  else body.new_conversation = true; // the conversation is created with its first message
  const answer = newAnswer(article, { conversationId: state.currentId, userText: text, userEl, body });
  if (editOf) answer.userSiblingIds = editOf.ids;
  answer.client.start();
}

// ------------------------------------------------------------------------------ edit

function startEdit(article) {
  if (busy() || article.querySelector(".edit-form")) return;
  const info = messages.get(article);
  const content = article.querySelector(".message-content");
  const area = el("textarea", { className: "edit-input", rows: "3", "aria-label": t("editLabel") });
  area.value = info.text;
  const form = el(
    "div",
    { className: "edit-form" },
    area,
    el(
      "div",
      { className: "edit-actions" },
      el("button", { type: "button", className: "dialog-button edit-cancel", text: t("editCancel") }),
      el("button", { type: "button", className: "dialog-button is-primary edit-save", text: t("editSave") }),
    ),
  );
  content.hidden = true;
  article.querySelector(".message-actions").hidden = true;
  content.after(form);
  area.addEventListener("keydown", (event) => {
    if (event.isComposing || event.keyCode === 229) return;
    if (event.key === "Enter" && !event.shiftKey && !event.altKey) {
      event.preventDefault();
      saveEdit(article);
    } else if (event.key === "Escape") {
      event.preventDefault();
      event.stopPropagation();
      cancelEdit(article);
    }
  });
  area.focus();
  area.setSelectionRange(area.value.length, area.value.length);
}

function cancelEdit(article) {
  article.querySelector(".edit-form")?.remove();
  article.querySelector(".message-content").hidden = false;
  article.querySelector(".message-actions").hidden = false;
  article.querySelector(".edit-message")?.focus();
}

/** Edit and resend: a new version of this question, and everything after it replaced. */
function saveEdit(article) {
  const area = article.querySelector(".edit-input");
  const text = area ? area.value : "";
  if (!text.trim() || text.length > maxChars || busy()) return;
  const info = messages.get(article);
  const id = article.dataset.messageId;
  if (text === info.text) {
    cancelEdit(article);
    return;
  }
  while (article.nextElementSibling) article.nextElementSibling.remove();
  article.remove();
  sendMessage(text, { editOf: { id, ids: (info.versions && info.versions.ids) || [id] } });
  dom.input.focus({ preventScroll: true });
}

// ------------------------------------------------------------------------------ versions

async function switchVersion(article, step, action) {
  if (busy() || !state.currentId) return;
  const v = messages.get(article).versions;
  const target = v && v.ids[v.index - 1 + step];
  if (!target) return;
  const role = article.dataset.role;
  const position = [...dom.container.querySelectorAll(".message")].indexOf(article);
  let data;
  try {
    data = await api.json("POST", `${config.conversationsUrl}${encodeURIComponent(state.currentId)}/current/`, { message_id: target });
  } catch {
    showComposerError(t("versionFailed"));
    return;
  }
  renderHistory(data);
  // Keep the keyboard on the same switcher (the turn was rendered again).
  const same = dom.container.querySelectorAll(".message")[position];
  const button = same && same.dataset.role === role && same.querySelector(`[data-action="${action}"]`);
  if (button && !button.disabled) button.focus({ preventScroll: true });
  else same?.querySelector(".version-switcher button:not(:disabled)")?.focus({ preventScroll: true });
}

// ------------------------------------------------------------------------------ composer

const maxChars = Number(config.maxMessageChars) || 8000;

function autoGrow() {
  dom.input.style.height = "auto";
  dom.input.style.height = `${dom.input.scrollHeight}px`;
}

function updateSendState() {
  const length = dom.input.value.length;
  const over = length > maxChars;
  dom.send.disabled = busy() || !dom.input.value.trim() || over;
  const showCount = length > maxChars * 0.8;
  dom.charCount.hidden = !showCount;
  if (showCount) dom.charCount.textContent = t("charCount", { count: length, max: maxChars });
  dom.charCount.classList.toggle("is-over", over);
}

function onInput() {
  autoGrow();
  updateSendState();
  if (!dom.composerError.hidden && dom.input.value.length <= maxChars) showComposerError("");
}

function submit() {
  const text = dom.input.value;
  if (!text.trim() || busy()) return;
  if (text.length > maxChars) {
    showComposerError(t("tooLong", { count: text.length, max: maxChars }));
    return;
  }
  dom.input.value = "";
  onInput();
  sendMessage(text);
}

let composing = false;
dom.input.addEventListener("compositionstart", () => {
  composing = true;
});
dom.input.addEventListener("compositionend", () => {
  composing = false;
});
dom.input.addEventListener("input", onInput);
dom.input.addEventListener("keydown", (event) => {
  if (event.key !== "Enter" || event.shiftKey || event.altKey) return;
  // Enter that confirms an IME conversion (Japanese input) must not send.
  if (event.isComposing || composing || event.keyCode === 229) return;
  event.preventDefault();
  submit();
});
dom.form.addEventListener("submit", (event) => {
  event.preventDefault();
  const fromButton = document.activeElement === dom.send;
  submit();
  // The send button hides while the answer streams: keep the keyboard in the composer.
  if (fromButton) dom.input.focus();
});

// ------------------------------------------------------------------------------ conversations

/** The browser's address for conversation `id` (null: a new chat). */
function setUrl(id, { replace = false } = {}) {
  const path = pathForConversation(config.chatUrl, id);
  if (window.location.pathname === path) return;
  const data = { conversationId: id };
  if (replace) window.history.replaceState(data, "", path);
  else window.history.pushState(data, "", path);
}

// The language switch returns to the address it was rendered with: keep it current, so
// switching the language keeps the conversation on screen.
document.querySelector(".language-form")?.addEventListener("submit", (event) => {
  const next = event.currentTarget.querySelector("input[name=next]");
  if (next) next.value = window.location.pathname + window.location.search;
});

/** The page now shows conversation `id` (a new answer's conversation got its id). */
function conversationOpened(id) {
  state.currentId = id;
  setUrl(id, { replace: true });
  renderConversationList();
  updateConversationTools();
}

function renderHistoryError(seq) {
  if (seq !== state.loadSeq) return;
  clearMessages();
  dom.emptyState.hidden = true;
  const box = el("div", { className: "message-notice is-error load-error", role: "alert" });
  box.append(el("span", { className: "notice-text", text: t("historyFailed") }), noticeButton("retry-load", t("retry"), ICONS.refresh));
  dom.container.append(box);
}

/** Show a history payload ({conversation, history}); returns the answer still streaming. */
function renderHistory(data) {
  clearMessages();
  if (data.conversation) rememberConversation(data.conversation);
  let resumeTarget = null;
  for (const message of data.history || []) {
    if (message.role !== "user" && message.role !== "assistant") continue;
    const article = createMessage({
      role: message.role,
      content: message.content,
      status: message.role === "assistant" ? message.status || "complete" : "complete",
      id: message.id,
      createdAt: message.created_at,
      versions: message.versions || null,
      model: message.role === "assistant" ? message.model : null,
      usage: message.usage || null,
    });
    dom.container.append(article);
    if (message.role === "assistant") {
      if (message.status === "streaming") resumeTarget = { article, message };
      else if (message.status !== "complete" || message.finish_reason === "length") {
        applyStatus(article, {
          status: message.status,
          finishReason: message.finish_reason,
          code: message.status === "interrupted" ? "interrupted" : message.error_code,
        });
      }
    }
  }
  showEmptyState();
  updateMessageChrome();
  updateConversationTools();
  return resumeTarget;
}

/** The message list is (not) waiting for a conversation's history; sending waits with it. */
function setLoading(loading) {
  state.loading = loading;
  dom.container.classList.toggle("is-loading", loading);
  if (loading) dom.container.setAttribute("aria-busy", "true");
  else dom.container.removeAttribute("aria-busy");
  updateSendState();
}

/** Open conversation `id` (null: a new, empty chat). `url`: "push", "replace" or false. */
async function openConversation(id, { inflight = null, url = "push" } = {}) {
  const seq = ++state.loadSeq;
  detachStream(state.stream);
  state.currentId = id;
  setLoading(Boolean(id));
  if (url) setUrl(id, { replace: url === "replace" });
  renderConversationList();
  showComposerError("");
  if (!id) {
    clearMessages();
    showEmptyState();
    updateMessageChrome();
    updateConversationTools();
    return;
  }
  let data;
  try {
    const params = new URLSearchParams({ conversation_id: id, limit: String(HISTORY_LIMIT) });
    data = await api.json("GET", `${config.historyUrl}?${params}`);
  } catch (error) {
    if (seq !== state.loadSeq) return;
    setLoading(false);
    if (error instanceof ApiError && error.status === 404) {
      state.conversations = state.conversations.filter((c) => c.id !== id);
      await openConversation(null, { url: "replace" });
      return;
    }
    renderHistoryError(seq);
    return;
  }
  if (seq !== state.loadSeq) return;
  setLoading(false);
  const resumeTarget = renderHistory(data);
  state.stick = true;
  scrollToBottom(true);
  const record = inflight || readInflight();
  if (resumeTarget) {
    const { article, message } = resumeTarget;
    const info = messages.get(article);
    let lastEventId = 0;
    if (record && record.message_id === message.id && typeof record.text === "string" && record.text.length >= info.text.length) {
      // Our saved text is consistent with its event id; the database copy may lag behind.
      info.text = record.text;
      lastEventId = Number(record.last_event_id) || 0;
      renderNow(article);
    }
    dropBackgroundReaders(id);
    newAnswer(article, {
      conversationId: id,
      messageId: message.id,
      lastEventId,
      text: info.text,
      userText: previousUserText(article),
    }).client.resume();
  } else if (record && record.conversation_id === id) {
    clearInflight();
  }
}

window.addEventListener("popstate", () => {
  const id = conversationIdFromPath(window.location.pathname, config.chatUrl);
  if (id !== state.currentId) openConversation(id, { url: false });
});

// ------------------------------------------------------------------------------ model, settings, export

const models = Array.isArray(config.models) ? config.models : [];

function rememberConversation(conversation) {
  const index = state.conversations.findIndex((c) => c.id === conversation.id);
  if (index >= 0) state.conversations[index] = { ...state.conversations[index], ...conversation };
  else state.conversations.unshift(conversation);
}

function currentConversation() {
  return state.conversations.find((c) => c.id === state.currentId) || null;
}

/** The topbar's tools follow the conversation on screen. */
function updateConversationTools() {
  const conversation = currentConversation();
  if (models.length > 1) {
    const wanted = (conversation && conversation.model) || state.newChatModel || config.defaultModel;
    if (models.includes(wanted)) dom.modelSelect.value = wanted;
  }
  const exists = Boolean(state.currentId);
  dom.settingsButton.hidden = !exists;
  dom.exportButton.hidden = !exists;
  if (!exists) closeExportMenu();
  if (exists) {
    const base = `${config.conversationsUrl}${encodeURIComponent(state.currentId)}/export/`;
    dom.exportMarkdown.href = `${base}?format=md`;
    dom.exportJson.href = `${base}?format=json`;
  }
}

if (models.length > 1) {
  dom.modelSelect.replaceChildren(...models.map((name) => el("option", { value: name, text: name })));
  dom.modelSelect.value = config.defaultModel;
  dom.modelSelect.hidden = false;
}

dom.modelSelect.addEventListener("change", async () => {
  const model = dom.modelSelect.value;
  const id = state.currentId;
  if (!id) {
    state.newChatModel = model; // sent with the first message
    return;
  }
  try {
    rememberConversation(await api.json("PATCH", `${config.conversationsUrl}${encodeURIComponent(id)}/`, { model }));
  } catch {
    showComposerError(t("modelFailed"));
  }
});

dom.settingsButton.addEventListener("click", async () => {
  let conversation = currentConversation();
  if (!conversation && state.currentId) {
    // A new chat's id arrives with its stream's start, a moment before the list refresh
    // brings its row: fetch the list now rather than ignore the click.
    await loadConversations().catch(() => {});
    conversation = currentConversation();
  }
  if (!conversation) return;
  dom.instructions.value = conversation.instructions || "";
  dom.instructions.maxLength = Number(config.maxInstructionsChars) || 4000;
  dom.settingsError.hidden = true;
  dom.settingsDialog.showModal();
  dom.instructions.focus();
});

dom.settingsForm.addEventListener("submit", async (event) => {
  if (event.submitter?.value !== "save") return; // Cancel closes the dialog as is
  event.preventDefault();
  const id = state.currentId;
  try {
    rememberConversation(
      await api.json("PATCH", `${config.conversationsUrl}${encodeURIComponent(id)}/`, { instructions: dom.instructions.value }),
    );
  } catch {
    dom.settingsError.textContent = t("settingsFailed");
    dom.settingsError.hidden = false;
    return;
  }
  dom.settingsDialog.close();
});
dom.settingsDialog.addEventListener("close", () => dom.settingsButton.focus());

function closeExportMenu() {
  dom.exportMenu.hidden = true;
  dom.exportButton.setAttribute("aria-expanded", "false");
}

dom.exportButton.addEventListener("click", () => {
  const open = dom.exportMenu.hidden;
  dom.exportMenu.hidden = !open;
  dom.exportButton.setAttribute("aria-expanded", String(open));
  if (open) dom.exportMarkdown.focus();
});
dom.exportMenu.addEventListener("click", () => setTimeout(closeExportMenu, 0));
dom.exportMenu.addEventListener("keydown", (event) => {
  if (event.key === "Escape") {
    event.stopPropagation();
    closeExportMenu();
    dom.exportButton.focus();
  }
});
document.addEventListener("click", (event) => {
  if (!dom.exportMenu.hidden && !event.target.closest(".topbar-menu")) closeExportMenu();
});

dom.deleteAllButton.addEventListener("click", () => {
  // returnValue survives from the last close: Escape must never mean "delete".
  dom.deleteAllDialog.returnValue = "";
  dom.deleteAllDialog.showModal();
});
dom.deleteAllDialog.addEventListener("close", async () => {
  if (dom.deleteAllDialog.returnValue !== "delete") {
    dom.deleteAllButton.focus();
    return;
  }
  try {
    await api.json("DELETE", config.conversationsUrl, { confirm: "delete_all" });
  } catch {
    showComposerError(t("deleteAllFailed"));
    dom.deleteAllButton.focus();
    return;
  }
  for (const answer of [...state.background]) answer.client.detach();
  state.background.clear();
  state.live.clear();
  clearInflight();
  state.conversations = [];
  state.matches = null;
  dom.search.value = "";
  await openConversation(null);
  dom.input.focus();
});

// ------------------------------------------------------------------------------ keyboard

function openShortcuts() {
  if (!dom.shortcutsDialog.open) dom.shortcutsDialog.showModal();
}

dom.shortcutsButton.addEventListener("click", openShortcuts);

document.addEventListener("keydown", (event) => {
  if (event.defaultPrevented) return;
  const target = event.target;
  const typing = target instanceof HTMLElement && (target.isContentEditable || /^(INPUT|TEXTAREA|SELECT)$/.test(target.tagName));
  const dialogOpen = Boolean(document.querySelector("dialog[open]"));
  const action = shortcutFor(event, { typing, streaming: Boolean(state.stream), dialogOpen });
  if (!action) return;
  if (action === "stop" && dom.app.classList.contains("sidebar-open")) return; // Escape closes the list first
  event.preventDefault();
  if (action === "stop") stopAnswer();
  else if (action === "new-chat") newConversation();
  else if (action === "focus-search") {
    if (narrow.matches) setSidebar(true, { focus: false });
    dom.search.focus();
    dom.search.select();
  } else if (action === "help") openShortcuts();
});

// ------------------------------------------------------------------------------ start

async function init({ reopen = false } = {}) {
  setSidebar(false, { focus: false });
  onInput();
  try {
    await loadConversations();
  } catch {
    showEmptyState();
    return;
  }
  // The address decides: /ai/chat/<id>/ opens that conversation, /ai/chat/ a new chat.
  // After an answer lost before it had an id, its conversation is the newest one.
  const fromUrl = conversationIdFromPath(window.location.pathname, config.chatUrl) || config.conversationId || null;
  const target = reopen ? state.currentId || state.conversations[0]?.id || null : fromUrl;
  const record = readInflight();
  if (record && record.conversation_id !== target && !state.conversations.some((c) => c.id === record.conversation_id)) clearInflight();
  await openConversation(target, { inflight: record, url: "replace" });
  if (!reopen && !narrow.matches) dom.input.focus({ preventScroll: true });
}

markdownReady.then((available) => {
  if (!available) return;
  for (const article of dom.container.querySelectorAll('.message[data-role="assistant"]')) {
    renderNow(article);
  }
});

init();
