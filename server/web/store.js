// Conversations and settings, kept in this browser's localStorage and nowhere else.
//
// One key holds every conversation as JSON; another the page settings. The server never
// sees a conversation except the messages of the request being answered.

const CONVERSATIONS_KEY = "hearth.conversations.v1";
const SETTINGS_KEY = "hearth.settings.v1";

export const DEFAULT_SETTINGS = {
  model: "",
  system: "",
  temperature: 0.7,
  maxTokens: 512,
  apiKey: "",
};

export function loadSettings() {
  return { ...DEFAULT_SETTINGS, ...readJson(SETTINGS_KEY, {}) };
}

export function saveSettings(settings) {
  localStorage.setItem(SETTINGS_KEY, JSON.stringify(settings));
}

export function loadConversations() {
  const stored = readJson(CONVERSATIONS_KEY, []);
  return Array.isArray(stored) ? stored.filter(isConversation).map(settle) : [];
}

// A page closed mid-reply leaves a pending message behind: keep what arrived, marked as
// interrupted, and drop it if nothing did.
function settle(conversation) {
  const messages = conversation.messages
    .filter((m) => m && typeof m.content === "string" && !(m.pending && !m.content))
    .map((m) => (m.pending ? { ...m, pending: undefined, loading: undefined, stats: { ...m.stats, interrupted: true } } : m));
  return { ...conversation, messages };
}

export function saveConversations(conversations) {
  try {
    localStorage.setItem(CONVERSATIONS_KEY, JSON.stringify(conversations));
    return true;
  } catch {
    // Quota exceeded: the page keeps working on what it has in memory and says so.
    return false;
  }
}

export function newConversation() {
  const now = Date.now();
  return {
    id: (crypto.randomUUID?.() ?? `${now}-${Math.random().toString(16).slice(2)}`),
    title: "New chat",
    created: now,
    updated: now,
    messages: [],
  };
}

// A title from the first user message, the way people skim a sidebar.
export function titleFrom(text) {
  const line = text.trim().split("\n")[0].replace(/\s+/g, " ");
  return line.length > 48 ? `${line.slice(0, 47)}…` : line || "New chat";
}

export function toMarkdown(conversation) {
  const parts = [`# ${conversation.title}`, ""];
  if (conversation.system) parts.push(`**System:** ${conversation.system}`, "");
  for (const message of conversation.messages) {
    const who = message.role === "user" ? "You" : `Assistant${message.model ? ` (${message.model})` : ""}`;
    parts.push(`## ${who}`, "", message.content, "");
  }
  return parts.join("\n");
}

export function toJson(conversation) {
  const { id, title, created, updated, system, messages } = conversation;
  return JSON.stringify({ id, title, created, updated, system, messages }, null, 2);
}

export function fileName(conversation, extension) {
  const slug = conversation.title.toLowerCase().replace(/[^a-z0-9]+/g, "-").replace(/^-|-$/g, "");
  return `${slug || "conversation"}.${extension}`;
}

function isConversation(value) {
  return value && typeof value.id === "string" && Array.isArray(value.messages);
}

function readJson(key, fallback) {
  try {
    const raw = localStorage.getItem(key);
    return raw ? JSON.parse(raw) : fallback;
  } catch {
    return fallback;
  }
}
