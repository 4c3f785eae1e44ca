// Model output is untrusted: Markdown (marked, GFM) -> HTML -> DOMPurify -> DOM.
// The libraries are optional (scripts/build_assets.sh copies them into ../vendor/): while
// they load, or when they are missing, answers are shown as plain text via textContent.

const VENDOR_SCRIPTS = ["marked.umd.js", "purify.min.js", "highlight.min.js"];
const MAX_HIGHLIGHT_CHARS = 60000;
const MAX_AUTODETECT_CHARS = 8000;
// highlight.js guesses a language for any text; below this relevance the guess is noise
// (prose, logs, shell output coloured as some language), so such blocks stay plain.
export const MIN_AUTODETECT_RELEVANCE = 10;

let engine = null; // { md, purify, hljs } once the libraries are loaded
let finalPass = false; // read by the code renderer: auto-detect languages only when final
let labels = { copyCode: "", copy: "", copied: "", code: "", table: "" };
const highlightCache = new Map();

function loadScript(name) {
  return new Promise((resolve) => {
    const script = document.createElement("script");
    script.src = new URL(`../vendor/${name}`, import.meta.url).href;
    script.async = false;
    script.onload = () => resolve(true);
    script.onerror = () => {
      script.remove();
      resolve(false);
    };
    document.head.append(script);
  });
}

/** Load the vendor libraries once; resolves true when Markdown rendering is available. */
export const markdownReady = Promise.all(VENDOR_SCRIPTS.map(loadScript)).then(() => {
  const { marked, DOMPurify, hljs } = globalThis;
  if (!marked || typeof marked.Marked !== "function" || !DOMPurify || !DOMPurify.isSupported) {
    return false;
  }
  engine = { md: buildMarked(marked), purify: configurePurify(DOMPurify), hljs: hljs || null };
  return true;
});

export function setLabels(strings) {
  labels = { ...labels, ...strings };
}

export function markdownAvailable() {
  return engine !== null;
}

function escapeHtml(text) {
  return String(text)
    .replace(/&/g, "&amp;")
    .replace(/</g, "&lt;")
    .replace(/>/g, "&gt;")
    .replace(/"/g, "&quot;")
    .replace(/'/g, "&#39;");
}

function buildMarked(marked) {
  const md = new marked.Marked({ gfm: true, breaks: true, async: false, silent: true });
  md.use({
    renderer: {
      // Raw HTML in an answer is shown as text, never interpreted.
      html({ text, block }) {
        return block ? `<p>${escapeHtml(text.trim())}</p>\n` : escapeHtml(text);
      },
      // Remote images are never loaded: show a plain link instead.
      image({ href, text }) {
        const label = text || href || "";
        if (!href) return escapeHtml(label);
        return `<a href="${escapeHtml(href)}">${escapeHtml(label)}</a>`;
      },
      checkbox({ checked }) {
        return checked ? "\u2611\uFE0E " : "\u2610\uFE0E ";
      },
      code({ text, lang }) {
        const named = ((lang || "").match(/^[\w+#.-]*/) || [""])[0].toLowerCase();
        const { html, language } = highlight(text, named, finalPass);
        const cls = `hljs${language ? ` language-${language}` : ""}`;
        return `<pre><code class="${escapeHtml(cls)}">${html}</code></pre>\n`;
      },
    },
  });
  return md;
}

/** {html, language}: highlighted with a named language, or one detected with confidence. */
function highlight(code, language, final) {
  const hljs = engine && engine.hljs;
  const plain = { html: escapeHtml(code), language };
  if (!hljs || code.length > MAX_HIGHLIGHT_CHARS) return plain;
  const key = `${final ? 1 : 0}\u0000${language}\u0000${code}`;
  const cached = highlightCache.get(key);
  if (cached !== undefined) return cached;
  let result = plain;
  try {
    if (language && hljs.getLanguage(language)) {
      result = { html: hljs.highlight(code, { language, ignoreIllegals: true }).value, language };
    } else if (!language && final && code.length <= MAX_AUTODETECT_CHARS) {
      const guess = hljs.highlightAuto(code);
      if (guess.language && guess.relevance >= MIN_AUTODETECT_RELEVANCE) {
        result = { html: guess.value, language: guess.language };
      }
    }
  } catch {
    result = plain;
  }
  if (highlightCache.size > 300) highlightCache.clear();
  highlightCache.set(key, result);
  return result;
}

const FORBID_TAGS = [
  "img", "picture", "source", "video", "audio", "track", "iframe", "frame", "object", "embed",
  "form", "input", "button", "textarea", "select", "option", "label", "fieldset",
  "style", "link", "meta", "base", "svg", "math", "dialog", "details", "summary", "template",
];

function configurePurify(DOMPurify) {
  DOMPurify.addHook("uponSanitizeAttribute", (node, data) => {
    // Only highlight.js classes survive, so an answer cannot borrow the page's own classes.
    if (data.attrName === "class") {
      const kept = data.attrValue
        .split(/\s+/)
        .filter((c) => /^(hljs[\w-]*|language-[\w+#.-]+|[a-z]+_)$/.test(c));
      data.attrValue = kept.join(" ");
      if (!kept.length) data.keepAttr = false;
    }
  });
  DOMPurify.addHook("afterSanitizeAttributes", (node) => {
    if (node.tagName === "A") {
      if (node.hasAttribute("href")) {
        node.setAttribute("target", "_blank");
        node.setAttribute("rel", "noopener noreferrer nofollow");
      } else {
        node.removeAttribute("target");
      }
    }
  });
  return DOMPurify;
}

const PURIFY_OPTIONS = {
  USE_PROFILES: { html: true },
  FORBID_TAGS,
  FORBID_ATTR: ["id", "name", "style", "srcset", "action", "formaction", "form", "autofocus", "tabindex"],
  ALLOW_DATA_ATTR: false,
  ALLOWED_URI_REGEXP: /^(?:https?|mailto|tel):|^[^a-z]|^[a-z+.-]+(?:[^a-z+.:-]|$)/i,
  RETURN_DOM_FRAGMENT: true,
};

/** Sanitised DocumentFragment for one top-level Markdown token (a paragraph, list, table…). */
function blockFragment(token, links) {
  const list = [token];
  list.links = links;
  const html = engine.md.parser(list);
  const fragment = engine.purify.sanitize(html, PURIFY_OPTIONS);
  decorate(fragment);
  return fragment;
}

// Rendered blocks per element, so that while an answer streams only the blocks that
// changed (in practice the last one) are parsed and sanitised again.
const renderedBlocks = new WeakMap();

function renderMarkdown(element, text, final) {
  let tokens;
  try {
    tokens = engine.md.lexer(text);
  } catch {
    return false;
  }
  finalPass = final;
  const links = tokens.links || {};
  const salt = `${final ? 1 : 0}\u0000${Object.keys(links).join("\u0000")}\u0000`;
  const cached = renderedBlocks.get(element);
  // Only trust the cache if the element still holds exactly what we put there.
  const previous = cached && cached.owner === element.firstChild ? cached.blocks : [];
  let same = 0;
  while (same < previous.length && same < tokens.length && previous[same].key === salt + tokens[same].raw) {
    same += 1;
  }
  const blocks = previous.slice(0, same);
  try {
    for (let index = same; index < tokens.length; index += 1) {
      const token = tokens[index];
      blocks.push({ key: salt + token.raw, nodes: [...blockFragment(token, links).childNodes] });
    }
  } catch {
    return false;
  }
  if (same === 0) {
    element.replaceChildren(...blocks.flatMap((block) => block.nodes));
  } else {
    // Leave the unchanged blocks in place: no re-layout of what the reader already sees.
    for (const block of previous.slice(same)) for (const node of block.nodes) node.remove();
    element.append(...blocks.slice(same).flatMap((block) => block.nodes));
  }
  renderedBlocks.set(element, { blocks, owner: element.firstChild });
  return true;
}

function icon(paths) {
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("viewBox", "0 0 24 24");
  svg.setAttribute("aria-hidden", "true");
  svg.setAttribute("focusable", "false");
  for (const d of paths) {
    const path = document.createElementNS(ns, "path");
    path.setAttribute("d", d);
    svg.append(path);
  }
  return svg;
}

export const COPY_ICON = ["M9 9h10v10H9z", "M5 15V5h10"];
export const CHECK_ICON = ["M5 12l5 5L20 7"];
export { icon };

function decorate(fragment) {
  for (const table of fragment.querySelectorAll("table")) {
    const wrap = document.createElement("div");
    wrap.className = "table-wrap";
    wrap.tabIndex = 0;
    wrap.setAttribute("role", "group");
    wrap.setAttribute("aria-label", labels.table);
    table.replaceWith(wrap);
    wrap.append(table);
  }
  for (const pre of fragment.querySelectorAll("pre")) {
    const code = pre.querySelector("code");
    const match = code && /(?:^|\s)language-([\w+#.-]+)/.exec(code.className);
    const block = document.createElement("div");
    block.className = "code-block";
    const header = document.createElement("div");
    header.className = "code-header";
    const lang = document.createElement("span");
    lang.className = "code-lang";
    lang.textContent = match ? match[1] : labels.code;
    const button = document.createElement("button");
    button.type = "button";
    button.className = "copy-code-button";
    button.setAttribute("aria-label", labels.copyCode);
    const text = document.createElement("span");
    text.textContent = labels.copy;
    button.append(icon(COPY_ICON), text);
    header.append(lang, button);
    // A long line scrolls sideways: the block must be reachable and named for keyboards.
    pre.tabIndex = 0;
    pre.setAttribute("role", "group");
    pre.setAttribute("aria-label", lang.textContent);
    pre.replaceWith(block);
    block.append(header, pre);
  }
}

/**
 * Render `text` into `element`: Markdown when available, plain text otherwise.
 * `final` enables the slower touches (language auto-detection) once an answer is complete.
 */
export function renderInto(element, text, { final = false } = {}) {
  if (engine && text && renderMarkdown(element, text, final)) {
    element.classList.add("markdown");
    element.classList.remove("plain");
    return;
  }
  renderedBlocks.delete(element);
  element.classList.remove("markdown");
  element.classList.add("plain");
  element.textContent = text;
}
