// A small Markdown renderer that builds DOM nodes, never HTML strings.
//
// Model output is untrusted. Every piece of reply text reaches the page through
// document.createTextNode or textContent, so a reply containing <script> or
// <img onerror=...> shows those characters and nothing runs. Do not "speed this up"
// with innerHTML: that is exactly the hole this module exists to avoid.
//
// Supported: fenced code blocks (with a copy button), inline code, **bold**, *italic*,
// headings, bullet and numbered lists, block quotes, horizontal rules, and links whose
// target is an http(s) URL. Anything else is shown as the text it is.

const FENCE = /^ {0,3}(`{3,}|~{3,})\s*([\w+#.-]*)/;
const HEADING = /^ {0,3}(#{1,6})\s+(.*?)\s*#*\s*$/;
const BULLET = /^\s*[-*+]\s+(.*)$/;
const NUMBERED = /^\s*(\d{1,9})[.)]\s+(.*)$/;
const QUOTE = /^ {0,3}>\s?(.*)$/;
const RULE = /^ {0,3}([-*_])(\s*\1){2,}\s*$/;

export function renderMarkdown(text, container) {
  container.replaceChildren(...blocks(text.replace(/\r\n?/g, "\n").split("\n")));
}

function blocks(lines) {
  const out = [];
  let i = 0;
  while (i < lines.length) {
    const line = lines[i];
    const fence = line.match(FENCE);
    if (fence) {
      const body = [];
      i += 1;
      // An unclosed fence runs to the end: while a reply streams in, its code block
      // is still open and should already look like code.
      while (i < lines.length && !lines[i].trimStart().startsWith(fence[1])) {
        body.push(lines[i]);
        i += 1;
      }
      out.push(codeBlock(body.join("\n"), fence[2]));
      i += 1;
    } else if (!line.trim()) {
      i += 1;
    } else if (RULE.test(line)) {
      out.push(document.createElement("hr"));
      i += 1;
    } else if (HEADING.test(line)) {
      const [, hashes, title] = line.match(HEADING);
      out.push(element(`h${Math.min(hashes.length + 2, 6)}`, inline(title)));
      i += 1;
    } else if (QUOTE.test(line)) {
      const quoted = [];
      while (i < lines.length && QUOTE.test(lines[i])) {
        quoted.push(lines[i].match(QUOTE)[1]);
        i += 1;
      }
      out.push(element("blockquote", blocks(quoted)));
    } else if (BULLET.test(line) || NUMBERED.test(line)) {
      i = list(lines, i, out);
    } else {
      const para = [];
      while (i < lines.length && lines[i].trim() && !startsBlock(lines[i])) {
        para.push(lines[i]);
        i += 1;
      }
      out.push(paragraph(para));
    }
  }
  return out;
}

function startsBlock(line) {
  return [FENCE, HEADING, QUOTE, BULLET, NUMBERED, RULE].some((re) => re.test(line));
}

function list(lines, start, out) {
  const numbered = NUMBERED.test(lines[start]);
  const pattern = numbered ? NUMBERED : BULLET;
  const node = document.createElement(numbered ? "ol" : "ul");
  if (numbered) {
    const first = Number(lines[start].match(NUMBERED)[1]);
    if (first !== 1) node.start = first;
  }
  let i = start;
  while (i < lines.length && pattern.test(lines[i])) {
    const match = lines[i].match(pattern);
    node.append(element("li", inline(match[match.length - 1])));
    i += 1;
  }
  out.push(node);
  return i;
}

function paragraph(lines) {
  const p = document.createElement("p");
  lines.forEach((line, index) => {
    if (index > 0) p.append(document.createElement("br"));
    p.append(...inline(line));
  });
  return p;
}

function codeBlock(code, language) {
  const figure = document.createElement("div");
  figure.className = "code-block";
  const bar = document.createElement("div");
  bar.className = "code-bar";
  const label = document.createElement("span");
  label.textContent = language || "code";
  const copy = document.createElement("button");
  copy.type = "button";
  copy.className = "copy-code";
  copy.textContent = "Copy";
  copy.setAttribute("aria-label", "Copy code");
  copy.addEventListener("click", () => copyText(code, copy));
  bar.append(label, copy);
  const pre = document.createElement("pre");
  const codeNode = document.createElement("code");
  codeNode.textContent = code;
  pre.append(codeNode);
  figure.append(bar, pre);
  return figure;
}

export async function copyText(text, button) {
  try {
    await navigator.clipboard.writeText(text);
  } catch {
    // navigator.clipboard needs a secure context; a server reached over plain http on
    // the LAN is not one, so fall back to the old selection-based copy.
    const area = document.createElement("textarea");
    area.value = text;
    area.setAttribute("readonly", "");
    area.className = "offscreen";
    document.body.append(area);
    area.select();
    document.execCommand("copy");
    area.remove();
  }
  if (button) {
    button.textContent = "Copied";
    setTimeout(() => (button.textContent = "Copy"), 1500);
  }
}

// Inline spans, outermost first. Each rule turns a match into nodes; text between
// matches is tried against the later rules, and what matches nothing becomes a text node.
const INLINE_RULES = [
  { re: /`([^`\n]+)`/, make: (m) => [element("code", [text(m[1])])] },
  { re: /\[([^\]\n]+)\]\(([^)\s]+)\)/, make: (m) => link(m[1], m[2]) },
  { re: /\bhttps?:\/\/[^\s<>()]+[^\s<>().,;:!?'"]/, make: (m) => link(m[0], m[0]) },
  { re: /\*\*(?=\S)([^\n]*?\S)\*\*|__(?=\S)([^\n]*?\S)__/, make: (m) => [emphasis("strong", m)] },
  { re: /\*(?=\S)([^*\n]*?\S)\*|\b_(?=\S)([^_\n]*?\S)_\b/, make: (m) => [emphasis("em", m)] },
];

function inline(source, ruleIndex = 0) {
  if (!source) return [];
  for (let r = ruleIndex; r < INLINE_RULES.length; r += 1) {
    const match = source.match(INLINE_RULES[r].re);
    if (match) {
      const before = source.slice(0, match.index);
      const after = source.slice(match.index + match[0].length);
      return [...inline(before, r + 1), ...INLINE_RULES[r].make(match), ...inline(after, r)];
    }
  }
  return [text(source)];
}

function emphasis(tag, match) {
  return element(tag, inline(match[1] ?? match[2], 1));
}

function link(label, target) {
  let url;
  try {
    url = new URL(target);
  } catch {
    url = null;
  }
  // Only web links: javascript:, data: and friends stay plain text.
  if (!url || (url.protocol !== "http:" && url.protocol !== "https:")) {
    return [text(label === target ? target : `[${label}](${target})`)];
  }
  const a = document.createElement("a");
  a.href = url.href;
  a.textContent = label;
  a.target = "_blank";
  a.rel = "noopener noreferrer";
  return [a];
}

function element(tag, children) {
  const node = document.createElement(tag);
  node.append(...children);
  return node;
}

function text(value) {
  return document.createTextNode(value);
}
