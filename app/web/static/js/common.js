// Shared by every page: the API key (kept in this browser only), calls to /api/v1 with errors
// shown in words, and the results table's columns and cell formats (the same as the CSV's:
// app/exports.py CANDIDATE_COLUMNS and format_cell).
"use strict";

const KEY_NAME = "phononscreen.apiKey";

class ApiError extends Error {
  constructor(status, message, detail) {
    super(message);
    this.status = status;
    this.detail = detail;  // the API's problem detail, when it sent one
  }
}

function getKey() {
  try { return localStorage.getItem(KEY_NAME) || ""; } catch (e) { return ""; }
}

function setKey(value) {
  try {
    if (value) localStorage.setItem(KEY_NAME, value); else localStorage.removeItem(KEY_NAME);
  } catch (e) { /* storage refused (private mode): the key lives for this page only */ }
  window.__key = value;
}

function currentKey() { return window.__key !== undefined ? window.__key : getKey(); }

// The API's problem detail in words: a string, {code, message}, or a list of validation errors.
function describeProblem(detail) {
  if (!detail) return "";
  if (typeof detail === "string") return detail;
  if (Array.isArray(detail)) {
    return detail.map((e) => {
      const where = (e.loc || []).filter((p) => p !== "body" && p !== "query").join(".");
      return where ? `${where}: ${e.msg}` : e.msg;
    }).join("; ");
  }
  if (detail.message) return detail.message;
  return JSON.stringify(detail);
}

async function api(path, options = {}) {
  const headers = Object.assign({}, options.headers || {});
  const key = currentKey();
  if (key) headers["Authorization"] = `Bearer ${key}`;
  let response;
  try {
    response = await fetch(path, Object.assign({}, options, { headers }));
  } catch (e) {
    throw new ApiError(0, `The server could not be reached (${e.message}). Is phononscreen running?`);
  }
  if (response.ok) return response;
  let message = `${response.status} ${response.statusText}`;
  let detail;
  try {
    const body = await response.json();
    detail = body.detail;
    const words = describeProblem(body.detail);
    if (words) message = `${words} (HTTP ${response.status})`;
  } catch (e) { /* not JSON: keep the status line */ }
  if (response.status === 401 || response.status === 403) {
    openKeyBox(response.status === 401 ? "This server needs an API key: enter it above." : "This key was revoked.");
  }
  const retry = response.headers.get("Retry-After");
  if (retry) message += ` Retry in ${retry} s.`;
  throw new ApiError(response.status, message, detail);
}

async function apiJson(path, options) { return (await api(path, options)).json(); }

function showError(message) {
  const box = document.getElementById("errors");
  const p = document.createElement("p");
  p.className = "error";
  p.textContent = message;
  const close = document.createElement("button");
  close.type = "button";
  close.textContent = "Dismiss";
  close.addEventListener("click", () => p.remove());
  p.appendChild(document.createTextNode(" "));
  p.appendChild(close);
  box.appendChild(p);
}

function clearErrors() { document.getElementById("errors").replaceChildren(); }

function openKeyBox(message) {
  const box = document.getElementById("key-box");
  box.open = true;
  document.getElementById("key-state").textContent = message || "";
  document.getElementById("key-input").focus();
}

function getPath(obj, path) {
  let node = obj;
  for (const part of path.split(".")) {
    if (node === null || node === undefined || typeof node !== "object") return null;
    node = node[part];
  }
  return node === undefined ? null : node;
}

// app/exports.py format_cell, in JavaScript: the table and its CSV show the same text.
function formatCell(value, kind) {
  if (value === null || value === undefined) return "";
  if (kind === "bool") return value ? "yes" : "no";
  if (kind === "float3") return Number.isFinite(value) ? value.toFixed(3) : String(value);
  if (kind === "vector") return "(" + value.map((x) => x.toFixed(3)).join(", ") + ")";
  return String(value);
}

// columns: [[header, path, kind], ...]; rows link to their candidate page by id.
function renderCandidateTable(table, columns, items, options = {}) {
  const head = document.createElement("tr");
  for (const [header, path] of columns) {
    const th = document.createElement("th");
    th.scope = "col";
    const sortKey = options.sortKeys ? options.sortKeys[path] : undefined;
    if (sortKey) {
      const button = document.createElement("button");
      button.type = "button";
      button.className = "sort";
      button.textContent = header;
      button.title = `Sort by ${header}`;
      button.addEventListener("click", () => options.onSort(sortKey));
      th.appendChild(button);
      if (options.sortedBy === sortKey) th.setAttribute("aria-sort", options.descending ? "descending" : "ascending");
    } else {
      th.textContent = header;
    }
    head.appendChild(th);
  }
  table.tHead.replaceChildren(head);
  const body = table.tBodies[0];
  body.replaceChildren();
  for (const item of items) {
    const tr = document.createElement("tr");
    for (const [, path, kind] of columns) {
      const td = document.createElement("td");
      const text = formatCell(getPath(item, path), kind);
      if (path === "id") {
        const a = document.createElement("a");
        a.href = `/candidates/${item.id}`;
        a.textContent = text;
        td.appendChild(a);
      } else {
        td.textContent = text;
      }
      if (path === "verdict.verdict" && text) td.className = `verdict-${text}`;
      tr.appendChild(td);
    }
    body.appendChild(tr);
  }
}

async function download(path, filename) {
  const response = await api(path);
  const blob = await response.blob();
  const url = URL.createObjectURL(blob);
  const a = document.createElement("a");
  a.href = url;
  a.download = filename;
  document.body.appendChild(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
}

function vendorMissing(name) {
  return (window.PAGE.vendorMissing || []).includes(name);
}

function formatSeconds(s) {
  if (s === null || s === undefined) return "";
  if (s < 90) return `${Math.round(s)} s`;
  if (s < 5400) return `${Math.round(s / 60)} min`;
  return `${(s / 3600).toFixed(1)} h`;
}

document.addEventListener("DOMContentLoaded", () => {
  const input = document.getElementById("key-input");
  input.value = getKey();
  document.getElementById("key-form").addEventListener("submit", (event) => {
    event.preventDefault();
    setKey(input.value.trim());
    document.getElementById("key-state").textContent = input.value.trim() ? "Saved in this browser." : "No key.";
    if (window.onKeyChanged) window.onKeyChanged();
  });
  document.getElementById("key-forget").addEventListener("click", () => {
    input.value = "";
    setKey("");
    document.getElementById("key-state").textContent = "Forgotten.";
  });
  if (window.PAGE.keysRequired && !getKey()) {
    openKeyBox(window.PAGE.readsNeedKey ? "This server needs an API key for every page's data."
                                         : "This server needs an API key to submit structures.");
  }
});
