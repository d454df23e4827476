// What the page keeps in the browser's local storage: conversations, settings and (only when the user
// ticks "remember") the API key. Nothing is sent anywhere but the llmapp server the page came from.
//
//   const store = new ConversationStore();   // reads localStorage["llmapp.conversations"]
//   const chat = store.create(); chat.messages.push({ role: "user", content: "Hi" }); store.save();

const CONVERSATIONS = "llmapp.conversations";
const SETTINGS = "llmapp.settings";
const API_KEY = "llmapp.apiKey";
const VERSION = 1; // bump when the stored shape changes; other versions are set aside, not misread

export const DEFAULT_SETTINGS = { model: "", systemPrompt: "", temperature: 0, maxTokens: 256 };

function readJSON(key) {
  const raw = localStorage.getItem(key);
  if (raw === null) return null;
  try {
    return JSON.parse(raw);
  } catch {
    // A damaged value must not break the page: keep it aside for the curious, then start afresh.
    localStorage.setItem(`${key}.damaged`, raw);
    return null;
  }
}

function newId() {
  return Date.now().toString(36) + Math.random().toString(36).slice(2, 8);
}

/** A conversation's title: what the user named it, else its first words. */
export function titleOf(conversation) {
  if (conversation.title) return conversation.title;
  const first = conversation.messages.find((m) => m.role === "user");
  const words = first ? first.content.replace(/\s+/g, " ").trim() : "";
  return words ? (words.length > 48 ? `${words.slice(0, 47)}…` : words) : "New chat";
}

/** Every conversation, newest first, and which one is open. */
export class ConversationStore {
  constructor() {
    const saved = readJSON(CONVERSATIONS);
    const valid = saved && saved.version === VERSION && Array.isArray(saved.conversations);
    if (saved && !valid) localStorage.setItem(`${CONVERSATIONS}.v${saved.version ?? "unknown"}`, JSON.stringify(saved));
    this.conversations = valid ? saved.conversations : [];
    this.currentId = valid ? saved.current : null;
    if (!this.get(this.currentId)) this.currentId = this.conversations[0]?.id ?? this.create().id;
  }

  get(id) {
    return this.conversations.find((c) => c.id === id) || null;
  }

  get current() {
    return this.get(this.currentId);
  }

  /** Newest first, by last change. */
  list() {
    return [...this.conversations].sort((a, b) => b.updated - a.updated);
  }

  create() {
    const now = Date.now();
    const conversation = { id: newId(), title: "", created: now, updated: now, messages: [] };
    this.conversations.push(conversation);
    this.currentId = conversation.id;
    return conversation;
  }

  open(id) {
    if (this.get(id)) this.currentId = id;
    this.save();
  }

  rename(id, title) {
    const conversation = this.get(id);
    if (conversation) conversation.title = title.trim();
    this.save();
  }

  /** Delete one; the newest left opens (or a fresh one when none is left). */
  remove(id) {
    this.conversations = this.conversations.filter((c) => c.id !== id);
    if (this.currentId === id) this.currentId = this.list()[0]?.id ?? this.create().id;
    this.save();
  }

  /** Mark a conversation (default: the open one) changed, so it moves to the top, and save everything. */
  touch(conversation = this.current) {
    conversation.updated = Date.now();
    this.save();
  }

  /** Write to local storage. Throws the browser's QuotaExceededError when storage is full. */
  save() {
    const kept = this.conversations.filter((c) => c.messages.length || c.id === this.currentId || c.title);
    this.conversations = kept; // empty, unnamed chats left behind are not worth a line in the list
    localStorage.setItem(CONVERSATIONS, JSON.stringify({ version: VERSION, current: this.currentId, conversations: kept }));
  }
}

export function loadSettings() {
  const saved = readJSON(SETTINGS);
  return { ...DEFAULT_SETTINGS, ...(saved && saved.version === VERSION ? saved.values : {}) };
}

export function saveSettings(values) {
  localStorage.setItem(SETTINGS, JSON.stringify({ version: VERSION, values }));
}

/**
 * The API key: in memory for this tab, and in local storage only when the user asked to remember it
 * (un-ticking "remember" deletes the stored copy).
 */
export class KeyHolder {
  constructor() {
    this.key = localStorage.getItem(API_KEY) || "";
    this.remembered = Boolean(this.key);
  }

  set(key, remember) {
    this.key = key.trim();
    this.remembered = remember && Boolean(this.key);
    if (this.remembered) localStorage.setItem(API_KEY, this.key);
    else localStorage.removeItem(API_KEY);
  }
}
