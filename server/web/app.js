// The chat page: wires the controls to the conversation store and the streaming API.

import { ApiError, listModels } from "./api.js";
import {
  $,
  announce,
  autosize,
  closeSidebar,
  hideNotice,
  nearBottom,
  openSettings,
  openSidebar,
  scrollToBottom,
  showNotice,
  toggleSettings,
  ui,
} from "./page.js";
import { addTokenIds, compareSend, fillCompareMenus, modes, setupModes, showPrompt, withTokenView } from "./modes.js";
import { streamReply } from "./reply.js";
import {
  fileName,
  loadConversations,
  loadSettings,
  newConversation,
  saveConversations,
  saveSettings,
  titleFrom,
  toJson,
  toMarkdown,
} from "./store.js";
import { fillBody, renderMessages, renderSidebar, statsText } from "./view.js";

const state = {
  settings: loadSettings(),
  conversations: loadConversations(),
  current: null,
  models: [],
  streaming: null, // { controller, conversation, message } while a reply streams in
};

const actions = {
  open: (id) => openConversation(id),
  rename: (id, title) => {
    const conversation = state.conversations.find((c) => c.id === id);
    if (conversation) conversation.title = title;
    persist();
    drawSidebar();
    drawTitle();
  },
  remove: (id) => removeConversation(id),
  regenerate: () => regenerate(),
  retry: () => generate(state.current),
  edit: (text) => editLastUser(text),
  redraw: () => drawMessages(),
};

// ---- conversations -------------------------------------------------------------

function persist() {
  if (!saveConversations(state.conversations)) {
    showNotice("error", "This browser's storage is full: older conversations may not be kept. Delete some to make room.");
  }
}

function openConversation(id) {
  state.current = state.conversations.find((c) => c.id === id) ?? null;
  if (state.current) {
    if (state.current.model && hasModel(state.current.model)) ui.model.value = state.current.model;
    ui.system.value = state.current.system ?? "";
  }
  closeSidebar();
  drawAll();
  ui.input.focus();
}

function startNewChat() {
  // An untouched empty chat is reused rather than piling up "New chat" entries.
  const empty = state.conversations.find((c) => c.messages.length === 0);
  state.current = empty ?? null;
  if (!state.current) ui.system.value = state.settings.system;
  closeSidebar();
  drawAll();
  ui.input.focus();
}

function removeConversation(id) {
  const conversation = state.conversations.find((c) => c.id === id);
  if (!conversation) return;
  if (!window.confirm(`Delete “${conversation.title}”? This cannot be undone.`)) return;
  if (state.streaming?.conversation === conversation) state.streaming.controller.abort();
  state.conversations = state.conversations.filter((c) => c !== conversation);
  if (state.current === conversation) state.current = null;
  persist();
  drawAll();
}

function ensureConversation() {
  if (!state.current) {
    state.current = newConversation();
    state.conversations.push(state.current);
  }
  return state.current;
}

function exportCurrent(kind) {
  const conversation = state.current;
  if (!conversation || conversation.messages.length === 0) {
    showNotice("info", "Nothing to export yet: this chat is empty.");
    return;
  }
  const markdown = kind === "md";
  const blob = new Blob([markdown ? toMarkdown(conversation) : toJson(conversation)], {
    type: markdown ? "text/markdown" : "application/json",
  });
  const link = document.createElement("a");
  link.href = URL.createObjectURL(blob);
  link.download = fileName(conversation, kind);
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(link.href), 10_000);
}

// ---- sending and streaming -------------------------------------------------------

function send() {
  const text = ui.input.value;
  if (!text.trim() || state.streaming) return;
  if (modes.compare.on) {
    sendCompare(text);
    return;
  }
  const conversation = ensureConversation();
  if (conversation.messages.length === 0) conversation.title = titleFrom(text);
  conversation.messages.push({ role: "user", content: text });
  ui.input.value = "";
  autosize();
  generate(conversation);
}

// Compare mode: the prompt goes to both models; nothing is added to the conversation.
async function sendCompare(text) {
  hideNotice();
  const controller = new AbortController();
  state.streaming = { controller, conversation: null, message: null };
  drawAll();
  announce("Comparing…");
  try {
    await compareSend({
      apiKey: state.settings.apiKey,
      signal: controller.signal,
      modelA: ui.model.value,
      question: text,
      system: ui.system.value,
      settings: state.settings,
    });
    announce("Comparison finished.");
  } catch (error) {
    if (error.name !== "AbortError") reportError(error);
  } finally {
    state.streaming = null;
    drawAll();
  }
}

function regenerate() {
  const conversation = state.current;
  if (!conversation || state.streaming) return;
  if (conversation.messages.at(-1)?.role === "assistant") conversation.messages.pop();
  generate(conversation);
}

function editLastUser(text) {
  const conversation = state.current;
  if (!conversation || state.streaming || !text.trim()) return;
  const index = conversation.messages.findLastIndex((m) => m.role === "user");
  if (index < 0) return;
  conversation.messages.splice(index);
  if (index === 0) conversation.title = titleFrom(text);
  conversation.messages.push({ role: "user", content: text });
  generate(conversation);
}

function requestMessages(conversation) {
  const messages = [];
  if (conversation.system?.trim()) messages.push({ role: "system", content: conversation.system });
  for (const message of conversation.messages) {
    if (message.content) messages.push({ role: message.role, content: message.content });
  }
  return messages;
}

async function generate(conversation) {
  if (state.streaming || conversation.messages.at(-1)?.role !== "user") return;
  hideNotice();
  const model = ui.model.value || state.settings.model;
  if (!model) {
    showNotice("error", "No model to talk to yet: the model list has not loaded.", "Reload models", loadModels);
    return;
  }
  conversation.model = model;
  conversation.system = ui.system.value;
  conversation.updated = Date.now();
  const body = withTokenView({
    model,
    messages: requestMessages(conversation),
    temperature: state.settings.temperature,
    max_tokens: state.settings.maxTokens,
  });
  // A model that is not resident loads first, which takes seconds: say so while it does.
  const loading = modelState(model) !== "loaded";
  const message = { role: "assistant", content: "", model, pending: true, loading };
  conversation.messages.push(message);
  const controller = new AbortController();
  state.streaming = { controller, conversation, message };
  announce("Writing a reply…");
  persist();
  drawAll();
  const live = liveView(message);
  try {
    const result = await streamReply({
      apiKey: state.settings.apiKey,
      signal: controller.signal,
      body,
      message,
      onText() {
        message.loading = false;
        live.update();
      },
    });
    if (result.dropped > 0) {
      const plural = result.dropped === 1 ? " was" : "s were";
      showNotice("info", `The ${result.dropped} oldest message${plural} left out of this reply to fit the model's context.`);
    }
    await addTokenIds(state.settings.apiKey, message);
    announce("Reply finished.");
  } catch (error) {
    const stopped = error.name === "AbortError";
    if (!stopped) reportError(error);
    announce(stopped ? "Stopped." : "The reply failed.");
  } finally {
    delete message.pending;
    // A reply that never produced a word is not worth keeping: the user's message stays,
    // with a Retry button.
    if (!message.content && !message.reasoning) {
      conversation.messages.splice(conversation.messages.indexOf(message), 1);
    }
    delete message.loading;
    state.streaming = null;
    conversation.updated = Date.now();
    persist();
    drawAll();
    showPrompt(modeHost);
    if (loading) loadModels(); // the menu shows which models are resident now
  }
}

function liveView(message) {
  // Redraw at most once per frame however fast tokens arrive, and save at most once a
  // second, so that a page closed mid-reply keeps what had arrived.
  let scheduled = false;
  let saved = performance.now();
  return {
    update() {
      if (performance.now() - saved > 1000) {
        saved = performance.now();
        persist();
      }
      if (scheduled) return;
      scheduled = true;
      requestAnimationFrame(() => {
        scheduled = false;
        if (state.current !== state.streaming?.conversation) return;
        const node = ui.messages.querySelector(`.message[data-index="${state.current.messages.indexOf(message)}"]`);
        if (!node) return;
        const stick = nearBottom();
        fillBody(node.querySelector(".body"), message);
        node.querySelector(".stats").textContent = statsText(message);
        if (stick) scrollToBottom();
      });
    },
  };
}

function stop() {
  state.streaming?.controller.abort();
}

function reportError(error) {
  if (!(error instanceof ApiError)) {
    showNotice("error", `Something went wrong: ${error.message}`);
    return;
  }
  if (error.kind === "auth") {
    showNotice("error", error.message, "Open settings", () => openSettings(ui.apiKey));
    openSettings(ui.apiKey);
  } else if (error.kind === "busy" || error.kind === "unreachable") {
    showNotice(error.kind === "busy" ? "warning" : "error", error.message, "Retry", () => generate(state.current));
  } else {
    showNotice("error", error.message);
  }
  ui.notice.dataset.kind = error.kind;
}

// ---- models and settings ------------------------------------------------------------

function hasModel(id) {
  return state.models.some((m) => m.id === id);
}

function modelState(id) {
  return state.models.find((m) => m.id === id)?.state ?? "loaded";
}

const STATE_NOTES = { loaded: "loaded", loading: "loading…", unloaded: "not loaded", failed: "failed to load", missing: "file missing" };

// One group a model, its chat formats inside, labelled with whether the model is resident.
function modelGroups(cards) {
  const groups = new Map();
  for (const card of cards) {
    const base = card.id.includes(":") ? card.id.slice(0, card.id.lastIndexOf(":")) : card.id;
    if (!groups.has(base)) {
      const group = document.createElement("optgroup");
      const note = STATE_NOTES[card.state];
      group.label = note ? `${base} · ${note}` : base;
      group.dataset.model = base;
      groups.set(base, group);
    }
    const option = document.createElement("option");
    option.value = card.id;
    option.textContent = card.id.includes(":") ? card.id : `${card.id} (${card.prompt})`;
    groups.get(base).append(option);
  }
  return [...groups.values()];
}

async function loadModels() {
  try {
    state.models = await listModels(state.settings.apiKey);
  } catch (error) {
    reportError(error);
    if (error.kind !== "auth") ui.noticeAction.onclick = loadModels;
    // 503 here mostly means the model is still loading right after `hearth serve`:
    // keep asking instead of leaving the user a dead page.
    if (error.kind === "busy") setTimeout(loadModels, 1000 * Math.max(1, error.retryAfter ?? 2));
    return;
  }
  if (["auth", "unreachable", "busy"].includes(ui.notice.dataset.kind)) hideNotice();
  ui.model.replaceChildren(...modelGroups(state.models));
  const wanted = state.current?.model || state.settings.model;
  ui.model.value = hasModel(wanted) ? wanted : state.models[0]?.id ?? "";
  state.settings.model = ui.model.value;
  fillCompareMenus(state.models, ui.model.value);
}

function readSettings() {
  const temperature = Number.parseFloat(ui.temperature.value);
  const maxTokens = Number.parseInt(ui.maxTokens.value, 10);
  const keyChanged = ui.apiKey.value !== state.settings.apiKey;
  state.settings = {
    ...state.settings,
    model: ui.model.value,
    system: ui.system.value,
    temperature: Number.isFinite(temperature) ? Math.min(2, Math.max(0, temperature)) : 0.7,
    maxTokens: Number.isFinite(maxTokens) && maxTokens > 0 ? maxTokens : 512,
    apiKey: ui.apiKey.value.trim(),
  };
  if (state.current && !state.streaming) {
    state.current.system = ui.system.value;
    state.current.model = ui.model.value;
    persist();
  }
  saveSettings(state.settings);
  if (keyChanged) loadModels();
}

function writeSettings() {
  ui.system.value = state.current?.system ?? state.settings.system;
  ui.temperature.value = String(state.settings.temperature);
  ui.maxTokens.value = String(state.settings.maxTokens);
  ui.apiKey.value = state.settings.apiKey;
}

// ---- drawing -------------------------------------------------------------------------

function drawAll() {
  drawSidebar();
  drawTitle();
  drawMessages();
  const streaming = Boolean(state.streaming);
  ui.send.hidden = streaming;
  ui.stop.hidden = !streaming;
}

function drawSidebar() {
  const shown = state.conversations.filter((c) => c.messages.length > 0 || c === state.current);
  renderSidebar(ui.list, shown, state.current?.id, actions);
}

function drawTitle() {
  ui.title.textContent = state.current?.title ?? "New chat";
  document.title = state.current ? `${state.current.title} · Hearth` : "Hearth";
}

function drawMessages() {
  const conversation = state.current;
  const empty = !conversation || conversation.messages.length === 0;
  if (empty) {
    ui.messages.replaceChildren(ui.empty);
    return;
  }
  renderMessages(ui.messages, conversation, { streaming: Boolean(state.streaming) }, actions);
  scrollToBottom();
}

// ---- events ----------------------------------------------------------------------------

ui.composer.addEventListener("submit", (event) => {
  event.preventDefault();
  send();
});
ui.input.addEventListener("keydown", (event) => {
  // Enter sends; Shift+Enter is a new line; an IME composing text keeps its Enter.
  if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
    event.preventDefault();
    send();
  }
});
ui.input.addEventListener("input", autosize);
ui.stop.addEventListener("click", stop);
document.addEventListener("keydown", (event) => {
  if (event.key === "Escape" && state.streaming) stop();
  else if (event.key === "Escape" && ui.sidebar.classList.contains("open")) closeSidebar();
});
$("new-chat").addEventListener("click", startNewChat);
$("toggle-settings").addEventListener("click", toggleSettings);
$("toggle-sidebar").addEventListener("click", () =>
  ui.sidebar.classList.contains("open") ? closeSidebar() : openSidebar(),
);
ui.backdrop.addEventListener("click", closeSidebar);
$("notice-close").addEventListener("click", hideNotice);
$("export-md").addEventListener("click", () => exportCurrent("md"));
$("export-json").addEventListener("click", () => exportCurrent("json"));
for (const control of [ui.model, ui.system, ui.temperature, ui.maxTokens, ui.apiKey]) {
  control.addEventListener("change", readSettings);
}
// Another tab changed the conversations: pick up its version unless this one is mid-reply.
window.addEventListener("storage", (event) => {
  if (event.key?.startsWith("hearth.conversations") && !state.streaming) {
    const currentId = state.current?.id;
    state.conversations = loadConversations();
    state.current = state.conversations.find((c) => c.id === currentId) ?? null;
    drawAll();
  }
});

const modeHost = {
  messagesNode: ui.messages,
  redraw: drawMessages,
  apiKey: () => state.settings.apiKey,
  // The open chat as a request, for the prompt view (the last reply left out if any).
  promptRequest: () => {
    if (!state.current?.messages.length) return null;
    const messages = requestMessages(state.current);
    if (messages.at(-1)?.role === "assistant") messages.pop();
    return { model: ui.model.value, messages };
  },
};
setupModes(modeHost);

const latest = [...state.conversations].sort((a, b) => b.updated - a.updated)[0];
state.current = latest ?? null;
writeSettings();
drawAll();
loadModels();
ui.input.focus();
