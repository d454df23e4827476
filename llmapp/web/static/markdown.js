// Markdown to safe DOM for chat messages: marked parses, DOMPurify sanitizes (no script, no event
// handlers, no javascript: URLs), and then the page's own touches are added: a copy button on each code
// block, and [n] citations of a RAG answer turned into buttons that open the cited source.
//
//   import { renderMarkdown, splitSources } from "./markdown.js";
//   const { answer, sources } = splitSources(text);
//   element.replaceChildren(renderMarkdown(answer, sources));

import { marked } from "./vendor/marked.esm.js";
import "./vendor/purify.min.js"; // a UMD build: it defines globalThis.DOMPurify

const DOMPurify = globalThis.DOMPurify;

// breaks: a chat reply's single newlines are meant as line breaks, as in a terminal.
marked.setOptions({ gfm: true, breaks: true });

const PURIFY = {
  USE_PROFILES: { html: true }, // no SVG or MathML: less surface, and nothing there a reply needs
  FORBID_TAGS: ["style", "form", "input", "button", "textarea", "select", "audio", "video", "source", "picture"],
  FORBID_ATTR: ["style", "srcset"], // style could fetch url(...); the page's CSP blocks inline styles anyway
  RETURN_DOM_FRAGMENT: true,
};

// Only data: images are shown. A remote image would be a request to another host the moment the
// element is created, so its src is dropped here, inside DOMPurify's inert document, before that.
DOMPurify.addHook("afterSanitizeAttributes", (node) => {
  if (node.tagName === "IMG") {
    const src = node.getAttribute("src") || "";
    if (!src.startsWith("data:image/")) {
      node.removeAttribute("src");
      node.setAttribute("data-blocked-src", src.slice(0, 200));
    }
  }
  if (node.tagName === "A" && node.hasAttribute("href")) {
    node.setAttribute("target", "_blank"); // a link never replaces the chat
    node.setAttribute("rel", "noopener noreferrer");
  }
});

const SOURCES = /(?:^|\n\n)Sources:\n((?:\[\d+\][^\n]*(?:\n|$))+)\s*$/;
const SOURCE_LINE = /^\[(\d+)\]\s+(.*?)(?:\s+—\s+(.*))?$/;

/**
 * Split a RAG answer from its trailing "Sources:" block of `[n] path — snippet` lines.
 * Returns {answer, sources}, sources a Map n -> {path, snippet}; empty when the text has no such block.
 */
export function splitSources(text) {
  const match = SOURCES.exec(text);
  if (!match) return { answer: text, sources: new Map() };
  const sources = new Map();
  for (const line of match[1].split("\n")) {
    const parts = SOURCE_LINE.exec(line.trim());
    if (parts) sources.set(parts[1], { path: parts[2], snippet: parts[3] || "" });
  }
  return sources.size ? { answer: text.slice(0, match.index), sources } : { answer: text, sources };
}

/** Sanitized DOM for `text`; `sources` (from splitSources) turns its [n] into citation buttons. */
export function renderMarkdown(text, sources = new Map()) {
  const fragment = DOMPurify.sanitize(marked.parse(text), PURIFY);
  for (const img of fragment.querySelectorAll("img[data-blocked-src]")) {
    img.replaceWith(Object.assign(document.createElement("span"), {
      className: "blocked-image",
      textContent: `[image not loaded: ${img.getAttribute("alt") || img.dataset.blockedSrc}]`,
    }));
  }
  for (const pre of fragment.querySelectorAll("pre")) addCopyButton(pre);
  if (sources.size) linkCitations(fragment, sources);
  return fragment;
}

// A header over each code block: its language (from marked's "language-x" class) and a Copy button.
function addCopyButton(pre) {
  const wrap = Object.assign(document.createElement("div"), { className: "code-block" });
  const head = Object.assign(document.createElement("div"), { className: "code-head" });
  const language = /language-([\w+#.-]+)/.exec(pre.querySelector("code")?.className || "")?.[1] || "";
  head.append(Object.assign(document.createElement("span"), { textContent: language }),
    makeButton("copy", "Copy", "Copy code"));
  pre.replaceWith(wrap);
  wrap.append(head, pre);
}

/** A plain button (type="button") with a class, visible text and an accessible name. */
export function makeButton(className, text, label) {
  const button = document.createElement("button");
  button.type = "button";
  button.className = className;
  button.textContent = text;
  button.setAttribute("aria-label", label);
  return button;
}

/** A button that opens source `n`; app.js listens for clicks on `.cite`. */
export function citationButton(n, source) {
  const button = makeButton("cite", `[${n}]`, `Source ${n}: ${source.path}`);
  Object.assign(button.dataset, { source: n, path: source.path, snippet: source.snippet });
  button.setAttribute("aria-haspopup", "dialog");
  return button;
}

// [1], [2, 3] and the like, in prose only (not in code, and not inside links).
const CITATION = /\[(\d+(?:\s*,\s*\d+)*)\]/g;

function linkCitations(fragment, sources) {
  const walker = document.createTreeWalker(fragment, NodeFilter.SHOW_TEXT, {
    acceptNode: (node) => (node.parentElement?.closest("code, pre, a, button") ? NodeFilter.FILTER_REJECT
      : NodeFilter.FILTER_ACCEPT),
  });
  const nodes = [];
  while (walker.nextNode()) nodes.push(walker.currentNode);
  for (const node of nodes) {
    const text = node.nodeValue;
    const parts = [];
    let last = 0;
    for (const match of text.matchAll(CITATION)) {
      const numbers = match[1].split(",").map((s) => s.trim());
      if (!numbers.every((n) => sources.has(n))) continue; // "[3]" in prose that is not a citation stays text
      parts.push(text.slice(last, match.index), ...numbers.map((n) => citationButton(n, sources.get(n))));
      last = match.index + match[0].length;
    }
    if (parts.length) node.replaceWith(...parts, text.slice(last));
  }
}

/** The Sources list shown under a RAG answer: each line's [n] opens the source too. */
export function renderSources(sources) {
  const list = document.createElement("ol");
  list.className = "sources";
  list.setAttribute("aria-label", "Sources");
  for (const [n, source] of sources) {
    const item = document.createElement("li");
    const path = Object.assign(document.createElement("code"), { textContent: source.path });
    const snippet = Object.assign(document.createElement("span"), { className: "snippet", textContent: source.snippet });
    item.append(citationButton(n, source), " ", path, " ", snippet);
    list.append(item);
  }
  return list;
}
