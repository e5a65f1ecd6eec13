// One assistant reply streaming into a message, with its token count and speed.

import { streamChat } from "./api.js";

// Streams the reply into message.content, calling onText after each piece, and leaves
// message.stats set however it ends. Resolves with the API result; rethrows failures
// (AbortError when stopped) after recording what had arrived.
export async function streamReply({ apiKey, signal, body, message, onText }) {
  const started = performance.now();
  let firstToken = 0;
  let pieces = 0;
  const measure = (tokens, extra) => ({
    tokens,
    tokensPerSecond: rate(tokens, firstToken, performance.now()),
    firstTokenMs: firstToken ? Math.round(firstToken - started) : null,
    ...extra,
  });
  try {
    const result = await streamChat({
      apiKey,
      signal,
      body,
      onDelta: (text, logprobs) => {
        if (!firstToken) firstToken = performance.now();
        pieces += 1;
        message.content += text;
        if (logprobs.length) message.tokens = [...(message.tokens ?? []), ...logprobs.map(tokenOf)];
        onText();
      },
      onThought: (text) => {
        if (!firstToken) firstToken = performance.now();
        pieces += 1;
        message.reasoning = (message.reasoning ?? "") + text;
        onText();
      },
    });
    // Without a usage chunk, content pieces stand in for tokens (about one each).
    const tokens = result.usage?.completion_tokens ?? pieces;
    message.stats = measure(tokens, { approximate: !result.usage, finishReason: result.finishReason });
    return result;
  } catch (error) {
    const stopped = error.name === "AbortError";
    message.stats = measure(pieces, { approximate: true, stopped, interrupted: !stopped });
    throw error;
  }
}

function rate(tokens, firstToken, end) {
  // Decode speed: the tokens after the first, over the time since the first arrived
  // (the wait before it is prompt processing, not generation).
  const seconds = (end - firstToken) / 1000;
  return firstToken && tokens > 1 && seconds > 0 ? (tokens - 1) / seconds : null;
}

// A token of the reply for the token view: its text, probability and likeliest alternatives.
function tokenOf(entry) {
  return {
    text: entry.token,
    logprob: entry.logprob,
    top: (entry.top_logprobs ?? []).map((alt) => [alt.token, alt.logprob]),
  };
}
