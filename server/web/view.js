// Drawing conversations: the sidebar list and the messages of the open chat.
//
// User text and model text alike go in through textContent or the DOM-only Markdown
// renderer; nothing here parses a string as HTML.

import { copyText, renderMarkdown } from "./markdown.js";
import { renderReplyTokens, tokenView } from "./tokens.js";

export function renderSidebar(list, conversations, currentId, actions) {
  const items = [...conversations]
    .sort((a, b) => b.updated - a.updated)
    .map((conversation) => sidebarItem(conversation, conversation.id === currentId, actions));
  list.replaceChildren(...items);
}

function sidebarItem(conversation, current, actions) {
  const item = document.createElement("li");
  item.className = current ? "conversation current" : "conversation";
  item.dataset.id = conversation.id;
  const open = button(conversation.title, "open", () => actions.open(conversation.id));
  if (current) open.setAttribute("aria-current", "true");
  const rename = button("✎", "rename", () => startRename(item, conversation, actions));
  rename.setAttribute("aria-label", `Rename “${conversation.title}”`);
  rename.title = "Rename";
  const remove = button("×", "delete", () => actions.remove(conversation.id));
  remove.setAttribute("aria-label", `Delete “${conversation.title}”`);
  remove.title = "Delete";
  item.append(open, rename, remove);
  return item;
}

function startRename(item, conversation, actions) {
  const input = document.createElement("input");
  input.className = "rename-input";
  input.value = conversation.title;
  input.setAttribute("aria-label", "Conversation name");
  let done = false;
  const finish = (save) => {
    if (done) return;
    done = true;
    if (save && input.value.trim()) actions.rename(conversation.id, input.value.trim());
    else actions.rename(conversation.id, conversation.title);
  };
  input.addEventListener("keydown", (event) => {
    if (event.key === "Enter") {
      event.preventDefault();
      finish(true);
    } else if (event.key === "Escape") {
      event.preventDefault();
      finish(false);
    }
  });
  input.addEventListener("blur", () => finish(true));
  item.replaceChildren(input);
  input.focus();
  input.select();
}

// actions: regenerate, retry, edit, redraw; state.streaming hides the per-turn buttons.
export function renderMessages(container, conversation, state, actions) {
  const nodes = conversation.messages.map((message, index) =>
    messageNode(message, index, conversation.messages.length, state, actions),
  );
  container.replaceChildren(...nodes);
}

function messageNode(message, index, count, state, actions) {
  const article = document.createElement("article");
  article.className = `message ${message.role}`;
  article.dataset.index = String(index);
  const who = document.createElement("div");
  who.className = "who";
  who.textContent = message.role === "user" ? "You" : message.model || "Assistant";
  const body = document.createElement("div");
  body.className = "body";
  fillBody(body, message);
  article.append(who, body);
  const last = index === count - 1;
  const footer = document.createElement("div");
  footer.className = "meta";
  if (message.role === "assistant") {
    const stats = document.createElement("span");
    stats.className = "stats";
    stats.textContent = statsText(message);
    footer.append(stats, button("Copy", "copy-message", (event) => copyText(message.content, event.currentTarget)));
    if (last && !state.streaming) footer.append(button("Regenerate", "regenerate", actions.regenerate));
  } else if (message.role === "user" && !state.streaming) {
    const lastUser = last || index === count - 2;
    if (lastUser) footer.append(button("Edit", "edit", () => startEdit(article, message, actions)));
    if (last) footer.append(button("Retry", "retry", actions.retry));
  }
  if (footer.childElementCount) article.append(footer);
  return article;
}

export function fillBody(body, message) {
  if (message.role === "assistant" && tokenView.on && message.tokens?.length) {
    renderReplyTokens(body, message.tokens);
  } else if (message.role === "assistant") {
    renderMarkdown(message.content, body);
    if (message.reasoning) body.prepend(thinking(message));
    if (message.pending && !message.content) body.append(typing(message.loading));
  } else {
    // The user's own text is shown as typed, line breaks included (CSS pre-wrap).
    body.textContent = message.content;
  }
}

// A thinking model's reasoning, in a block that is open while it streams and folds away
// once the answer begins (the user can open it again).
function thinking(message) {
  const block = document.createElement("details");
  block.className = "thinking";
  block.open = Boolean(message.pending && !message.content);
  const summary = document.createElement("summary");
  summary.textContent = message.pending && !message.content ? "Thinking…" : "Thoughts";
  const text = document.createElement("div");
  text.className = "thinking-text";
  text.textContent = message.reasoning.trim();
  block.append(summary, text);
  return block;
}

export function statsText(message) {
  const stats = message.stats;
  if (message.pending) return "…";
  if (!stats) return "";
  const parts = [];
  if (Number.isFinite(stats.tokens)) parts.push(`${stats.approximate ? "~" : ""}${stats.tokens} tokens`);
  if (stats.tokensPerSecond) parts.push(`${stats.tokensPerSecond.toFixed(1)} tokens/s`);
  if (stats.stopped) parts.push("stopped");
  else if (stats.interrupted) parts.push("interrupted");
  else if (stats.finishReason === "length") parts.push("cut at max tokens");
  return parts.join(" · ");
}

function startEdit(article, message, actions) {
  const body = article.querySelector(".body");
  const area = document.createElement("textarea");
  area.className = "edit-input";
  area.value = message.content;
  area.setAttribute("aria-label", "Edit message");
  area.rows = Math.min(10, message.content.split("\n").length + 1);
  const save = button("Save & send", "save-edit primary", () => actions.edit(area.value));
  const cancel = button("Cancel", "cancel-edit", () => actions.redraw());
  area.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      actions.edit(area.value);
    } else if (event.key === "Escape") {
      event.preventDefault();
      actions.redraw();
    }
  });
  const bar = document.createElement("div");
  bar.className = "edit-bar";
  bar.append(save, cancel);
  body.replaceChildren(area, bar);
  article.querySelector(".meta")?.remove();
  area.focus();
}

function typing(loading) {
  const dots = document.createElement("span");
  dots.className = loading ? "typing loading-model" : "typing";
  dots.setAttribute("aria-label", loading ? "Loading the model" : "Waiting for the reply");
  dots.textContent = loading ? "loading model…" : "…";
  return dots;
}

function button(label, className, onClick) {
  const node = document.createElement("button");
  node.type = "button";
  node.className = className;
  node.textContent = label;
  node.addEventListener("click", onClick);
  return node;
}
