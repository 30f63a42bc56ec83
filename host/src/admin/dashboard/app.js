// plughost's dashboard: reads GET /overview/stream (Server-Sent Events, read
// with fetch so the bearer token can be sent) and keeps the page in step.
// Host data is only ever written with textContent: plugin names, errors and
// payloads come from plugins and are not trusted.
(() => {
"use strict";

const TOKEN_KEY = "plughost.admin.token";
const BACKOFF_MIN_MS = 500;
const BACKOFF_MAX_MS = 10000;
// Snapshots come every second: this long without a byte means the feed is dead.
const STALL_MS = 5000;

const $ = (id) => document.getElementById(id);

/** The request headers: the bearer token when the tab has one. */
function authHeaders() {
  const token = sessionStorage.getItem(TOKEN_KEY);
  return token ? { Authorization: "Bearer " + token } : {};
}

/** A new element with a class and text (never HTML). */
function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined && text !== null) e.textContent = String(text);
  return e;
}

/** Sets an element's text only when it changed (keeps selections steady). */
function setText(e, text) {
  const t = String(text);
  if (e.textContent !== t) e.textContent = t;
}

function fmtUptime(ms) {
  if (typeof ms !== "number") return "–";
  let s = Math.floor(ms / 1000);
  const d = Math.floor(s / 86400); s -= d * 86400;
  const h = Math.floor(s / 3600); s -= h * 3600;
  const m = Math.floor(s / 60); s -= m * 60;
  if (d) return d + "d " + h + "h";
  if (h) return h + "h " + m + "m";
  if (m) return m + "m " + s + "s";
  return s + "s";
}

function fmtRate(x) {
  if (typeof x !== "number") return "–";
  return x >= 100 ? x.toFixed(0) : x >= 10 ? x.toFixed(1) : x.toFixed(2);
}

function fmtMs(x) {
  if (typeof x !== "number") return "–";
  return (x >= 100 ? x.toFixed(0) : x >= 1 ? x.toFixed(1) : x.toFixed(2)) + " ms";
}

function fmtAgo(iso) {
  const t = Date.parse(iso);
  if (Number.isNaN(t)) return String(iso);
  const s = Math.max(0, Math.round((Date.now() - t) / 1000));
  if (s < 60) return s + "s ago";
  if (s < 3600) return Math.floor(s / 60) + "m ago";
  if (s < 86400) return Math.floor(s / 3600) + "h ago";
  return new Date(t).toLocaleString();
}

function firstLine(text) {
  const s = String(text == null ? "" : text);
  const i = s.indexOf("\n");
  return i < 0 ? s : s.slice(0, i) + " …";
}

/** Adds a line to the actions log, newest first. */
function log(text, ok) {
  const li = el("li", ok ? "ok" : "error", new Date().toLocaleTimeString() + "  " + text);
  const list = $("log");
  list.insertBefore(li, list.firstChild);
  $("no-actions").hidden = true;
  while (list.children.length > 50) list.removeChild(list.lastChild);
}

/** POSTs `path`; logs and returns the answer as {ok, status, body}. */
async function post(path, what) {
  let answer;
  try {
    const r = await fetch(path, { method: "POST", headers: authHeaders(), cache: "no-store" });
    const text = await r.text();
    let body = text;
    try { body = JSON.parse(text); } catch (_) { /* not JSON: keep the text */ }
    answer = { ok: r.ok, status: r.status, body };
  } catch (e) {
    answer = { ok: false, status: 0, body: { error: String(e) } };
  }
  const detail = answer.ok
    ? JSON.stringify(answer.body)
    : (answer.body && answer.body.error) || JSON.stringify(answer.body);
  log(what + ": " + (answer.status || "no answer") + " " + detail, answer.ok);
  if (answer.status === 401) signOut();
  return answer;
}

/**
 * Enables or disables every button inside `group` (a card or a row), except
 * those locked off for good (`data-locked`).
 */
function setBusy(group, busy) {
  group.dataset.busy = busy ? "1" : "";
  for (const b of group.querySelectorAll("button")) b.disabled = busy || b.dataset.locked === "1";
}

/**
 * A button that asks for a confirmation in place before it acts: the first
 * click shows "sure?" with Yes and No; Yes runs `act`. `stamp()` names what
 * the question was about (e.g. the candidate's version): when it differs on
 * Yes, nothing is sent and the log asks to ask again. While `act` runs,
 * every button of `group` is disabled, so two actions on one thing never
 * run at once.
 */
function confirmButton(label, cls, question, act, group, stamp) {
  const box = el("span", "actions");
  const button = el("button", cls, label);
  button.type = "button";
  button.dataset.action = label.toLowerCase();
  button.addEventListener("click", () => {
    const asked = stamp();
    const q = el("span", "confirm", question() + " ");
    const yes = el("button", "danger", "Yes");
    yes.type = "button";
    yes.dataset.confirm = "yes";
    const no = el("button", "", "No");
    no.type = "button";
    no.dataset.confirm = "no";
    const restore = () => { q.remove(); button.hidden = false; };
    yes.addEventListener("click", async () => {
      const now = stamp();
      if (now !== asked) {
        log(label.toLowerCase() + ": " + asked + " changed to " + now + " since you were asked; ask again", false);
        restore();
        return;
      }
      setBusy(group, true);
      try {
        await act();
      } finally {
        restore();
        setBusy(group, false);
      }
    });
    no.addEventListener("click", restore);
    q.append(yes, " ", no);
    button.hidden = true;
    box.append(q);
  });
  box.append(button);
  return { box, button };
}

// ---- plugins -------------------------------------------------------------

const PLUGIN_FIELDS = ["name", "state", "version", "runtime", "events_per_s", "handled", "errors",
  "errors_per_s", "queue_depth", "p50_ms", "p99_ms", "restarts", "last_reload", "last_error"];
const pluginRows = new Map();

function pluginRow(name) {
  let row = pluginRows.get(name);
  if (row) return row;
  const tr = el("tr");
  tr.dataset.plugin = name;
  const cells = {};
  for (const f of PLUGIN_FIELDS) {
    const numeric = !["name", "state", "version", "runtime", "last_reload", "last_error"].includes(f);
    const td = el("td", numeric ? "num" : "");
    td.dataset.field = f;
    cells[f] = td;
    tr.append(td);
  }
  cells.name.classList.add("name");
  const badge = el("span", "badge");
  cells.state.append(badge);
  const details = el("details", "err");
  const summary = el("summary");
  const pre = el("pre");
  details.append(summary, pre);
  cells.last_error.append(details);
  row = { tr, cells, badge, details, summary, pre };
  pluginRows.set(name, row);
  return row;
}

/**
 * Puts `node` at index `i` among `parent`'s children, moving it only when it
 * is out of place: a moved node loses the selection and focus inside it.
 */
function placeAt(parent, node, i) {
  const here = parent.children[i];
  if (here !== node) parent.insertBefore(node, here || null);
}

/** Drops the entries of `map` not in `seen`, with their nodes. */
function dropUnseen(map, seen, node) {
  for (const [key, v] of map) {
    if (!seen.has(key)) { node(v).remove(); map.delete(key); }
  }
}

function byName(a, b) {
  return a.name < b.name ? -1 : a.name > b.name ? 1 : 0;
}

function renderPlugins(plugins) {
  const body = $("plugins").tBodies[0];
  const sorted = plugins.map((p) => Object.assign({}, p, { name: String(p.name) })).sort(byName);
  dropUnseen(pluginRows, new Set(sorted.map((p) => p.name)), (r) => r.tr);
  let i = 0;
  for (const p of sorted) {
    const name = p.name;
    const r = pluginRow(name);
    const c = r.cells;
    setText(c.name, name);
    setText(r.badge, p.state);
    r.badge.className = "badge badge-" + String(p.state).replace(/[^a-z_]/g, "");
    const title = p.enabled === false && p.state !== "disabled" ? "disabled" : "";
    if (r.badge.title !== title) r.badge.title = title;
    setText(c.version, p.version ?? "–");
    setText(c.runtime, p.runtime ?? "–");
    setText(c.events_per_s, fmtRate(p.events_per_s));
    setText(c.handled, p.handled ?? "–");
    setText(c.errors, p.errors ?? "–");
    c.errors.className = "num" + (p.errors ? " hot" : " zero");
    setText(c.errors_per_s, fmtRate(p.errors_per_s));
    c.errors_per_s.className = "num" + (p.errors_per_s > 0 ? " hot" : " zero");
    setText(c.queue_depth, p.queue_depth ?? "–");
    setText(c.p50_ms, fmtMs(p.p50_ms));
    setText(c.p99_ms, fmtMs(p.p99_ms));
    setText(c.restarts, p.restarts ?? "–");
    c.restarts.className = "num" + (p.restarts ? " hot" : " zero");
    const reload = p.last_reload;
    if (reload) {
      const ok = reload.result === "ok";
      setText(c.last_reload, fmtAgo(reload.at) + " " + (reload.version ?? "") + " " + (ok ? "ok" : "error"));
      c.last_reload.className = ok ? "" : "hot";
      c.last_reload.title = reload.at + (reload.error ? "\n" + reload.error : "");
    } else {
      setText(c.last_reload, "–");
      c.last_reload.className = "zero";
      c.last_reload.title = "";
    }
    if (p.last_error) {
      setText(r.summary, firstLine(p.last_error));
      setText(r.pre, p.last_error);
      r.summary.title = p.last_error;
      r.details.hidden = false;
    } else {
      r.details.hidden = true;
      r.details.open = false;
    }
    placeAt(body, r.tr, i++); // keeps the sorted order
  }
  $("no-plugins").hidden = plugins.length > 0;
}

// ---- rollouts ------------------------------------------------------------

const rolloutCards = new Map();

function rolloutCard(name) {
  let card = rolloutCards.get(name);
  if (card) return card;
  const box = el("div", "card");
  box.dataset.rollout = name;
  const title = el("h3", "", name);
  const versions = el("div", "versions");
  const counts = el("div", "counts");
  const count = {};
  for (const [key, label] of [["compared", "compared"], ["differed", "differed"], ["skipped", "skipped"],
    ["candidate_errors", "candidate errors"], ["handled_by_candidate", "by candidate"], ["percent", "percent"]]) {
    const c = el("div", "count", label);
    const b = el("b");
    b.dataset.count = key;
    c.prepend(b);
    counts.append(c);
    count[key] = { box: c, value: b };
  }
  card = { box, versions, count, rollout: null };
  // What a question was about: the rollout's two versions.
  const stamp = () => (card.rollout ? card.rollout.from + " → " + card.rollout.to : "no rollout");
  const promote = confirmButton("Promote", "primary",
    () => "Promote " + name + " to " + (card.rollout ? card.rollout.to : "the candidate") + "?",
    () => post("/plugins/" + encodeURIComponent(name) + "/promote", "promote " + name), box, stamp);
  const rollback = confirmButton("Rollback", "",
    () => "Roll " + name + " back to " + (card.rollout ? card.rollout.from : "the running version") + "?",
    () => post("/plugins/" + encodeURIComponent(name) + "/rollback", "rollback " + name), box, stamp);
  promote.button.dataset.plugin = name;
  rollback.button.dataset.plugin = name;
  const actions = el("div", "actions");
  actions.append(promote.box, rollback.box);
  box.append(title, versions, counts, actions);
  rolloutCards.set(name, card);
  return card;
}

function renderRollouts(plugins) {
  const holder = $("rollouts");
  const rolling = plugins.filter((p) => p.rollout).map((p) => Object.assign({}, p, { name: String(p.name) }));
  const seen = new Set(rolling.map((p) => p.name));
  dropUnseen(rolloutCards, seen, (c) => c.box);
  let i = 0;
  for (const p of rolling) {
    const ro = p.rollout;
    const name = p.name;
    const card = rolloutCard(name);
    card.rollout = ro;
    setText(card.versions, String(ro.strategy) + "  " + ro.from + " → " + ro.to);
    for (const key of Object.keys(card.count)) {
      const v = ro[key];
      const shown = key === "percent" ? (v == null ? "–" : v + "%") : (v ?? 0);
      setText(card.count[key].value, shown);
      card.count[key].box.classList.toggle("hot", (key === "differed" || key === "candidate_errors") && v > 0);
    }
    card.count.percent.box.hidden = ro.strategy !== "gradual";
    placeAt(holder, card.box, i++);
  }
  $("no-rollouts").hidden = seen.size > 0;
}

// ---- dead letters ----------------------------------------------------------

const deadRows = new Map();

function deadRow(d) {
  const id = String(d.id);
  let row = deadRows.get(id);
  if (row) return row;
  const tr = el("tr");
  tr.dataset.deadLetter = id;
  const at = el("td", "", fmtAgo(d.at));
  at.title = d.at;
  const plugin = el("td", "name", d.plugin);
  const topic = el("td", "mono", d.topic);
  const error = el("td", "error", firstLine(d.error));
  error.title = d.error;
  const attempts = el("td", "num", d.attempts);
  const action = el("td");
  const replay = confirmButton("Replay", "",
    () => "Replay " + (d.topic) + " to " + d.plugin + "?",
    () => post("/dead_letters/" + encodeURIComponent(id) + "/replay", "replay " + id + " to " + d.plugin),
    tr, () => id);
  replay.button.dataset.id = id;
  if (d.truncated) {
    replay.button.dataset.locked = "1";
    replay.button.disabled = true;
    replay.button.title = "kept truncated (over 1 MiB): cannot be replayed";
  }
  action.append(replay.box);
  tr.append(at, plugin, topic, error, attempts, action);
  row = { tr, at, d };
  deadRows.set(id, row);
  return row;
}

function renderDeadLetters(dl) {
  const body = $("dead-letters").tBodies[0];
  const recent = (dl && Array.isArray(dl.recent)) ? dl.recent : [];
  dropUnseen(deadRows, new Set(recent.map((d) => String(d.id))), (r) => r.tr);
  let i = 0;
  for (const d of recent) {
    const r = deadRow(d);
    setText(r.at, fmtAgo(d.at));
    placeAt(body, r.tr, i++); // newest first, as the host sends them
  }
  const counts = !dl ? "" : dl.total == null ? "(" + dl.kept + " kept)" : "(" + dl.kept + " kept, " + dl.total + " in all)";
  setText($("dl-counts"), counts);
  $("no-dead-letters").hidden = recent.length > 0;
}

// ---- the header ----------------------------------------------------------

function renderCluster(cluster) {
  const c = $("cluster");
  if (!cluster) { setText(c, "off"); c.title = "not clustered"; return; }
  const parts = [];
  if (cluster.state) parts.push(cluster.state);
  if (cluster.name) parts.push("as " + cluster.name);
  for (const key of ["exported", "imported", "dropped"]) {
    if (cluster[key] != null) parts.push(key + " " + cluster[key]);
  }
  setText(c, parts.length ? parts.join(" · ") : JSON.stringify(cluster));
  c.title = JSON.stringify(cluster);
}

function render(o) {
  const status = $("status");
  setText(status, o.status === "ok" ? "ok" : String(o.status).replace("_", " "));
  status.className = "badge badge-" + String(o.status).replace(/[^a-z_]/g, "");
  setText($("version"), o.version ? "v" + o.version : "");
  setText($("uptime"), fmtUptime(o.uptime_ms));
  const plugins = Array.isArray(o.plugins) ? o.plugins : [];
  setText($("plugin-count"), plugins.length);
  const total = plugins.reduce((s, p) => s + (typeof p.events_per_s === "number" ? p.events_per_s : 0), 0);
  setText($("total-rate"), fmtRate(total));
  renderCluster(o.cluster);
  renderPlugins(plugins);
  renderRollouts(plugins);
  renderDeadLetters(o.dead_letters);
  document.title = "plughost · " + (o.status === "ok" ? plugins.length + " plugins" : o.status);
}

// ---- the live feed -------------------------------------------------------

function setLink(up, text) {
  const link = $("link");
  setText(link, text);
  link.className = "link " + (up ? "link-up" : "link-down");
}

function notice(text) {
  const n = $("notice");
  n.hidden = !text;
  setText(n, text || "");
}

/** Forgets the token and goes back to the sign-in page. */
function signOut() {
  sessionStorage.removeItem(TOKEN_KEY);
  location.reload();
}

/**
 * A Server-Sent Events parser fed chunk by chunk: `push(text)` returns the
 * messages ({event, data}) completed by `text`. Only new text is normalised
 * and scanned (a `\r` ending a chunk waits for the next, which may start
 * with its `\n`); comments are skipped.
 */
function sseParser() {
  let text = "";   // normalised, not yet consumed
  let scanned = 0; // how far `text` holds no blank line
  let heldCR = false;
  return {
    push(chunk) {
      if (heldCR) { chunk = "\r" + chunk; heldCR = false; }
      if (chunk.endsWith("\r")) { chunk = chunk.slice(0, -1); heldCR = true; }
      text += chunk.replace(/\r\n?/g, "\n");
      const messages = [];
      let start = 0;
      let end;
      while ((end = text.indexOf("\n\n", Math.max(start, scanned - 1))) >= 0) {
        const block = text.slice(start, end);
        start = end + 2;
        let event = "message";
        const data = [];
        for (const line of block.split("\n")) {
          if (line === "" || line.startsWith(":")) continue;
          const colon = line.indexOf(":");
          const field = colon < 0 ? line : line.slice(0, colon);
          let value = colon < 0 ? "" : line.slice(colon + 1);
          if (value.startsWith(" ")) value = value.slice(1);
          if (field === "event") event = value;
          else if (field === "data") data.push(value);
        }
        if (data.length) messages.push({ event, data: data.join("\n") });
      }
      if (start > 0) text = text.slice(start);
      scanned = text.length;
      return messages;
    },
  };
}

/** Shows the newest of `messages`' snapshots; false when there was none. */
function showLatest(messages) {
  let latest = null;
  for (const m of messages) if (m.event === "overview") latest = m;
  if (!latest) return false;
  try {
    render(JSON.parse(latest.data));
    notice("");
  } catch (e) {
    // One bad snapshot is shown as such; the feed goes on.
    notice("Could not show the host's latest snapshot: " + e.message);
  }
  return true;
}

/**
 * Reads one connection to GET /overview/stream until it ends, fails, or
 * stays silent for STALL_MS (then it is aborted); calls `onSnapshot` after
 * each snapshot shown. Always leaves the connection closed.
 */
async function readFeed(onSnapshot) {
  const abort = new AbortController();
  let reader = null;
  let stalled = false;
  let timer = 0;
  const watch = () => {
    clearTimeout(timer);
    timer = setTimeout(() => {
      stalled = true;
      abort.abort();
      if (reader) reader.cancel().catch(() => {});
    }, STALL_MS);
  };
  watch();
  try {
    const r = await fetch("/overview/stream", {
      headers: Object.assign({ Accept: "text/event-stream" }, authHeaders()),
      cache: "no-store",
      signal: abort.signal,
    });
    if (r.status === 401) return "signed out";
    if (!r.ok || !r.body) throw new Error("GET /overview/stream answered " + r.status);
    reader = r.body.getReader();
    const decoder = new TextDecoder();
    const parser = sseParser();
    for (;;) {
      const { value, done } = await reader.read();
      if (stalled) break;
      if (done) throw new Error("the host closed the feed");
      watch();
      if (showLatest(parser.push(decoder.decode(value, { stream: true })))) onSnapshot();
    }
  } catch (e) {
    if (!stalled) throw e;
  } finally {
    clearTimeout(timer);
    abort.abort();
    if (reader) reader.cancel().catch(() => {});
  }
  throw new Error("no data for " + STALL_MS / 1000 + " s");
}

async function follow() {
  let backoff = BACKOFF_MIN_MS;
  for (;;) {
    try {
      const ended = await readFeed(() => {
        setLink(true, "live");
        backoff = BACKOFF_MIN_MS;
      });
      if (ended === "signed out") { signOut(); return; }
    } catch (e) {
      setLink(false, "reconnecting");
      notice("Not connected to the host (" + e.message + "); retrying in " + (backoff / 1000) + " s.");
    }
    await new Promise((resolve) => setTimeout(resolve, backoff));
    backoff = Math.min(backoff * 2, BACKOFF_MAX_MS);
  }
}

follow();
})();
