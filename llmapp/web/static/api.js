// The page's client for llmapp's OpenAI-compatible API: same-origin fetches only.
// Streams /v1/chat/completions (SSE) through fetch + ReadableStream, so one AbortController stops it:
// aborting closes the connection, and the server cancels the generation.
//
//   import { listModels, streamChat } from "./api.js";
//   for await (const events of streamChat(body, { key, signal })) { ... }

/** An API failure with a kind the page words for people: auth, busy, connection or server. */
export class APIError extends Error {
  constructor(kind, message, { status = 0, retryAfter = null } = {}) {
    super(message);
    this.kind = kind;
    this.status = status;
    this.retryAfter = retryAfter;
  }
}

function headers(key, extra = {}) {
  return key ? { ...extra, Authorization: `Bearer ${key}` } : extra;
}

const LOST = "Lost the connection to the server; is llmapp serve still running?";

async function request(path, options) {
  try {
    return await fetch(path, { ...options, cache: "no-store", credentials: "omit", referrerPolicy: "no-referrer" });
  } catch (err) {
    if (err.name === "AbortError") throw err;
    throw new APIError("connection", LOST);
  }
}

/** Turn a non-2xx response into an APIError carrying the server's own message. */
async function failure(response) {
  let message = `${response.status} ${response.statusText}`;
  try {
    message = (await response.json()).error.message || message;
  } catch { /* not OpenAI's error body (a proxy's page, say): keep the status line */ }
  if (response.status === 401) {
    return new APIError("auth", "The server needs an API key, and this one was missing or not accepted (401). " +
      "Enter the server's --api-key in Settings.", { status: 401 });
  }
  if (response.status === 429) {
    const retryAfter = parseInt(response.headers.get("Retry-After") || "", 10);
    const when = Number.isFinite(retryAfter) ? `in ${retryAfter} s` : "in a moment";
    return new APIError("busy", `The server is busy with other requests (429); try again ${when}.`,
      { status: 429, retryAfter: Number.isFinite(retryAfter) ? retryAfter : null });
  }
  return new APIError("server", `${message} (${response.status})`, { status: response.status });
}

/** The served models: [{id, kind, context_window}], chat and RAG first-class, embeddings included. */
export async function listModels(key) {
  const response = await request("/v1/models", { headers: headers(key) });
  if (!response.ok) throw await failure(response);
  return (await response.json()).data;
}

/**
 * Stream a chat completion. Yields one array of events per network read (so the page renders once per
 * read): {type: "text", text} ..., then {type: "finish", reason} and, as include_usage is asked for,
 * {type: "usage", usage}. Throws APIError, or an AbortError once `signal` aborts.
 */
export async function* streamChat(body, { key, signal }) {
  const payload = { ...body, stream: true, stream_options: { include_usage: true } };
  const response = await request("/v1/chat/completions", {
    method: "POST", signal, body: JSON.stringify(payload),
    headers: headers(key, { "Content-Type": "application/json", Accept: "text/event-stream" }),
  });
  if (!response.ok) throw await failure(response);
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  try {
    for (;;) {
      let chunk;
      try {
        chunk = await reader.read();
      } catch (err) {
        if (err.name === "AbortError") throw err;
        throw new APIError("connection", `${LOST} The reply so far is kept.`);
      }
      if (chunk.done) break;
      buffer += chunk.value;
      // Events end with a blank line; a read may hold several events, or half of one.
      const events = buffer.split(/\r?\n\r?\n/);
      buffer = events.pop();
      const parsed = [];
      for (const event of events) {
        const data = event.split(/\r?\n/).filter((l) => l.startsWith("data:")).map((l) => l.slice(5).trim()).join("\n");
        if (!data) continue;
        if (data === "[DONE]") {
          yield parsed;
          return;
        }
        parsed.push(...chunkEvents(JSON.parse(data)));
      }
      if (parsed.length) yield parsed; // one batch per read: the page renders once per network read
    }
  } finally {
    reader.cancel().catch(() => {}); // closes the connection if we stop early; a no-op when finished
  }
  throw new APIError("connection", `${LOST} The reply so far is kept.`); // ended without [DONE]
}

function chunkEvents(chunk) {
  if (chunk.error) throw new APIError("server", chunk.error.message || "the server reported an error");
  const out = [];
  for (const choice of chunk.choices || []) {
    if (choice.delta && choice.delta.content) out.push({ type: "text", text: choice.delta.content });
    if (choice.finish_reason) out.push({ type: "finish", reason: choice.finish_reason });
  }
  if (chunk.usage) out.push({ type: "usage", usage: chunk.usage });
  return out;
}
