// Talking to the dashboard's JSON API, and small DOM helpers shared by every page.
// The token never reaches this code: the server keeps it in an HttpOnly cookie the browser sends along.
// Every action is a JSON POST (the server refuses form posts, which other sites can make).
async function api(path, body) {
  const options = { headers: {}, credentials: "same-origin" };
  if (body !== undefined) {
    options.method = "POST";
    options.headers["Content-Type"] = "application/json";
    options.body = JSON.stringify(body);
  }
  const response = await fetch(path, options);
  const data = await response.json().catch(() => ({ error: response.statusText }));
  if (!response.ok) throw new Error(data.error || response.statusText);
  return data;
}

// el("td", {class: "num"}, "1.5") -> <td class="num">1.5</td>; children may be nodes, text or arrays.
function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

function fmt(value, digits = 4) {
  if (value === undefined || value === null || value === "") return "—";
  if (typeof value === "number") return Number.isInteger(value) ? value.toLocaleString("en") : value.toFixed(digits);
  return String(value);
}

function duration(seconds) {
  if (seconds === null || seconds === undefined) return "—";
  const s = Math.round(seconds);
  if (s < 60) return s + " s";
  if (s < 3600) return Math.floor(s / 60) + " min " + (s % 60) + " s";
  return Math.floor(s / 3600) + " h " + Math.floor((s % 3600) / 60) + " min";
}

function statusBadge(status) { return el("span", { class: "status " + status, "data-status": status }, status); }

function keyValueTable(object, id) {
  const rows = Object.entries(object || {}).map(([k, v]) =>
    el("tr", {}, el("th", {}, k), el("td", { class: "wrap", "data-key": k },
      v !== null && typeof v === "object" ? JSON.stringify(v) : fmt(v))));
  return el("table", { id }, el("tbody", {}, rows));
}

// "mmlu -4.0 pts, not significant (95% CI -10.1..+2.1, p=0.21)": the benchmark that lost most, in the words
// eval.json's change is told everywhere (evaluate/forgetting.py change_text); older pages: the bare interval.
function forgettingText(f) {
  if (f.text) return `${f.suite} ${f.text}`;
  const signed = (x) => `${x >= 0 ? "+" : ""}${x.toFixed(1)}`;
  const ci = f.ci95 ? ` (95% CI ${signed(f.ci95[0])}…${signed(f.ci95[1])})` : "";
  return `${f.suite} ${signed(f.change)} pts${ci}`;
}

// plural(1, "item") -> "1 item", plural(3, "item") -> "3 items".
function plural(n, word) { return `${fmt(n)} ${word}${n === 1 ? "" : "s"}`; }
