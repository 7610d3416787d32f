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
    retrainingUrl: file.retrainingUrl || null, // local demo only: the retraining runs on the replay clock
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
  const signedPct = (v, digits = 2) => (v === null || v === undefined ? "–" : `${v > 0 ? "+" : ""}${Number(v).toFixed(digits)}%`);
  const resultClass = (v) => (v === null || v === undefined ? "" : v > 0 ? "gain" : v < 0 ? "loss" : "");
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

  // Why a signal is paper, in words (the codes are PaperReason's).
  const PAPER_WORDS = {
    negative_expected_value: "expected value below the minimum",
    no_proven_edge: "no proven edge (out-of-sample evidence missing or not above zero)",
    protection_stoploss_guard: "market locked after a run of stops",
    protection_low_profit: "market locked for low recent profit",
  };
  // A signal stored before the edge gate has no `tradeable`: it was published as tradeable.
  const isPaper = (s) => s.tradeable === false;

  function kindCell(s) {
    const td = el("td", { "data-field": "kind" });
    const reasons = (s.paper_reasons || []).map((r) => PAPER_WORDS[r] || r);
    const badge = isPaper(s)
      ? el("span", { class: "kind kind-paper", title: `paper, not a trade: ${reasons.join("; ") || "no reason given"}` }, "PAPER")
      : el("span", { class: "kind kind-tradeable", title: s.tradeable ? "passed the EV filter, the edge gate and the protections"
        : "stored before the edge gate existed" }, "tradeable");
    td.appendChild(badge);
    return td;
  }

  function row(s, fresh) {
    const tr = el("tr", { "data-signal-id": s.signal_id, "data-status": s.status, title: s.signal_id,
      "data-tradeable": isPaper(s) ? "false" : "true" });
    tr.className = [fresh ? "fresh" : "", isPaper(s) ? "paper" : ""].filter(Boolean).join(" ");
    const stop = s.outcome_probabilities ? s.outcome_probabilities.stop : null;
    tr.appendChild(el("td", { "data-field": "symbol" }, s.symbol));
    tr.appendChild(el("td", { class: `side-${s.side}`, "data-field": "side" }, s.side));
    tr.appendChild(kindCell(s));
    // The page leads with what the signal is worth in expectation and how likely its stop is.
    tr.appendChild(el("td", { class: `num ev ${resultClass(s.expected_value_pct)}`, "data-field": "ev",
      title: "expected value: Σ P(outcome) × payoff − costs, % of notional" }, signedPct(s.expected_value_pct)));
    tr.appendChild(el("td", { class: "num", "data-field": "p_stop", title: "probability the stop is hit before TP1" },
      stop === null || stop === undefined ? "–" : pct(stop * 100, 0)));
    const cells = [
      ["entry", price(s.entry_price), "num"],
      ["tp1", price(s.tp1_price), "num"],
      ["tp2", price(s.tp2_price), "num"],
      ["tp3", price(s.tp3_price), "num"],
      ["sl", price(s.sl_price), "num"],
      ["leverage", `${s.leverage}×`, "num"],
      ["best_case", signedPct(s.expected_net_profit_pct), "num best"],
      ["confidence", pct(s.confidence * 100, 1), "num"],
    ];
    for (const [field, text, cls] of cells) tr.appendChild(el("td", { class: cls, "data-field": field }, text));
    tr.querySelector('[data-field="best_case"]').title = "best case: the net profit if every target fills (not an expectation)";
    const status = el("td", { "data-field": "status" });
    status.appendChild(el("span", { class: `status status-${s.status}` }, s.status));
    tr.appendChild(status);
    const result = s.realised_net_pct === null || s.realised_net_pct === undefined ? "–" : signedPct(s.realised_net_pct);
    tr.appendChild(el("td", { class: `num ${resultClass(s.realised_net_pct)}`, "data-field": "realised",
      title: "realised net after costs (exits so far)" }, result));
    tr.addEventListener("click", () => openChart(s.signal_id));
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
      renderReasonCounts({ ...status.rejected, ...(status.market_failures || {}) }); // model_expired & co. too
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

  async function pollRetraining() {
    if (!config.retrainingUrl) return;
    try {
      const page = await (await fetch(config.retrainingUrl)).json();
      $("retraining").hidden = false;
      $("retraining-empty").hidden = page.runs.length > 0;
      $("retraining-runs").replaceChildren(...page.runs.flatMap((run) => (run.error && !run.records.length
        ? [{ symbol: "all markets", outcome: "failed", reasons: [`${run.error.Error}: ${run.error.Cause}`] }]
        : run.records).map((r) => {
        const li = el("li", { "data-outcome": r.outcome });
        const when = el("span", { class: "when" }, `${run.time.replace("T", " ").replace(":00Z", " UTC")} · ${r.symbol}`);
        when.appendChild(el("span", { class: "code" }, r.outcome));
        li.appendChild(when);
        const figures = r.challenger_log_loss == null ? "" : ` log loss ${r.challenger_log_loss.toFixed(4)} vs `
          + `${r.champion_log_loss.toFixed(4)}, Brier ${r.challenger_brier.toFixed(4)} vs ${r.champion_brier.toFixed(4)}`
          + ` (challenger vs ${r.champion_reference || "champion"}, ${r.rows} unseen rows).`;
        li.appendChild(document.createTextNode(`serving ${r.serving_model_id || "–"}.${figures} ${(r.reasons || []).join("; ")}`));
        return li;
      })));
    } catch (error) {
      console.warn("retraining", error);
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

  // ---------------------------------------------------------------- track record (GET /performance)

  const LC = () => window.LightweightCharts;
  const chartTheme = {
    layout: { background: { color: "#161c23" }, textColor: "#8a96a3" },
    grid: { vertLines: { color: "#1e252e" }, horzLines: { color: "#1e252e" } },
    timeScale: { timeVisible: true, secondsVisible: false, borderColor: "#242c36" },
    rightPriceScale: { borderColor: "#242c36" },
  };
  const track = { window: "30d", group: "tradeable", report: null, chart: null, series: null, points: 0 };
  window.traderaiCharts = track; // read by the browser tests: the drawn series and their coordinates

  const figure = (name, label, value, text, hint) => {
    const box = el("div", { "data-figure": name, "data-value": value === null || value === undefined ? "" : String(value) });
    box.appendChild(el("b", {}, text));
    box.appendChild(el("span", {}, label));
    if (hint) box.title = hint;
    return box;
  };
  const hours = (h) => (h === null || h === undefined ? "–" : h >= 48 ? `${(h / 24).toFixed(1)} d` : `${h.toFixed(1)} h`);
  const number = (v, digits = 2) => (v === null || v === undefined ? "–" : Number(v).toFixed(digits));

  async function loadTrack() {
    const response = await fetch(`${config.apiUrl}/performance?window=${track.window}`, { headers: authHeaders() });
    if (response.status === 401 || response.status === 403) return;
    if (!response.ok) throw new Error(`GET /performance: HTTP ${response.status}`);
    track.report = await response.json();
    renderTrack();
  }

  function renderLocks(locks) {
    $("no-locks").hidden = locks.length > 0;
    $("locks").replaceChildren(...locks.map((lock) => {
      const li = el("li", { "data-symbol": lock.symbol, "data-protection": lock.protection });
      const when = el("span", { class: "when" }, `${lock.symbol} · until ${lock.until.replace("T", " ").replace(":00Z", " UTC")}`);
      when.appendChild(el("span", { class: "code" }, lock.protection));
      li.appendChild(when);
      li.appendChild(document.createTextNode(lock.message));
      return li;
    }));
  }

  function renderTrack() {
    const report = track.report;
    if (!report) return;
    renderLocks(report.locks || []);
    const group = report[track.group];
    const s = group.overall;
    const d = report.definitions || {};
    $("track-window-text").textContent = `${report.since ? report.since.slice(0, 16).replace("T", " ") : "the first signal"} → `
      + `${report.until.slice(0, 16).replace("T", " ")} UTC (signals created in the window)${report.truncated ? " · truncated" : ""}`;
    const priced = s.closed - s.unpriced;
    const empty = $("track-empty");
    empty.hidden = priced > 0;
    if (s.signals === 0) {
      empty.textContent = report.overall.signals === 0
        ? "No signals in this window yet. Most candles are rejected (see “Why no signals?”); a track record starts with the first accepted signal."
        : `No ${track.group} signals in this window (${report.overall.signals} ${track.group === "paper" ? "tradeable" : "paper"} ones).`;
    } else if (priced === 0) {
      empty.textContent = `${s.signals} signal${s.signals === 1 ? "" : "s"} in this window, none closed yet: a signal closes at TP3, `
        + "its stop or its expiry, and only closed ones count.";
    }
    const ex = s.exits;
    $("track-figures").replaceChildren(
      figure("closed", "closed signals", s.closed, `${s.closed}`, `${s.open} still open; ${s.unpriced} closed without market data (not in the figures)`),
      figure("win_rate", "win rate", s.win_rate, s.win_rate === null ? "–" : pct(s.win_rate * 100, 1), d.win_rate),
      figure("avg_realised_net_pct", "avg net / signal", s.avg_realised_net_pct, signedPct(s.avg_realised_net_pct), d.avg_realised_net_pct),
      figure("expectancy_r", "expectancy (R)", s.expectancy_r, number(s.expectancy_r), d.expectancy_r),
      figure("profit_factor", "profit factor", s.profit_factor, s.profit_factor === null ? (s.wins ? "no loss" : "–") : number(s.profit_factor), d.profit_factor),
      figure("max_drawdown_pct", "max drawdown", s.max_drawdown_pct, pct(s.max_drawdown_pct), d.max_drawdown_pct),
      figure("total_realised_net_pct", "total net", s.total_realised_net_pct, signedPct(s.total_realised_net_pct), "sum of realised net %, same notional per signal"),
      figure("avg_time_in_trade_hours", "avg time in trade", s.avg_time_in_trade_hours, hours(s.avg_time_in_trade_hours)),
      figure("exits", "exits TP1 / TP2 / TP3 / stop / expiry", null, `${ex.tp1} / ${ex.tp2} / ${ex.tp3} / ${ex.stop} / ${ex.expiry}`,
        "closed signals that took profit at TP1, TP2, TP3; whose rest left at the stop; at expiry"),
    );
    $("track-definitions").textContent = `Win: realised net > 0 after costs. ${d.expectancy_pct || ""}. ${d.max_drawdown_pct || ""}.`;
    const markets = Object.entries(group.by_symbol);
    $("track-market-rows").replaceChildren(...markets.map(([symbol, m]) => {
      const tr = el("tr", { "data-symbol": symbol });
      for (const [field, text] of [["symbol", symbol], ["signals", String(m.signals)], ["closed", String(m.closed)],
        ["win_rate", m.win_rate === null ? "–" : pct(m.win_rate * 100, 1)], ["avg", signedPct(m.avg_realised_net_pct)],
        ["profit_factor", m.profit_factor === null ? "–" : number(m.profit_factor)], ["max_dd", pct(m.max_drawdown_pct)]]) {
        tr.appendChild(el("td", { class: field === "symbol" ? "" : "num", "data-field": field }, text));
      }
      return tr;
    }));
    drawEquity(group.equity_curve);
  }

  function drawEquity(curve) {
    const box = $("equity-chart");
    // one point per close time (several signals closing together: the last cumulative value of that second)
    const byTime = new Map();
    for (const p of curve) byTime.set(Math.floor(Date.parse(p.closed_at) / 1000), p.cumulative_net_pct);
    const data = [...byTime.entries()].sort((a, b) => a[0] - b[0]).map(([time, value]) => ({ time, value }));
    $("equity-empty").hidden = data.length > 0;
    box.hidden = data.length === 0;
    if (!LC() || data.length === 0) return;
    if (!track.chart) {
      track.chart = LC().createChart(box, { ...chartTheme, height: 220, autoSize: true });
      track.series = track.chart.addBaselineSeries({ baseValue: { type: "price", price: 0 }, lineWidth: 2,
        topLineColor: "#2ebd85", bottomLineColor: "#f6465d",
        topFillColor1: "rgba(46,189,133,0.25)", topFillColor2: "rgba(46,189,133,0.02)",
        bottomFillColor1: "rgba(246,70,93,0.02)", bottomFillColor2: "rgba(246,70,93,0.25)",
        priceFormat: { type: "custom", formatter: (v) => `${v.toFixed(2)}%` } });
    }
    track.series.setData(data);
    track.points = data.length;
    box.dataset.points = String(data.length);
    box.dataset.last = String(data[data.length - 1].value);
    track.chart.timeScale().fitContent();
  }

  for (const button of document.querySelectorAll("#track-window button")) {
    button.addEventListener("click", () => {
      track.window = button.dataset.window;
      for (const b of document.querySelectorAll("#track-window button")) b.classList.toggle("on", b === button);
      loadTrack().catch(console.error);
    });
  }
  for (const button of document.querySelectorAll("#track-group button")) {
    button.addEventListener("click", () => {
      track.group = button.dataset.group;
      for (const b of document.querySelectorAll("#track-group button")) b.classList.toggle("on", b === button);
      renderTrack();
    });
  }

  // ---------------------------------------------------------------- a signal's chart (GET /signals/{id}/candles)

  const LINES = { entry: ["#3d8bfd", "entry"], tp1: ["#7fd6a4", "TP1"], tp2: ["#2ebd85", "TP2"], tp3: ["#14865a", "TP3"],
    stop: ["#f6465d", "stop"] };
  const MARKS = { entry: ["#3d8bfd", "arrowUp", "entry"], tp1: ["#7fd6a4", "circle", "TP1"], tp2: ["#2ebd85", "circle", "TP2"],
    tp3: ["#14865a", "circle", "TP3"], stop: ["#f6465d", "square", "stop"], expiry: ["#8a96a3", "square", "expiry"] };
  const signalChart = { chart: null, series: null, lines: [], signalId: null, data: null };
  window.traderaiSignalChart = signalChart; // read by the browser tests

  async function openChart(signalId) {
    signalChart.signalId = signalId;
    const panel = $("chart-panel");
    panel.hidden = false;
    panel.dataset.state = "loading";
    $("chart-error").hidden = true;
    const signal = signals.get(signalId);
    $("chart-title").textContent = signal ? `${signal.symbol} ${signal.side} · ${signal.status}` : signalId;
    $("chart-result").textContent = "loading candles…";
    panel.scrollIntoView({ block: "nearest" });
    let chart;
    try {
      const response = await fetch(`${config.apiUrl}/signals/${encodeURIComponent(signalId)}/candles`, { headers: authHeaders() });
      chart = await response.json();
      if (!response.ok) throw new Error(chart.message || `HTTP ${response.status}`);
    } catch (error) {
      if (signalChart.signalId !== signalId) return;
      panel.dataset.state = "error";
      $("chart-result").textContent = "";
      $("chart-error").hidden = false;
      $("chart-error").textContent = `No chart: ${error.message}`;
      return;
    }
    if (signalChart.signalId !== signalId) return; // another signal was opened meanwhile
    drawSignal(chart);
  }

  function drawSignal(chart) {
    signalChart.data = chart;
    const closed = ["TP3_HIT", "STOPPED", "EXPIRED"].includes(chart.status);
    $("chart-title").textContent = `${chart.symbol} ${chart.side} · ${chart.status}`;
    $("chart-result").textContent = chart.realised_net_pct === null
      ? `${chart.candles.length} ${chart.timeframe} candles (${chart.source})`
      : `${closed ? "realised" : "realised so far"} ${signedPct(chart.realised_net_pct)} after costs`
        + (chart.closed_reason ? ` (${chart.closed_reason.replaceAll("_", " ")})` : "")
        + ` · ${chart.candles.length} ${chart.timeframe} candles (${chart.source})`;
    $("chart-legend").textContent = Object.entries(chart.levels).map(([k, v]) => `${LINES[k][1]} ${price(v)}`).join(" · ");
    const box = $("signal-chart");
    if (!LC()) return;
    if (!signalChart.chart) {
      signalChart.chart = LC().createChart(box, { ...chartTheme, height: 360, autoSize: true });
      signalChart.series = signalChart.chart.addCandlestickSeries({ upColor: "#2ebd85", downColor: "#f6465d",
        wickUpColor: "#2ebd85", wickDownColor: "#f6465d", borderVisible: false });
    }
    const series = signalChart.series;
    for (const line of signalChart.lines) series.removePriceLine(line);
    const step = chart.levels.entry >= 100 ? 0.01 : chart.levels.entry >= 1 ? 0.0001 : 0.000001;
    series.applyOptions({ priceFormat: { type: "price", precision: Math.max(0, -Math.log10(step)), minMove: step } });
    series.setData(chart.candles);
    signalChart.lines = Object.entries(chart.levels).map(([kind, value]) => series.createPriceLine({
      price: value, color: LINES[kind][0], lineWidth: 2, lineStyle: 0, axisLabelVisible: true, title: LINES[kind][1] }));
    series.setMarkers(chart.marks.map((m) => ({ time: m.candle_time, position: m.kind === "entry" ? "belowBar" : "aboveBar",
      color: MARKS[m.kind][0], shape: MARKS[m.kind][1], text: MARKS[m.kind][2] })).sort((a, b) => a.time - b.time));
    signalChart.chart.timeScale().fitContent();
    $("chart-panel").dataset.state = "drawn";
  }

  $("chart-close").addEventListener("click", () => {
    $("chart-panel").hidden = true;
    signalChart.signalId = null;
  });

  showEndpoints();
  loadTrack().catch(console.error);
  setInterval(() => loadTrack().catch(console.error), config.statusUrl ? 3000 : 60000); // locally the replay runs 300x
  pollStatus().then(tickClock);
  loadSignals().catch((error) => console.error(error));
  connect();
  pollDecisions();
  setInterval(pollStatus, 2000);
  setInterval(pollDecisions, 3000);
  pollRetraining();
  setInterval(pollRetraining, 5000);
  setInterval(tickClock, 1000);
})();
