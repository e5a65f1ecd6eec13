// Talking to Hearth's OpenAI-compatible API, and turning its failures into sentences.
//
// The page is served by the same server it talks to, so every URL is relative: nothing
// is fetched from anywhere else.

export class ApiError extends Error {
  // kind: "unreachable" | "busy" | "auth" | "server"
  constructor(kind, message, status = 0) {
    super(message);
    this.kind = kind;
    this.status = status;
  }
}

function headers(apiKey) {
  const result = { "Content-Type": "application/json" };
  if (apiKey) result.Authorization = `Bearer ${apiKey}`;
  return result;
}

async function request(path, apiKey, init = {}) {
  let response;
  try {
    response = await fetch(path, { ...init, headers: headers(apiKey) });
  } catch (error) {
    if (error.name === "AbortError") throw error;
    throw new ApiError(
      "unreachable",
      "Cannot reach the Hearth server. Check that `hearth serve` is still running, then try again.",
    );
  }
  if (!response.ok) throw await errorFrom(response);
  return response;
}

async function errorFrom(response) {
  let detail = "";
  try {
    detail = (await response.json())?.error?.message ?? "";
  } catch {
    detail = "";
  }
  if (response.status === 401) {
    return new ApiError(
      "auth",
      `The server rejected the API key${detail ? `: ${detail}` : "."} Enter the key in Settings.`,
      401,
    );
  }
  if (response.status === 503) {
    const wait = response.headers.get("Retry-After");
    const when = wait ? ` Try again in ${wait} s.` : " Try again in a moment.";
    const error = new ApiError("busy", `The server is busy.${detail ? ` ${detail}` : ""}${when}`, 503);
    error.retryAfter = Number(wait) || null;
    return error;
  }
  if (response.status === 502 || response.status === 504) {
    return new ApiError("unreachable", "Cannot reach the Hearth server (a proxy answered).", response.status);
  }
  return new ApiError("server", detail || `The server answered ${response.status}.`, response.status);
}

export async function listModels(apiKey) {
  const response = await request("v1/models", apiKey);
  const body = await response.json();
  return body.data ?? [];
}

// Streams one chat completion. Calls onDelta(text) per content piece (onThought(text) per
// piece of a thinking model's reasoning) and resolves with
// { finishReason, usage, dropped }. Rejects with ApiError, or AbortError when stopped.
// A long chat keeps going with its oldest turns left out (truncation "auto"); `dropped`
// says how many, and the page tells the user.
export async function streamChat({ apiKey, signal, body, onDelta, onThought = () => {} }) {
  const deltas = { content: onDelta, reasoning: onThought };
  const response = await request("v1/chat/completions", apiKey, {
    method: "POST",
    signal,
    body: JSON.stringify({
      ...body,
      truncation: "auto",
      stream: true,
      stream_options: { include_usage: true },
    }),
  });
  const dropped = Number(response.headers.get("X-Hearth-Dropped-Messages") ?? 0);
  const result = { finishReason: null, usage: null, dropped };
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    let chunk;
    try {
      chunk = await reader.read();
    } catch (error) {
      if (error.name === "AbortError") throw error;
      throw new ApiError("unreachable", "The connection to the server broke off mid-reply.");
    }
    if (chunk.done) break;
    buffer += decoder.decode(chunk.value, { stream: true });
    const lines = buffer.split("\n");
    buffer = lines.pop();
    for (const line of lines) {
      if (handleLine(line, result, deltas)) return result;
    }
  }
  if (buffer) handleLine(buffer, result, deltas);
  if (!result.finishReason) {
    throw new ApiError("unreachable", "The connection to the server broke off mid-reply.");
  }
  return result;
}

// Returns true at [DONE].
function handleLine(line, result, deltas) {
  if (!line.startsWith("data:")) return false;
  const data = line.slice(5).trim();
  if (data === "[DONE]") return true;
  let event;
  try {
    event = JSON.parse(data);
  } catch {
    return false;
  }
  if (event.error) {
    throw new ApiError("server", event.error.message || "The server stopped with an error.");
  }
  if (event.usage) result.usage = event.usage;
  for (const choice of event.choices ?? []) {
    if (choice.delta?.reasoning_content) deltas.reasoning(choice.delta.reasoning_content);
    if (choice.delta?.content) deltas.content(choice.delta.content, choice.logprobs?.content ?? []);
    if (choice.finish_reason) result.finishReason = choice.finish_reason;
  }
  return false;
}

// One chat completion, whole (the compare mode's judge).
export async function chatOnce({ apiKey, signal, body }) {
  const response = await request("v1/chat/completions", apiKey, {
    method: "POST",
    signal,
    body: JSON.stringify({ ...body, stream: false }),
  });
  return response.json();
}

// The prompt a chat request becomes for the model: { prompt, tokens: [{ id, piece, special }] }.
export async function applyTemplate(apiKey, body) {
  const response = await request("apply-template", apiKey, { method: "POST", body: JSON.stringify(body) });
  return response.json();
}

// Each token text's id, where the text is exactly one token of the model (logprobs carry
// a token's text, not its id).
export async function tokenIds(apiKey, model, texts) {
  const ids = new Map();
  for (const text of new Set(texts)) {
    const response = await request("tokenize", apiKey, {
      method: "POST",
      body: JSON.stringify({ model, content: text, parse_special: false }),
    });
    const tokens = (await response.json()).tokens ?? [];
    if (tokens.length === 1) ids.set(text, tokens[0]);
  }
  return ids;
}
