// The page's fixed parts: its elements, the notice bar, the drawer and the settings panel.

export const $ = (id) => document.getElementById(id);
export const ui = {
  sidebar: $("sidebar"),
  backdrop: $("backdrop"),
  list: $("conversation-list"),
  title: $("chat-title"),
  model: $("model"),
  settings: $("settings"),
  system: $("system"),
  temperature: $("temperature"),
  maxTokens: $("max-tokens"),
  apiKey: $("api-key"),
  notice: $("notice"),
  noticeText: $("notice-text"),
  noticeAction: $("notice-action"),
  messages: $("messages"),
  empty: $("empty"),
  status: $("status"),
  composer: $("composer"),
  input: $("input"),
  send: $("send"),
  stop: $("stop"),
};

export function openSettings(focus) {
  ui.settings.hidden = false;
  $("toggle-settings").setAttribute("aria-expanded", "true");
  focus?.focus();
}

export function toggleSettings() {
  if (ui.settings.hidden) openSettings(ui.system);
  else {
    ui.settings.hidden = true;
    $("toggle-settings").setAttribute("aria-expanded", "false");
  }
}

export function nearBottom() {
  const m = ui.messages;
  return m.scrollHeight - m.scrollTop - m.clientHeight < 80;
}

export function scrollToBottom() {
  ui.messages.scrollTop = ui.messages.scrollHeight;
}

export function showNotice(kind, text, actionLabel, action) {
  ui.notice.hidden = false;
  ui.notice.className = `notice ${kind}`;
  ui.notice.dataset.kind = kind;
  ui.noticeText.textContent = text;
  ui.noticeAction.hidden = !actionLabel;
  ui.noticeAction.textContent = actionLabel ?? "";
  ui.noticeAction.onclick = action ?? null;
}

export function hideNotice() {
  ui.notice.hidden = true;
  delete ui.notice.dataset.kind;
}

export function announce(text) {
  ui.status.textContent = text;
}

export function autosize() {
  ui.input.style.height = "auto";
  ui.input.style.height = `${Math.min(ui.input.scrollHeight, 200)}px`;
}

export function openSidebar() {
  ui.sidebar.classList.add("open");
  ui.backdrop.hidden = false;
  $("toggle-sidebar").setAttribute("aria-expanded", "true");
  ui.list.querySelector("button")?.focus();
}

export function closeSidebar() {
  ui.sidebar.classList.remove("open");
  ui.backdrop.hidden = true;
  $("toggle-sidebar").setAttribute("aria-expanded", "false");
}
