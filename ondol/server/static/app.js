// The home dashboard: rooms of device cards kept live from the home's event stream, a command box
// for the assistant, and the audit log. Plain JavaScript against /v1/homes/{home}/... (no build step).
"use strict";

const CONFIG = JSON.parse(document.body.dataset.config);
const API = `/v1/homes/${encodeURIComponent(CONFIG.home)}`;
const $ = (sel) => document.querySelector(sel);

const app = {
  lang: localStorage.getItem("ondol.lang") || CONFIG.language,
  areas: [],          // [{id, names}] in the home file's order
  devices: new Map(), // id -> device (with its latest state)
  cards: new Map(),   // id -> card element
  conversation: [],   // [{text, reply, actions, error, pending}]
  assistant: "loading",
};

// Simple line icons (24×24), so nothing depends on an emoji font being installed.
const ICONS = {
  light: '<path d="M9 18h6M10 21h4M12 3a6 6 0 0 0-3.5 10.9c.6.5 1 1.2 1 2.1h5c0-.9.4-1.6 1-2.1A6 6 0 0 0 12 3z"/>',
  switch: '<rect x="6" y="3" width="12" height="18" rx="3"/><rect x="9" y="6" width="6" height="6" rx="1.5"/>',
  plug: '<path d="M9 3v5M15 3v5M6 8h12v3a6 6 0 0 1-12 0zM12 17v4"/>',
  air_conditioner: '<rect x="3" y="5" width="18" height="8" rx="2"/><path d="M7 10h10M8 16l-1 3M12 16v3M16 16l1 3"/>',
  thermostat: '<path d="M10 4a2 2 0 0 1 4 0v10a4 4 0 1 1-4 0z"/><path d="M12 10v7"/>',
  air_purifier: '<rect x="6" y="3" width="12" height="18" rx="3"/><path d="M9 8h6M9 11h6M9 14h6"/>',
  fan: '<circle cx="12" cy="12" r="2"/><path d="M12 10c0-4 1-7 4-7s1 5-4 7zM14 12c4 0 7 1 7 4s-5 1-7-4zM12 14c0 4-1 7-4 7s-1-5 4-7zM10 12c-4 0-7-1-7-4s5-1 7 4z"/>',
  washer: '<rect x="4" y="3" width="16" height="18" rx="2"/><circle cx="12" cy="13" r="4.5"/><path d="M7 6.5h3"/>',
  refrigerator: '<rect x="6" y="2" width="12" height="20" rx="2"/><path d="M6 9h12M9 5v2M9 12v3"/>',
  robot_vacuum: '<circle cx="12" cy="12" r="9"/><circle cx="12" cy="12" r="3"/><path d="M7 7l2 2"/>',
  tv: '<rect x="3" y="5" width="18" height="12" rx="2"/><path d="M8 21h8M12 17v4"/>',
  speaker: '<rect x="6" y="2" width="12" height="20" rx="2"/><circle cx="12" cy="14" r="3.5"/><circle cx="12" cy="6.5" r="1"/>',
  cover: '<path d="M3 4h18M5 4v16M19 4v16M5 20c3-4 3-12 3-16M19 20c-3-4-3-12-3-16"/>',
  lock: '<rect x="5" y="11" width="14" height="10" rx="2"/><path d="M8 11V8a4 4 0 0 1 8 0v3"/><circle cx="12" cy="16" r="1"/>',
  unlocked: '<rect x="5" y="11" width="14" height="10" rx="2"/><path d="M8 11V8a4 4 0 0 1 7.5-2"/><circle cx="12" cy="16" r="1"/>',
  sensor: '<path d="M5 12a7 7 0 0 1 14 0M8 12a4 4 0 0 1 8 0"/><circle cx="12" cy="12" r="1.5"/><path d="M12 14v6"/>',
  scene: '<path d="M20 14.5A8 8 0 1 1 9.5 4a6.5 6.5 0 0 0 10.5 10.5z"/>',
  xr_headset: '<path d="M3 9a2 2 0 0 1 2-2h14a2 2 0 0 1 2 2v5a2 2 0 0 1-2 2h-4l-2-2h-2l-2 2H5a2 2 0 0 1-2-2z"/>',
};
ICONS.dryer = ICONS.washer;
ICONS.dishwasher = ICONS.washer;

function icon(device) {
  const name = device.type === "lock" && device.state?.lock_state === "unlocked" ? "unlocked" : device.type;
  return `<svg viewBox="0 0 24 24" aria-hidden="true">${ICONS[name] || ICONS.sensor}</svg>`;
}

const t = (key) => UI[app.lang][key];
const esc = (s) => String(s).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
const deviceName = (d) => pickName(d.names, app.lang, d.id);
const typeLabel = (d) => TYPES[app.lang][d.device_class] || TYPES[app.lang][d.type] || d.type;

// --- talking to the server --------------------------------------------------------------------

// The session cookie the login page set (HttpOnly: this script never sees the key) rides along
// with every same-origin request; without one, the server sends the browser to /login.
async function api(path, options = {}) {
  const response = await fetch(API + path, { ...options, credentials: "same-origin" });
  if (response.status === 401) {
    location.href = "/login";
    throw new Error(t("signIn"));
  }
  const body = await response.json().catch(() => ({}));
  if (!response.ok) {
    const error = new Error(body.error?.message || body.error || `HTTP ${response.status}`);
    error.status = response.status;
    error.code = body.error?.code;
    throw error;
  }
  return body;
}

// The devices as they are now. Events that arrive while the snapshot is on its way are held and
// replayed after it, in order: the snapshot may predate them, and must not undo them.
async function loadHome() {
  app.loads = (app.loads || 0) + 1;
  app.held = app.held || [];
  try {
    const [homes, devices] = await Promise.all([
      fetch("/v1/homes", { credentials: "same-origin" }).then((r) => r.json()), api("/devices")]);
    app.areas = (homes.data || []).find((h) => h.id === CONFIG.home)?.areas || [];
    app.devices = new Map(devices.data.map((d) => [d.id, d]));
    renderRooms();
  } finally {
    if (--app.loads === 0) for (const event of app.held.splice(0)) onState(event);
  }
}

function onState(data) {
  if (app.loads) return void app.held.push(data);
  const device = app.devices.get(data.device);
  if (!device) return;
  device.state = data.state;
  updateCard(device, true);
  refreshAuditSoon();
}

// Server-sent events of state changes (the session cookie authenticates the stream).
function listen() {
  const source = new EventSource(`${API}/events`, { withCredentials: true });
  source.addEventListener("open", () => { setLive("live"); loadHome().catch(() => {}); });
  source.addEventListener("error", () => setLive("offline"));
  source.addEventListener("state", (e) => onState(JSON.parse(e.data)));
}

function setLive(state) {
  $("#live").dataset.live = state;
  $("#live-label").textContent = t(state === "live" ? "live" : state);
}

// --- rooms and cards ----------------------------------------------------------------------------

function renderRooms() {
  const rooms = $("#rooms");
  rooms.replaceChildren();
  app.cards.clear();
  const groups = app.areas.map((a) => ({ id: a.id, name: pickName(a.names, app.lang, a.id), devices: [] }));
  const other = { id: "", name: t("other"), devices: [] };
  const byId = new Map(groups.map((g) => [g.id, g]));
  for (const d of app.devices.values()) (byId.get(d.area) || other).devices.push(d);
  for (const group of [...groups, other]) {
    if (!group.devices.length) continue;
    const section = document.createElement("section");
    section.className = "room";
    section.dataset.area = group.id;
    section.innerHTML = `<h2><span>${esc(group.name)}</span><small>${esc(t("devices")(group.devices.length))}</small></h2>
      <div class="cards"></div>`;
    const cards = section.querySelector(".cards");
    for (const d of group.devices) {
      const card = document.createElement("article");
      card.className = "card";
      card.dataset.device = d.id;
      card.dataset.type = d.type;
      card.addEventListener("animationend", () => card.classList.remove("flash"));
      app.cards.set(d.id, card);
      cards.append(card);
      updateCard(d, false);
    }
    rooms.append(section);
  }
}

function updateCard(device, changed) {
  const card = app.cards.get(device.id);
  if (!card) return;
  const s = describeState(device, app.lang);
  card.classList.toggle("active", !!s.active);
  card.classList.toggle("alert", !!s.alert);
  // The state as attributes too (data-state-power="on"), for styles and for tests.
  for (const [k, v] of Object.entries(device.state || {})) card.setAttribute(`data-state-${k}`, String(v));
  const control = controlFor(device);
  card.innerHTML = `
    <div class="card-head">
      <span class="icon"${s.swatch ? ` style="--swatch:${esc(s.swatch)}"` : ""}>${icon(device)}</span>
      ${control ? `<button type="button" class="control" data-action='${esc(JSON.stringify(control.actions))}'
          aria-label="${esc(control.label)}" title="${esc(control.label)}">${esc(control.label)}</button>` : ""}
    </div>
    <h3 class="name">${esc(deviceName(device))}</h3>
    <p class="kind">${esc(typeLabel(device))}</p>
    ${s.main ? `<p class="state">${esc(s.main)}</p>` : ""}
    ${s.details.length ? `<p class="details">${s.details.map(esc).join(" · ")}</p>` : ""}`;
  if (changed) {
    card.classList.remove("flash");
    void card.offsetWidth;  // restart the animation when changes come in quick succession
    card.classList.add("flash");
  }
}

// One button per card for the obvious action: power, lock, open/close, run a scene.
function controlFor(device) {
  const s = device.state || {};
  const action = device.type === "scene" ? "activate"
    : device.type === "lock" ? (s.lock_state === "locked" ? "unlock" : "lock")
    : device.type === "cover" ? (s.position > 0 ? "close" : "open")
    : device.actions.includes("turn_on") && s.power !== undefined ? (s.power === "on" ? "turn_off" : "turn_on")
    : null;
  return action && { label: WORDS[app.lang][action], actions: [{ action, device: device.id }] };
}

$("#rooms").addEventListener("click", async (e) => {
  const button = e.target.closest("button.control");
  if (!button) return;
  button.disabled = true;
  try {
    await api("/actions", { method: "POST", headers: { "Content-Type": "application/json" },
                            body: JSON.stringify({ actions: JSON.parse(button.dataset.action), source: "dashboard" }) });
  } catch (err) {
    addTurn({ text: button.closest(".card").querySelector(".name").textContent, error: err.message });
  } finally {
    button.disabled = false;
    refreshAuditSoon();
  }
});

// --- the assistant ------------------------------------------------------------------------------

function addTurn(turn) {
  app.conversation.push(turn);
  renderConversation();
  return turn;
}

function renderConversation() {
  const list = $("#conversation");
  list.innerHTML = app.conversation.map((turn) => {
    const actions = (turn.actions || []).map((a) => {
      const d = app.devices.get(a.device);
      const params = Object.entries(a.params || {}).map(([k, v]) => `${k} ${v}`).join(", ");
      return `<li>${esc(d ? deviceName(d) : a.device)} · ${esc(a.action)}${params ? ` (${esc(params)})` : ""}</li>`;
    }).join("");
    const reply = turn.pending ? `<span class="dots">${esc(t("thinking"))}</span>`
      : turn.error ? `<span class="error">${esc(t("error") + turn.error)}</span>` : esc(turn.reply || "");
    return `<li class="turn"><p class="you">${esc(turn.text)}</p>
      <div class="reply${turn.pending ? " pending" : ""}${turn.error ? " failed" : ""}"><p>${reply}</p>
      ${actions ? `<ul class="actions">${actions}</ul>` : ""}</div></li>`;
  }).join("");
  list.scrollTop = list.scrollHeight;
}

$("#command").addEventListener("submit", async (e) => {
  e.preventDefault();
  const input = $("#command-text");
  const text = input.value.trim();
  if (!text || app.busy) return;
  app.busy = true;
  $("#command-send").disabled = true;
  input.value = "";
  const turn = addTurn({ text, pending: true });
  try {
    const result = await api("/commands", { method: "POST", headers: { "Content-Type": "application/json" },
                                            body: JSON.stringify({ text, source: "dashboard" }) });
    Object.assign(turn, { reply: result.reply, actions: result.actions, pending: false });
  } catch (err) {
    Object.assign(turn, { error: err.message, pending: false });
    if (err.code === "assistant_loading" || err.code === "assistant_unavailable") checkAssistant();
  }
  renderConversation();
  app.busy = false;
  $("#command-send").disabled = false;
  input.focus();
  refreshAudit();
});

// The assistant loads its model after the page is up: poll /health until it is ready.
async function checkAssistant() {
  try {
    const health = await fetch("/health").then((r) => r.json());
    app.assistant = health.assistant;
    app.assistantError = health.error;
  } catch (e) { /* the server is restarting; try again */ }
  renderStatus();
  if (app.assistant === "loading" || app.assistant === undefined) setTimeout(checkAssistant, 1000);
}

function renderStatus() {
  const status = { ready: t("ready"), loading: t("loading"), none: t("none"),
                   failed: t("failed") + (app.assistantError || "") }[app.assistant] || t("loading");
  $("#assistant-status").textContent = status;
  $("#assistant-status").dataset.status = app.assistant;
}

// --- the audit log ------------------------------------------------------------------------------

let auditTimer = null;
function refreshAuditSoon() {  // one request for a burst of events (a scene changes many devices)
  clearTimeout(auditTimer);
  auditTimer = setTimeout(refreshAudit, 300);
}

async function refreshAudit() {
  let rows;
  try {
    rows = (await api("/audit?limit=15")).data;
  } catch (e) {
    return;
  }
  const time = new Intl.DateTimeFormat(app.lang === "ko" ? "ko-KR" : "en-GB",
                                       { hour: "2-digit", minute: "2-digit", second: "2-digit" });
  $("#audit").innerHTML = rows.length ? rows.map((r) => {
    const what = r.utterance || r.actions.map((a) => `${a.action} ${a.device || Object.values(a.target || {}).join(" ")}`).join(", ");
    return `<li class="${r.ok ? "ok" : "refused"}" data-seq="${r.seq}">
      <time datetime="${esc(r.time)}">${esc(time.format(new Date(r.time)))}</time>
      <span class="source">${esc(r.source)}</span>
      <span class="what" title="${esc(r.error || "")}">${esc(what)}</span>
      <span class="badge">${esc(r.ok ? t("ok") : t("refused"))}</span></li>`;
  }).join("") : `<li class="empty">${esc(t("empty"))}</li>`;
}

// --- language -----------------------------------------------------------------------------------

function setLanguage(lang) {
  app.lang = lang;
  localStorage.setItem("ondol.lang", lang);
  document.documentElement.lang = lang;
  document.title = `${t("title")} · ondol`;
  $("#title").textContent = `${t("title")} · ${CONFIG.home}`;
  for (const el of document.querySelectorAll("[data-i18n]")) el.textContent = t(el.dataset.i18n);
  $("#command-text").placeholder = t("placeholder");
  for (const b of document.querySelectorAll(".lang button")) b.setAttribute("aria-pressed", String(b.dataset.lang === lang));
  setLive($("#live").dataset.live);
  renderStatus();
  renderRooms();
  renderConversation();
  refreshAudit();
}

for (const b of document.querySelectorAll(".lang button")) b.addEventListener("click", () => setLanguage(b.dataset.lang));

setLanguage(app.lang);
loadHome().catch((e) => addTurn({ text: "…", error: e.message }));
listen();
checkAssistant();
