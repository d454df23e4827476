// The chat page's controller: wires index.html to the API (api.js), the browser's storage
// (conversations.js) and message rendering (markdown.js). index.html loads it as an ES module;
// there is no build step. To work on it, run `llmapp serve` and reload http://127.0.0.1:8000/.

import { listModels, streamChat } from "./api.js";
import { ConversationStore, KeyHolder, loadSettings, saveSettings, titleOf } from "./conversations.js";
import { makeButton, renderMarkdown, renderSources, splitSources } from "./markdown.js";

const $ = (id) => document.getElementById(id);
const el = (tag, className, text = "") => Object.assign(document.createElement(tag), { className, textContent: text });
const ui = {
  sidebar: $("sidebar"), toggleSidebar: $("toggle-sidebar"), newChat: $("new-chat"), list: $("conversation-list"),
  model: $("model"), toggleSettings: $("toggle-settings"), settings: $("settings"),
  systemPrompt: $("system-prompt"), temperature: $("temperature"), maxTokens: $("max-tokens"),
  keySettings: $("key-settings"), apiKey: $("api-key"), rememberKey: $("remember-key"),
  notice: $("notice"), messages: $("messages"), composer: $("composer"), prompt: $("prompt"),
  send: $("send"), stop: $("stop"), editing: $("editing"),
  sourceDialog: $("source-dialog"), sourceTitle: $("source-title"), sourcePath: $("source-path"),
  sourceSnippet: $("source-snippet"), sourceClose: $("source-close"),
};

const store = new ConversationStore();
const keys = new KeyHolder();
const settings = loadSettings();
let models = new Map(); // id -> model card, chat and rag models only
let generation = null; // {controller} while a reply streams
let editing = false; // the composer holds the last user message, which Send replaces

// ---- models and the API key -------------------------------------------------------------------------

async function loadModels() {
  try {
    const cards = await listModels(keys.key);
    models = new Map(cards.filter((m) => m.kind !== "embeddings").map((m) => [m.id, m]));
    fillModelPicker();
    clearNotice();
    ui.keySettings.hidden = !keys.key; // shown while a key is in use, so it can be changed or forgotten
  } catch (err) {
    if (err.kind === "auth") askForKey(Boolean(keys.key));
    else showNotice(err.message);
    ui.model.replaceChildren(new Option("no models", ""));
  }
}

function fillModelPicker() {
  const groups = [["chat", "Chat models"], ["rag", "RAG stores (answers cite sources)"]];
  ui.model.replaceChildren(...groups.map(([kind, label]) => {
    const group = document.createElement("optgroup");
    group.label = label;
    group.append(...[...models.values()].filter((m) => m.kind === kind).map((m) => new Option(m.id, m.id)));
    return group;
  }).filter((group) => group.children.length));
  if (models.has(settings.model)) ui.model.value = settings.model;
  ui.model.disabled = models.size === 0;
  if (!models.size) showNotice("This server serves no chat model; start it with --model or --store.");
}

function askForKey(rejected) {
  ui.keySettings.hidden = false;
  setSettingsOpen(true);
  showNotice(rejected
    ? "The API key was not accepted (401). Enter the key the server was started with (--api-key)."
    : "This server needs an API key (401). Enter it under Settings.");
  ui.apiKey.focus();
}

function useKey() {
  keys.set(ui.apiKey.value, ui.rememberKey.checked);
  loadModels();
}

// ---- notices ----------------------------------------------------------------------------------------

function showNotice(message) {
  ui.notice.textContent = message;
  ui.notice.hidden = false;
}

function clearNotice() {
  ui.notice.hidden = true;
  ui.notice.textContent = "";
}

/** Save everything, marking `conversation` (default: the open one) as just changed. */
function save(conversation) {
  try {
    store.touch(conversation);
  } catch {
    showNotice("Could not save this conversation: the browser's storage for this page is full. " +
      "Delete some old conversations.");
  }
  renderConversationList();
}

// ---- the conversation ---------------------------------------------------------------------------------

function renderConversation() {
  const { messages } = store.current;
  ui.messages.replaceChildren(...(messages.length ? messages.map(messageElement) : [emptyState()]));
  refreshActions();
  ui.messages.scrollTop = ui.messages.scrollHeight;
}

function emptyState() {
  const box = el("div", "empty");
  box.innerHTML = "<h2>Start a conversation</h2><p>Replies stream from the model on your llmapp server. " +
    "A <strong>RAG store</strong> in the model list answers with sources you can open.</p>";
  return box;
}

function messageElement(message) {
  const article = el("article", `message ${message.role}`);
  const who = el("div", "who", message.role === "user" ? "You" : message.model || "assistant");
  article.append(who, el("div", "body markdown"), el("div", "meta"), el("div", "actions"));
  renderBody(article, message);
  return article;
}

function renderBody(article, message) {
  const body = article.querySelector(".body");
  if (message.role !== "assistant") {
    body.replaceChildren(renderMarkdown(message.content));
    return;
  }
  const { answer, sources } = splitSources(message.content);
  body.replaceChildren(renderMarkdown(answer, sources));
  if (sources.size) body.append(renderSources(sources));
  const meta = article.querySelector(".meta");
  meta.textContent = metaLine(message);
  if (message.model?.startsWith("rag:")) {
    meta.title = "A RAG store's token counts cover the question and the answer, not the retrieved passages.";
  }
}

/** The feedback line under a reply: speed and how much of the context window the chat now fills. */
function metaLine(message) {
  const s = message.stats;
  if (!s) return message.stopped ? "stopped" : "";
  const parts = [message.stopped ? `stopped after ${s.seconds.toFixed(1)} s` : `${s.completionTokens} tokens`];
  if (s.tokensPerSecond) parts.push(`${s.tokensPerSecond.toFixed(1)} tok/s`);
  if (s.firstTokenSeconds != null) parts.push(`first token ${s.firstTokenSeconds.toFixed(2)} s`);
  if (s.cut) parts[0] += " (max tokens reached)";
  if (s.totalTokens && s.contextWindow) {
    const pct = (100 * s.totalTokens) / s.contextWindow;
    parts.push(`context ${s.totalTokens} / ${s.contextWindow} tokens (${pct < 1 ? pct.toFixed(1) : Math.round(pct)}%)`);
  }
  return parts.join(" · ");
}

/** Edit sits on the last user message, Regenerate on the last reply, Retry on a message left unanswered. */
function refreshActions() {
  const { messages } = store.current;
  const articles = ui.messages.querySelectorAll("article.message");
  const lastUser = messages.map((m) => m.role).lastIndexOf("user");
  articles.forEach((article, i) => {
    const buttons = [];
    if (!generation && i === lastUser) buttons.push(actionButton("edit", "Edit", "Edit your last message"));
    if (!generation && i === messages.length - 1) {
      buttons.push(messages[i].role === "user"
        ? actionButton("regenerate", "Retry", "Ask for a reply again")
        : actionButton("regenerate", "Regenerate", "Replace this reply with a new one"));
    }
    article.querySelector(".actions").replaceChildren(...buttons);
  });
}

function actionButton(action, text, label) {
  const button = makeButton("action", text, label);
  button.dataset.action = action;
  return button;
}

function send() {
  const text = ui.prompt.value.trim();
  if (!text || generation) return;
  const { messages } = store.current;
  if (editing) messages.splice(messages.map((m) => m.role).lastIndexOf("user")); // drops its reply too
  setEditing(false);
  messages.push({ role: "user", content: text });
  ui.prompt.value = "";
  autosize();
  generate();
}

/** Stream a reply to the open conversation, rendering it as it arrives; Stop or Esc aborts it. */
async function generate() {
  const conversation = store.current;
  const model = ui.model.value;
  const history = conversation.messages.map(({ role, content }) => ({ role, content }));
  const system = settings.systemPrompt.trim();
  const body = { model, messages: system ? [{ role: "system", content: system }, ...history] : history,
                 max_tokens: settings.maxTokens, temperature: settings.temperature };
  const controller = new AbortController();
  const started = performance.now();
  const stream = streamChat(body, { key: keys.key, signal: controller.signal });
  const firstStep = stream.next(); // sends the request now: the page draws while it travels
  generation = { controller };
  renderConversation();
  const reply = { role: "assistant", content: "", model };
  const article = messageElement(reply);
  article.setAttribute("aria-busy", "true"); // screen readers announce the reply once, when it is complete
  ui.messages.append(article);
  ui.messages.scrollTop = ui.messages.scrollHeight;
  setGenerating(true);
  clearNotice();
  setTimeout(() => save(conversation), 0); // the user's message survives a reload; saved after drawing, not before the request
  let first = null;
  let usage = null;
  let finish = null;
  try {
    for (let step = await firstStep; !step.done; step = await stream.next()) {
      for (const event of step.value) {
        if (event.type === "text") reply.content += event.text;
        if (event.type === "usage") usage = event.usage;
        if (event.type === "finish") finish = event.reason;
      }
      if (first === null && reply.content) first = performance.now();
      const follow = isNearBottom();
      renderBody(article, reply);
      if (follow) ui.messages.scrollTop = ui.messages.scrollHeight;
    }
  } catch (err) {
    if (err.name === "AbortError") reply.stopped = true;
    else if (err.kind === "auth") askForKey(Boolean(keys.key));
    else showNotice(err.message);
  } finally {
    reply.stats = stats(started, first, performance.now(), usage, finish, models.get(model));
    if (reply.content) conversation.messages.push(reply);
    generation = null;
    setGenerating(false);
    save(conversation); // the one replied to, even if the user has opened another meanwhile
    renderConversation();
  }
}

/** A reply's figures from its timestamps (performance.now() ms), usage chunk, finish reason and model card. */
function stats(started, first, ended, usage, finish, card) {
  const seconds = (ended - started) / 1000;
  const out = { seconds, firstTokenSeconds: first === null ? null : (first - started) / 1000,
                cut: finish === "length" }; // cut: the reply ran into max_tokens, not to its own end
  if (usage) {
    Object.assign(out, { completionTokens: usage.completion_tokens, totalTokens: usage.total_tokens,
                         contextWindow: card?.context_window ?? null });
    // Decode speed: the first token's wait is the prompt's cost, so count the others over their own time.
    const decoding = first === null ? 0 : (ended - first) / 1000;
    if (usage.completion_tokens > 1 && decoding > 0) out.tokensPerSecond = (usage.completion_tokens - 1) / decoding;
  }
  return out;
}

function isNearBottom() {
  const m = ui.messages;
  return m.scrollHeight - m.scrollTop - m.clientHeight < 80;
}

function stop() {
  if (generation) generation.controller.abort(); // closes the connection: the server cancels the job
}

function setGenerating(on) {
  ui.send.hidden = on;
  ui.stop.hidden = !on;
  if (on) ui.stop.focus({ preventScroll: true });
  else ui.prompt.focus({ preventScroll: true });
  refreshActions();
}

function setEditing(on) {
  editing = on;
  ui.editing.hidden = !on;
  ui.send.textContent = on ? "Send edit" : "Send";
}

function startEdit() {
  const { messages } = store.current;
  ui.prompt.value = messages[messages.map((m) => m.role).lastIndexOf("user")].content;
  setEditing(true);
  autosize();
  ui.prompt.focus();
}

function regenerate() {
  const { messages } = store.current;
  if (messages.at(-1)?.role === "assistant") messages.pop();
  generate();
}

function autosize() {
  ui.prompt.style.height = "auto";
  ui.prompt.style.height = `${ui.prompt.scrollHeight}px`;
}

// ---- sources and code blocks ----------------------------------------------------------------------------

function openSource(button) {
  ui.sourceTitle.textContent = `Source [${button.dataset.source}]`;
  ui.sourcePath.textContent = button.dataset.path;
  ui.sourceSnippet.textContent = button.dataset.snippet || "(no snippet)";
  ui.sourceDialog.showModal();
  ui.sourceClose.focus();
}

async function copyCode(button) {
  const text = button.closest(".code-block").querySelector("pre").textContent;
  try {
    await navigator.clipboard.writeText(text);
  } catch {
    // navigator.clipboard exists only in secure contexts: a server reached over plain http on the LAN is not one.
    const area = Object.assign(document.createElement("textarea"), { value: text });
    document.body.append(area);
    area.select();
    document.execCommand("copy");
    area.remove();
  }
  button.textContent = "Copied";
  setTimeout(() => { button.textContent = "Copy"; }, 1500);
}

// ---- the conversation list -------------------------------------------------------------------------------

function renderConversationList() {
  ui.list.replaceChildren(...store.list().map((conversation) => {
    const item = document.createElement("li");
    const title = titleOf(conversation);
    const open = makeButton("open", title, `Open “${title}”`);
    if (conversation.id === store.currentId) open.setAttribute("aria-current", "true");
    open.dataset.id = conversation.id;
    const rename = actionButton("rename", "✎", `Rename “${title}”`);
    const remove = actionButton("delete", "×", `Delete “${title}”`);
    rename.dataset.id = remove.dataset.id = conversation.id;
    item.append(open, rename, remove);
    return item;
  }));
}

function switchTo(id) {
  stop();
  setEditing(false);
  store.open(id);
  renderConversationList();
  renderConversation();
  setSidebarOpen(false);
  ui.prompt.focus();
}

function startRename(button) {
  const id = button.dataset.id;
  const item = button.closest("li");
  const input = Object.assign(document.createElement("input"), { type: "text", value: titleOf(store.get(id)) });
  input.setAttribute("aria-label", "Conversation name");
  item.replaceChildren(input);
  input.select();
  let done = false;
  const finish = (keep) => {
    if (done) return;
    done = true;
    if (keep && input.value.trim()) store.rename(id, input.value);
    renderConversationList();
  };
  input.addEventListener("keydown", (e) => {
    if (e.key === "Enter") finish(true);
    if (e.key === "Escape") { e.stopPropagation(); finish(false); }
  });
  input.addEventListener("blur", () => finish(true));
}

function deleteConversation(id) {
  if (!confirm(`Delete “${titleOf(store.get(id))}”? This cannot be undone.`)) return;
  if (id === store.currentId) stop();
  store.remove(id);
  renderConversationList();
  renderConversation();
}

// ---- panels --------------------------------------------------------------------------------------------

function setSettingsOpen(open) {
  ui.settings.hidden = !open;
  ui.toggleSettings.setAttribute("aria-expanded", String(open));
}

function setSidebarOpen(open) {
  ui.sidebar.classList.toggle("open", open);
  ui.toggleSidebar.setAttribute("aria-expanded", String(open));
}

function readSettings() {
  const clamp = (value, low, high, fallback) => (Number.isFinite(value) ? Math.min(high, Math.max(low, value)) : fallback);
  settings.systemPrompt = ui.systemPrompt.value;
  settings.temperature = clamp(parseFloat(ui.temperature.value), 0, 2, 0);
  settings.maxTokens = clamp(parseInt(ui.maxTokens.value, 10), 1, 8192, 256);
  settings.model = ui.model.value || settings.model;
  ui.temperature.value = settings.temperature; // show what will be sent
  ui.maxTokens.value = settings.maxTokens;
  saveSettings(settings);
}

// ---- events --------------------------------------------------------------------------------------------

function wire() {
  ui.composer.addEventListener("submit", (e) => {
    e.preventDefault();
    send();
  });
  ui.prompt.addEventListener("keydown", (e) => {
    if (e.key === "Enter" && !e.shiftKey && !e.isComposing) { // isComposing: Enter that ends an IME word
      e.preventDefault();
      send();
    }
  });
  ui.prompt.addEventListener("input", autosize);
  document.addEventListener("keydown", (e) => {
    if (e.key !== "Escape" || ui.sourceDialog.open) return; // an open dialog closes itself on Esc
    if (generation) stop();
    else if (editing) { setEditing(false); ui.prompt.value = ""; autosize(); }
    else setSidebarOpen(false);
  });
  document.addEventListener("click", (e) => { // on a phone, a tap beside the conversation drawer closes it
    if (ui.sidebar.classList.contains("open") && !e.target.closest("#sidebar, #toggle-sidebar")) setSidebarOpen(false);
  });
  ui.stop.addEventListener("click", stop);
  ui.messages.addEventListener("click", (e) => {
    const button = e.target.closest("button");
    if (!button) return;
    if (button.classList.contains("copy")) copyCode(button);
    else if (button.classList.contains("cite")) openSource(button);
    else if (button.dataset.action === "edit") startEdit();
    else if (button.dataset.action === "regenerate") regenerate();
  });
  ui.sourceClose.addEventListener("click", () => ui.sourceDialog.close());
  ui.sourceDialog.addEventListener("click", (e) => { if (e.target === ui.sourceDialog) ui.sourceDialog.close(); });
  ui.list.addEventListener("click", (e) => {
    const button = e.target.closest("button");
    if (!button) return;
    if (button.classList.contains("open")) switchTo(button.dataset.id);
    else if (button.dataset.action === "rename") startRename(button);
    else if (button.dataset.action === "delete") deleteConversation(button.dataset.id);
  });
  ui.newChat.addEventListener("click", () => {
    stop();
    if (store.current.messages.length) store.create();
    switchTo(store.currentId);
  });
  ui.toggleSidebar.addEventListener("click", () => setSidebarOpen(!ui.sidebar.classList.contains("open")));
  ui.toggleSettings.addEventListener("click", () => setSettingsOpen(ui.settings.hidden));
  for (const input of [ui.systemPrompt, ui.temperature, ui.maxTokens, ui.model]) {
    input.addEventListener("change", readSettings);
  }
  ui.keySettings.addEventListener("submit", (e) => {
    e.preventDefault();
    useKey();
  });
  ui.rememberKey.addEventListener("change", () => keys.set(keys.key, ui.rememberKey.checked));
}

function start() {
  ui.systemPrompt.value = settings.systemPrompt;
  ui.temperature.value = settings.temperature;
  ui.maxTokens.value = settings.maxTokens;
  ui.apiKey.value = keys.key;
  ui.rememberKey.checked = keys.remembered;
  wire();
  renderConversationList();
  renderConversation();
  ui.prompt.focus();
  loadModels();
}

start();
