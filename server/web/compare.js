// Compare mode: one prompt, two models streaming side by side, and an optional judge.
//
// The judge follows MT-bench's pairwise method, as `hearth eval` does: it sees the pair in
// both orders, and a side wins only when it is picked both times (else a tie), which
// cancels a judge's liking for the first or second answer. Its reply is held to [[A]],
// [[B]] or [[C]] by a grammar (Hearth's `grammar` field), so even a tiny judge parses.

import { chatOnce, streamChat } from "./api.js";
import { renderMarkdown } from "./markdown.js";

const JUDGE_SYSTEM =
  "You are an impartial judge. Compare two AI assistants' answers to the user's question. " +
  "Judge correctness, helpfulness and clarity; the order of the answers and their length " +
  "must not sway you. Reply [[A]] if assistant A's answer is better, [[B]] if assistant " +
  "B's answer is better, or [[C]] if they are equally good.";
const JUDGE_GRAMMAR = 'root ::= "[[" [ABC] "]]"';

function judgePrompt(question, first, second) {
  return (
    `[Question]\n${question}\n\n[Assistant A's answer]\n${first}\n\n` +
    `[Assistant B's answer]\n${second}\n\nWhich answer is better?`
  );
}

// "a", "b" or "tie" from the verdicts with A's answer first and with B's answer first.
export function combine(firstOrder, swapped) {
  const first = { A: "a", B: "b", C: "tie" }[firstOrder];
  const second = { A: "b", B: "a", C: "tie" }[swapped];
  return first && first !== "tie" && first === second ? first : "tie";
}

async function verdict(apiKey, signal, judge, question, first, second) {
  const reply = await chatOnce({
    apiKey,
    signal,
    body: {
      model: judge,
      messages: [
        { role: "system", content: JUDGE_SYSTEM },
        { role: "user", content: judgePrompt(question, first, second) },
      ],
      max_tokens: 8,
      temperature: 0,
      grammar: JUDGE_GRAMMAR,
    },
  });
  return /\[\[([ABC])\]\]/.exec(reply.choices?.[0]?.message?.content ?? "")?.[1] ?? null;
}

// panel: { columns: [{ name, body, stats }] x2, verdict }; resolves when all is done.
export async function runCompare({ apiKey, signal, models, judge, question, system, settings, panel }) {
  panel.verdict.textContent = "";
  const messages = [];
  if (system?.trim()) messages.push({ role: "system", content: system });
  messages.push({ role: "user", content: question });
  const answers = ["", ""];
  const streams = models.map(async (model, side) => {
    const column = panel.columns[side];
    column.name.textContent = model;
    column.stats.textContent = "…";
    column.body.replaceChildren();
    const result = await streamChat({
      apiKey,
      signal,
      body: { model, messages, temperature: settings.temperature, max_tokens: settings.maxTokens },
      onDelta: (text) => {
        answers[side] += text;
        renderMarkdown(answers[side], column.body);
      },
    });
    const tokens = result.usage?.completion_tokens;
    column.stats.textContent = tokens ? `${tokens} tokens` : "";
    if (result.finishReason === "length") column.stats.textContent += " · cut at max tokens";
  });
  await Promise.all(streams);
  if (!judge) return null;
  panel.verdict.textContent = `${judge} is judging…`;
  const firstOrder = await verdict(apiKey, signal, judge, question, answers[0], answers[1]);
  const swapped = await verdict(apiKey, signal, judge, question, answers[1], answers[0]);
  const winner = combine(firstOrder, swapped);
  const bothTie = firstOrder === "C" && swapped === "C";
  const said =
    winner === "tie"
      ? bothTie
        ? "a tie"
        : "a tie (its verdicts in the two orders disagreed)"
      : `${models[winner === "a" ? 0 : 1]} is better (in both orders)`;
  panel.verdict.textContent = `Judge ${judge}: ${said}.`;
  panel.verdict.dataset.winner = winner;
  return winner;
}
