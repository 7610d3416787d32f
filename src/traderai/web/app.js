// TraderAI live page: GET /signals for the first view, then the WebSocket keeps it current.
// No build step, no framework. Configuration (in this order): ?api=&ws=&key= in the page URL,
// window.TRADERAI_CONFIG (config.js, which the local gateway serves), then same-origin defaults.
"use strict";

(() => {
  const params = new URLSearchParams(location.search);
  const file = window.TRADERAI_CONFIG || {};
  // An endpoint from the page URL must be http(s)/ws(s): a `javascript:` one would become a live link.
  const endpoint = (text, schemes) => {
    try {
      const url = new URL(text);
      return schemes.includes(url.protocol) ? url.href.replace(/\/$/, "") : null;
    } catch {
      return null;
    }
  };
  const apiUrl = (endpoint(params.get("api"), ["http:", "https:"]) || file.apiUrl || location.origin).replace(/\/$/, "");
  const wsUrl = endpoint(params.get("ws"), ["ws:", "wss:"]) || file.wsUrl || location.origin.replace(/^http/, "ws");
  // A key goes only to the APIs it was given for: config.js's key to config.js's endpoints, a typed key to
  // the endpoints it was typed for. Else a link like ?api=https://elsewhere would collect it.
  const fromFile = apiUrl === (file.apiUrl || location.origin).replace(/\/$/, "")
    && wsUrl === (file.wsUrl || location.origin.replace(/^http/, "ws"));
  const storedKeyName = `traderai.apiKey ${apiUrl} ${wsUrl}`;
  const config = {
    apiUrl,
    wsUrl,
    apiKey: params.get("key") || sessionStorage.getItem(storedKeyName) || (fromFile ? file.apiKey : null) || null,
    statusUrl: file.statusUrl || null,     // local demo only: the replay clock and totals
    decisionsUrl: file.decisionsUrl || null, // local demo only: the S3 decision log
  };

  const $ = (id) => document.getElementById(id);
  const signals = new Map(); // signal_id -> signal
  let clockBase = null;      // {replay: ms, wall: ms, speed}: the page's notion of "now" on the replay clock

  // ---------------------------------------------------------------- formatting

  const price = (v) => {
    if (v === null || v === undefined) return "–";
    const digits = v >= 1000 ? 2 : v >= 10 ? 3 : v >= 1 ? 4 : 6;
    return Number(v).toLocaleString("en-US", { minimumFractionDigits: digits, maximumFractionDigits: digits });
  };
  const pct = (v, digits = 2) => (v === null || v === undefined ? "–" : `${Number(v).toFixed(digits)}%`);
  const now = () => {
    if (!clockBase) return Date.now();
    return clockBase.replay + (Date.now() - clockBase.wall) * clockBase.speed;
  };
  const age = (iso) => {
    const seconds = Math.max(0, (now() - Date.parse(iso)) / 1000);
    if (seconds < 60) return `${Math.floor(seconds)}s`;
    if (seconds < 3600) return `${Math.floor(seconds / 60)}m`;
    if (seconds < 86400) return `${Math.floor(seconds / 3600)}h ${Math.floor((seconds % 3600) / 60)}m`;
    return `${Math.floor(seconds / 86400)}d`;
  };
  const el = (tag, attrs = {}, text = "") => {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
    if (text !== "") node.textContent = text;
    return node;
  };

  // ---------------------------------------------------------------- signals table

  function upsert(signal, fresh) {
    const known = signals.get(signal.signal_id);
    if (known && known.updated_at && signal.updated_at && signal.updated_at < known.updated_at) return;
    signals.set(signal.signal_id, { ...known, ...signal });
    render(fresh ? signal.signal_id : null);
  }

  function render(freshId) {
    const body = $("signal-rows");
    const rows = [...signals.values()].sort((a, b) => (a.created_at < b.created_at ? 1 : -1)).slice(0, 200);
    body.replaceChildren(...rows.map((s) => row(s, s.signal_id === freshId)));
    $("no-signals").hidden = rows.length > 0;
    $("stat-signals").textContent = String(signals.size);
  }

  function row(s, fresh) {
    const tr = el("tr", { "data-signal-id": s.signal_id, "data-status": s.status, title: s.signal_id });
    if (fresh) tr.className = "fresh";
    const cells = [
      ["symbol", s.symbol, ""],
      ["side", s.side, `side-${s.side}`],
      ["entry", price(s.entry_price), "num"],
      ["tp1", price(s.tp1_price), "num"],
      ["tp2", price(s.tp2_price), "num"],
      ["tp3", price(s.tp3_price), "num"],
      ["sl", price(s.sl_price), "num"],
      ["leverage", `${s.leverage}×`, "num"],
      ["net", pct(s.expected_net_profit_pct), "num"],
      ["confidence", pct(s.confidence * 100, 1), "num"],
    ];
    for (const [field, text, cls] of cells) tr.appendChild(el("td", { class: cls, "data-field": field }, text));
    const status = el("td", { "data-field": "status" });
    status.appendChild(el("span", { class: `status status-${s.status}` }, s.status));
    tr.appendChild(status);
    tr.appendChild(el("td", { class: "num age", "data-field": "age", "data-created": s.created_at }, age(s.created_at)));
    return tr;
  }

  function refreshAges() {
    for (const cell of document.querySelectorAll("td.age")) cell.textContent = age(cell.dataset.created);
  }

  // ---------------------------------------------------------------- HTTP API

  const authHeaders = () => (config.apiKey ? { Authorization: `Bearer ${config.apiKey}` } : {});

  async function loadSignals() {
    const response = await fetch(`${config.apiUrl}/signals?limit=100`, { headers: authHeaders() });
    if (response.status === 401 || response.status === 403) {
      askForKey(response.status === 401 ? "This API needs a key." : "The key was refused.");
      return;
    }
    if (!response.ok) throw new Error(`GET /signals: HTTP ${response.status}`);
    const page = await response.json();
    for (const signal of page.items || []) upsert(signal, false);
  }

  function askForKey(message) {
    $("keybox").hidden = false;
    $("keyinput").placeholder = message;
  }

  $("keysave").addEventListener("click", () => {
    const key = $("keyinput").value.trim();
    if (!key) return;
    sessionStorage.setItem(storedKeyName, key);
    config.apiKey = key;
    $("keybox").hidden = true;
    loadSignals().catch(console.error);
    reconnect(0);
  });

  // ---------------------------------------------------------------- WebSocket

  let socket = null;
  let retry = 0;
  let pingTimer = null;

  function setState(state, text) {
    const node = $("conn");
    node.dataset.state = state;
    node.className = `conn conn-${state}`;
    node.textContent = text;
  }

  function connect() {
    const url = new URL(config.wsUrl);
    if (config.apiKey) url.searchParams.set("api_key", config.apiKey);
    setState("connecting", "connecting…");
    const current = new WebSocket(url);
    let openedAt = null;
    socket = current;
    socket.addEventListener("open", () => {
      openedAt = Date.now();
      setState("open", "live");
      socket.send(JSON.stringify({ action: "subscribe", id: "page" }));
      clearInterval(pingTimer);
      pingTimer = setInterval(() => socket.readyState === 1 && socket.send(JSON.stringify({ action: "ping" })), 30000);
    });
    socket.addEventListener("message", (event) => {
      let message;
      try { message = JSON.parse(event.data); } catch { return; }
      if (message.type === "signal") upsert(message.data, true);
      else if (message.type === "signal_update") upsert(message.data, true);
      else if (message.type === "error") console.warn("WebSocket error message", message);
    });
    socket.addEventListener("close", () => {
      if (current !== socket) return; // a socket already replaced (a new key): its successor is running
      clearInterval(pingTimer);
      setState("closed", "disconnected · retrying");
      // Back off unless the connection lived a while: a server that accepts and drops at once must not get
      // a reconnect (and a GET /signals) every half second; jitter spreads clients dropped together.
      if (openedAt !== null && Date.now() - openedAt > 10000) retry = 0;
      const delay = Math.min(30000, 500 * 2 ** retry++);
      reconnect(delay / 2 + Math.random() * (delay / 2));
    });
    socket.addEventListener("error", () => setState("error", "connection error"));
  }

  let reconnectTimer = null;
  function reconnect(delay) {
    clearTimeout(reconnectTimer);
    if (socket && socket.readyState <= 1 && delay === 0) socket.close();
    reconnectTimer = setTimeout(() => {
      if (!socket || socket.readyState >= 2) {
        connect();
        loadSignals().catch(console.error); // catch up on what was pushed while disconnected
      }
    }, delay);
  }

  // ---------------------------------------------------------------- local demo: clock, totals, decisions

  async function pollStatus() {
    if (!config.statusUrl) return;
    try {
      const status = await (await fetch(config.statusUrl)).json();
      clockBase = { replay: Date.parse(status.replay_time), wall: Date.now(), speed: status.speed, mode: status.mode };
      $("stat-ticks").textContent = status.ticks;
      $("stat-predictions").textContent = status.predictions;
      $("stat-accepted").textContent = status.accepted;
      $("stat-rejected").textContent = Object.values(status.rejected).reduce((a, b) => a + b, 0);
      renderReasonCounts(status.rejected);
    } catch (error) {
      console.warn("status", error);
    }
  }

  function renderReasonCounts(rejected) {
    const entries = Object.entries(rejected).sort((a, b) => b[1] - a[1]);
    $("reason-counts").replaceChildren(...entries.map(([reason, count]) => {
      const chip = el("span", { class: "reason", "data-reason": reason }, reason);
      chip.appendChild(el("b", {}, String(count)));
      return chip;
    }));
  }

  async function pollDecisions() {
    if (!config.decisionsUrl) {
      $("why-unavailable").hidden = false;
      return;
    }
    try {
      const page = await (await fetch(`${config.decisionsUrl}?rejected=1&limit=40`)).json();
      $("rejections").replaceChildren(...page.items.map((d) => {
        const li = el("li", { "data-reason": d.reason || "" });
        const when = el("span", { class: "when" }, `${d.candle_time.replace("T", " ").replace(":00Z", " UTC")} · ${d.symbol}`);
        when.appendChild(el("span", { class: "code" }, (d.reasons || [d.reason]).join(", ")));
        li.appendChild(when);
        li.appendChild(document.createTextNode(d.message));
        return li;
      }));
    } catch (error) {
      console.warn("decisions", error);
    }
  }

  function showEndpoints() {
    const links = [["HTTP API", `${config.apiUrl}/signals`], ["OpenAPI", `${config.apiUrl}/openapi.json`]];
    const footer = $("endpoints");
    footer.replaceChildren(...links.flatMap(([label, href]) => [el("a", { href }, label), document.createTextNode(" · ")]));
    footer.appendChild(document.createTextNode(`WebSocket ${config.wsUrl}`));
  }

  function tickClock() {
    if (clockBase) $("clock").textContent = new Date(now()).toISOString().slice(0, 16).replace("T", " ") + ` UTC (${clockBase.mode})`;
    refreshAges();
  }

  showEndpoints();
  pollStatus().then(tickClock);
  loadSignals().catch((error) => console.error(error));
  connect();
  pollDecisions();
  setInterval(pollStatus, 2000);
  setInterval(pollDecisions, 3000);
  setInterval(tickClock, 1000);
})();
