// The token view: a reply as its tokens (id, probability, alternatives, from logprobs), and
// the prompt as the model saw it (the rendered chat format, control tokens marked).
//
// Token text goes in through textContent only; whitespace is shown with visible marks.

export const tokenView = { on: false };

function visible(text) {
  return text.replaceAll(" ", "·").replaceAll("\n", "↵\n").replaceAll("\t", "⇥");
}

function percent(logprob) {
  const p = Math.exp(logprob) * 100;
  return p >= 99.95 ? "100%" : `${p.toFixed(p < 10 ? 1 : 0)}%`;
}

function chip(text, className, title, caption) {
  const node = document.createElement("span");
  node.className = className;
  node.title = title;
  const piece = document.createElement("span");
  piece.className = "piece";
  piece.textContent = visible(text);
  node.append(piece);
  if (caption) {
    const small = document.createElement("small");
    small.textContent = caption;
    node.append(small);
  }
  return node;
}

// tokens: [{ text, logprob, top: [[text, logprob]], id? }]
export function renderReplyTokens(container, tokens) {
  const chips = tokens.map((token) => {
    const p = Math.exp(token.logprob);
    const level = p >= 0.8 ? "sure" : p >= 0.4 ? "likely" : "unsure";
    const id = token.id ?? "?";
    const others = token.top.map(([text, logprob]) => `${JSON.stringify(text)} ${percent(logprob)}`);
    const title = `id ${id} · p ${percent(token.logprob)}${others.length ? `\nalternatives: ${others.join(", ")}` : ""}`;
    return chip(token.text, `token ${level}`, title, `${id} · ${percent(token.logprob)}`);
  });
  const list = document.createElement("div");
  list.className = "tokens";
  list.setAttribute("aria-label", `${tokens.length} tokens`);
  list.append(...chips);
  container.replaceChildren(list);
}

// tokens: [{ id, piece, special }] from /apply-template.
export function renderPromptTokens(container, tokens) {
  const chips = tokens.map((token) =>
    chip(token.piece, token.special ? "token special" : "token", `id ${token.id}${token.special ? " · control token" : ""}`, String(token.id)),
  );
  const list = document.createElement("div");
  list.className = "tokens";
  list.append(...chips);
  const count = document.createElement("p");
  count.className = "token-count";
  const special = tokens.filter((t) => t.special).length;
  count.textContent = `${tokens.length} tokens, ${special} of them control tokens (marked).`;
  container.replaceChildren(count, list);
}
