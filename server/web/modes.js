// The page's two extra modes: Compare (one prompt, two models side by side, an optional
// judge) and Tokens (replies as tokens, and the prompt as the model saw it). Each toggle is
// a button with aria-pressed; the chat itself is untouched while they are off.

import { applyTemplate, tokenIds } from "./api.js";
import { runCompare } from "./compare.js";
import { $ } from "./page.js";
import { renderPromptTokens, tokenView } from "./tokens.js";

const compare = {
  on: false,
  bar: $("compare-bar"),
  panel: $("compare"),
  model: $("compare-model"),
  judge: $("compare-judge"),
  question: $("compare-question"),
  verdict: $("compare-verdict"),
  columns: ["compare-a", "compare-b"].map((id) => {
    const node = $(id);
    return { name: node.querySelector(".who"), body: node.querySelector(".body"), stats: node.querySelector(".stats") };
  }),
};
const promptView = { details: $("prompt-view"), tokens: $("prompt-tokens") };

export const modes = { compare, tokenView };

function press(button, on) {
  button.setAttribute("aria-pressed", String(on));
  button.classList.toggle("pressed", on);
}

// host: { messagesNode, redraw(), promptRequest() -> body | null, apiKey() }
export function setupModes(host) {
  $("toggle-compare").addEventListener("click", (event) => {
    compare.on = !compare.on;
    press(event.currentTarget, compare.on);
    compare.bar.hidden = !compare.on;
    compare.panel.hidden = !compare.on;
    host.messagesNode.hidden = compare.on;
  });
  $("toggle-tokens").addEventListener("click", (event) => {
    tokenView.on = !tokenView.on;
    press(event.currentTarget, tokenView.on);
    promptView.details.hidden = !tokenView.on;
    host.redraw();
    if (tokenView.on) showPrompt(host);
  });
  promptView.details.addEventListener("toggle", () => showPrompt(host));
}

// Fills the second-model and judge menus from the model list.
export function fillCompareMenus(models, current) {
  const options = (withNone) => {
    const list = models.map((card) => new Option(card.id, card.id));
    if (withNone) list.unshift(new Option("No judge", ""));
    return list;
  };
  const keep = [compare.model.value, compare.judge.value];
  compare.model.replaceChildren(...options(false));
  compare.judge.replaceChildren(...options(true));
  const other = models.find((card) => card.id !== current)?.id ?? current;
  compare.model.value = keep[0] && models.some((c) => c.id === keep[0]) ? keep[0] : other;
  compare.judge.value = keep[1] ?? "";
}

export async function compareSend({ apiKey, signal, modelA, question, system, settings }) {
  compare.question.textContent = question;
  delete compare.verdict.dataset.winner;
  return runCompare({
    apiKey,
    signal,
    models: [modelA, compare.model.value],
    judge: compare.judge.value || null,
    question,
    system,
    settings,
    panel: compare,
  });
}

// With the token view on, a request asks for logprobs (3 alternatives a token).
export function withTokenView(body) {
  return tokenView.on ? { ...body, logprobs: true, top_logprobs: 3 } : body;
}

// After a reply: each token's id, where its text is one token of the model.
export async function addTokenIds(apiKey, message) {
  if (!tokenView.on || !message.tokens?.length) return;
  const ids = await tokenIds(apiKey, message.model, message.tokens.map((t) => t.text));
  for (const token of message.tokens) token.id = ids.get(token.text);
}

export async function showPrompt(host) {
  if (!tokenView.on || !promptView.details.open) return;
  const body = host.promptRequest();
  if (!body) {
    promptView.tokens.textContent = "Send a message to see its prompt.";
    return;
  }
  try {
    const rendered = await applyTemplate(host.apiKey(), body);
    renderPromptTokens(promptView.tokens, rendered.tokens);
  } catch (error) {
    promptView.tokens.textContent = `Cannot show the prompt: ${error.message}`;
  }
}
