// The Eddy dashboard: polls /dashboard/api/state every second and redraws.
// No framework, no build step (docs/monitoring.md#web-dashboard).
"use strict";
(function () {
  const POLL_MS = 1000, HISTORY_MS = 15 * 60 * 1000;
  const $ = (id) => document.getElementById(id);
  let token = sessionStorage.getItem("eddy-token") || "";
  let since = 0, last = null, sortKey = null, sortAsc = false, timer = null;
  const series = { t: [], in: [], out: [], lag: [], e2e_p99_ms: [], dlq: [] };

  function el(tag, attrs, ...kids) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === "class") e.className = v; else if (k === "text") e.textContent = v; else e.setAttribute(k, v);
    }
    for (const k of kids) e.append(k);
    return e;
  }
  const fmtN = (n) => (n === undefined || n === null) ? "" : Number(n).toLocaleString("en-US", { maximumFractionDigits: 1 });
  function fmtDur(s) {
    if (!(s >= 0)) return "";
    if (s < 60) return Math.round(s) + "s";
    if (s < 3600) return Math.floor(s / 60) + "m" + String(Math.floor(s % 60)).padStart(2, "0") + "s";
    if (s < 86400) return Math.floor(s / 3600) + "h" + String(Math.floor(s % 3600 / 60)).padStart(2, "0") + "m";
    return Math.floor(s / 86400) + "d" + Math.floor(s % 86400 / 3600) + "h";
  }
  const fmtMS = (v) => v ? (v >= 1000 ? (v / 1000).toFixed(2) + " s" : v.toFixed(1) + " ms") : "";
  const fmtTime = (ms) => new Date(ms).toLocaleTimeString();
  function td(text, cls) { return el("td", { class: cls || "", text: text === undefined ? "" : String(text) }); }
  function fill(tbody, rows) { tbody.replaceChildren(...rows); }

  function headers() { return token ? { Authorization: "Bearer " + token } : {}; }
  async function api(path, opts) {
    const r = await fetch(path, Object.assign({ headers: headers(), cache: "no-store" }, opts || {}));
    let body = null;
    try { body = await r.json(); } catch (e) { body = { error: r.status + " " + r.statusText }; }
    return { ok: r.ok, status: r.status, body };
  }

  function notice(msg) { const n = $("notice"); n.textContent = msg || ""; n.hidden = !msg; }

  // The token box: shown when the worker has a token and this connection
  // may send one (TLS or loopback).
  function showAuth(auth) {
    const form = $("token-form");
    const wanted = auth.token_configured && auth.token_allowed && !auth.token_ok;
    form.hidden = !wanted;
    $("token-label").textContent = auth.protect_reads ? "Token (reads are protected)" : "Token (to pause and resume)";
    $("controls").hidden = !(auth.token_configured && auth.token_ok);
  }

  async function poll() {
    try {
      const r = await api("/dashboard/api/state?since=" + since);
      if (!r.ok) {
        const auth = r.body.auth || {};
        if (r.status === 401 && token) { token = ""; sessionStorage.removeItem("eddy-token"); }
        showAuth(auth);
        if (auth.protect_reads && !auth.token_allowed) notice("Reads are protected and a token is accepted only over TLS or on loopback: this page cannot show anything here.");
        else notice(r.body.error);
        return;
      }
      render(r.body);
      notice("");
    } catch (e) {
      notice("the worker does not answer: " + e.message);
      $("worker-state").textContent = "unreachable"; $("worker-state").className = "badge err";
    } finally {
      timer = setTimeout(poll, POLL_MS);
    }
  }

  function render(s) {
    last = s;
    showAuth(s.auth);
    document.title = s.app + " · Eddy";
    $("app-name").textContent = s.app;
    const ws = $("worker-state"); ws.textContent = s.worker.state; ws.className = "badge " + s.worker.state;
    $("meta").textContent = "worker " + s.worker.id + " · " + s.worker.version + " · up " + fmtDur(s.worker.uptime_s) +
      " · " + s.worker.guarantee + " · updated " + fmtTime(s.now);
    const errs = s.errors || [];
    $("errors-card").hidden = errs.length === 0;
    $("errors").replaceChildren(...errs.map((e) => el("li", { text: e })));

    fill($("workers").tBodies[0], s.workers.map((w) => {
      const addr = w.http ? el("a", { href: "http://" + w.http + "/", text: w.addr }) : document.createTextNode(w.addr);
      const tr = el("tr", { "data-worker": w.id }, td(w.id + (w.self ? " (this)" : "")),
        el("td", {}, el("span", { class: "badge " + (w.error ? "err" : w.state), text: w.error ? "unreachable" : w.state })),
        td(w.version), td(fmtDur(w.uptime_s)), td(w.partitions, "num"), el("td", {}, addr));
      if (w.error) tr.title = w.error;
      return tr;
    }));

    const canControl = s.auth.token_configured && s.auth.token_ok;
    const rows = [];
    for (const a of s.agents) {
      const btn = el("td");
      if (canControl) {
        const b = el("button", { type: "button", class: "agent-toggle", "data-agent": a.name, text: a.paused ? "Resume" : "Pause" });
        b.addEventListener("click", () => control(a.paused ? "resume" : "pause", a.name));
        btn.append(b);
      }
      const tr = el("tr", { "data-agent": a.name },
        td(a.name + (a.paused ? " (paused)" : "") + (a.blocked ? " (blocked)" : ""), "name"),
        td(a.instances.length, "num instances"), td(a.partitions, "num partitions"), td(fmtN(a.in_flight), "num inflight"),
        td(fmtN(a.credit), "num credit"), td(a.lag < 0 ? "?" : fmtN(a.lag), "num lag"), td(a.processed, "num processed"),
        td(fmtN(a.rate), "num rate"), td(fmtMS(a.processing_p99_ms), "num p99"), btn);
      if (a.blocked) tr.title = a.blocked;
      rows.push(tr);
      for (const i of a.instances) {
        rows.push(el("tr", { class: "instance" + (i.stalled ? " stalled" : ""), "data-instance": i.id },
          td("  └ " + i.id + " " + i.peer, "muted"), td(""), td(i.partitions, "num"), td(fmtN(i.in_flight), "num"),
          td(fmtN(i.credit), "num"), td(""), td(""), td(""), td("up " + fmtDur(i.uptime_s), "muted"), td("")));
      }
    }
    fill($("agents").tBodies[0], rows);

    mergeSeries(s.series, s.now);
    drawCharts();
    renderPartitions();

    const rs = s.restores || [];
    const box = $("restores");
    if (rs.length === 0) box.replaceChildren(el("p", { class: "muted", text: "none" }));
    else box.replaceChildren(...rs.map((r) => {
      const pct = r.total > 0 ? Math.min(100, 100 * r.done / r.total) : (r.finished ? 100 : 0);
      const bar = el("div"); bar.style.width = pct.toFixed(1) + "%";
      let right = fmtN(r.done) + " / " + fmtN(r.total) + " records";
      if (r.finished) right += r.error ? " · failed: " + r.error : " · done in " + fmtMS(r.duration_ms) + " at " + fmtTime(r.finished_at) + (r.full ? " (full: " + r.reason + ")" : "");
      else right += " · " + fmtN(r.rate) + "/s · " + (r.eta_ms ? "ends ~" + fmtTime(r.eta_ms) : "end unknown");
      const tp = r.table + "[" + r.partition + "]";
      return el("div", { class: "restore" + (r.finished ? " finished" : " running") + (r.error ? " failed" : ""), "data-tp": tp,
        "data-finished": String(r.finished), "data-pct": pct.toFixed(1) },
        el("div", { class: "label" }, el("span", { text: tp }), el("span", { class: "muted", text: right })),
        el("div", { class: "bar", role: "progressbar", "aria-valuenow": pct.toFixed(0), "aria-valuemin": "0", "aria-valuemax": "100" }, bar));
    }));
    fill($("standbys").tBodies[0], (s.standbys || []).map((b) => el("tr", {}, td(b.table + "[" + b.partition + "]"),
      td(fmtN(b.lag), "num"), td(fmtN(b.position), "num"), td(fmtN(b.end), "num"))));

    const tables = s.tables || [];
    fill($("tables").tBodies[0], tables.map((t) => el("tr", { "data-table": t.name }, td(t.name + (t.window ? " (" + t.window + ")" : "")),
      td(fmtN(t.keys), "num keys"), td(t.partitions, "num"), td((t.active || []).join(" ")), td((t.standby || []).join(" ")))));
    const sel = $("lookup-table");
    const names = tables.map((t) => t.name).join("\n");
    if (sel.dataset.names !== names) {
      const cur = sel.value;
      sel.replaceChildren(...tables.map((t) => el("option", { value: t.name, text: t.name })));
      if (cur) sel.value = cur;
      sel.dataset.names = names;
    }
    $("lookup").hidden = tables.length === 0;

    const evs = s.events || [];
    $("events").replaceChildren(...(evs.length ? evs.map((e) => el("li", { class: e.level },
      el("span", { class: "muted", text: fmtTime(e.at) + " " }), document.createTextNode(e.text))) : [el("li", { class: "muted", text: "none" })]));
  }

  function partName(p) { return p.agent + " " + p.topic + "[" + p.partition + "]"; }
  function renderPartitions() {
    if (!last) return;
    let ps = last.partitions.slice();
    if (sortKey) {
      const v = (p) => sortKey === "name" ? partName(p) : sortKey === "stalled" ? (p.stalled ? 1 : 0) : p[sortKey];
      ps.sort((a, b) => { const x = v(a), y = v(b); const c = x < y ? -1 : x > y ? 1 : 0; return sortAsc ? c : -c; });
    }
    fill($("partitions").tBodies[0], ps.map((p) => {
      const tr = el("tr", { class: p.stalled ? "stalled" : "", "data-part": partName(p) }, td(partName(p)),
        td(fmtN(p.rate), "num rate"), td(p.lag < 0 ? "?" : fmtN(p.lag), "num lag"), td(fmtN(p.committed), "num committed"),
        td(fmtN(p.in_flight), "num"), td(p.processed, "num processed"), td(fmtN(p.dead_lettered), "num"),
        td(fmtMS(p.e2e_p99_ms), "num"), td(p.stalled ? "STALLED" : ""));
      if (p.stalled) tr.title = p.stalled;
      return tr;
    }));
  }
  for (const th of document.querySelectorAll("#partitions th[data-k]")) {
    th.addEventListener("click", () => {
      const k = th.dataset.k;
      if (sortKey === k) sortAsc = !sortAsc; else { sortKey = k; sortAsc = k === "name"; }
      for (const o of document.querySelectorAll("#partitions th")) o.classList.remove("sorted", "asc");
      th.classList.add("sorted"); if (sortAsc) th.classList.add("asc");
      renderPartitions();
    });
  }

  function mergeSeries(n, now) {
    for (let i = 0; i < n.t.length; i++) for (const k of Object.keys(series)) series[k].push(n[k][i]);
    if (n.t.length) since = n.t[n.t.length - 1];
    let drop = 0;
    while (drop < series.t.length && series.t[drop] < now - HISTORY_MS) drop++;
    if (drop) for (const k of Object.keys(series)) series[k].splice(0, drop);
  }

  const charts = [
    { key: ["in", "out"], title: "events/s in · out", colors: ["#2f6fde", "#1a7f37"], fmt: fmtN },
    { key: ["lag"], title: "consumer lag", colors: ["#b35900"], fmt: fmtN },
    { key: ["e2e_p99_ms"], title: "end-to-end p99", colors: ["#7b3fc4"], fmt: fmtMS },
    { key: ["dlq"], title: "dead letters", colors: ["#c62828"], fmt: fmtN },
  ];
  const SVG = "http://www.w3.org/2000/svg";
  function drawCharts() {
    const box = $("charts");
    if (!box.childElementCount) {
      for (const c of charts) {
        const svg = document.createElementNS(SVG, "svg");
        svg.setAttribute("viewBox", "0 0 300 90"); svg.setAttribute("preserveAspectRatio", "none");
        c.lines = c.key.map((_, i) => { const l = document.createElementNS(SVG, "polyline"); l.setAttribute("stroke", c.colors[i]); svg.append(l); return l; });
        c.now = el("span", { class: "now" });
        box.append(el("div", { class: "chart", "data-chart": c.key.join("-") }, el("div", { class: "title" }, el("span", { text: c.title }), c.now), svg));
      }
    }
    const t = series.t, end = last ? last.now : Date.now(), start = end - HISTORY_MS;
    for (const c of charts) {
      let maxV = 0;
      for (const k of c.key) for (const v of series[k]) if (v > maxV) maxV = v;
      const top = maxV > 0 ? maxV * 1.1 : 1;
      c.key.forEach((k, i) => {
        const pts = [];
        for (let j = 0; j < t.length; j++) pts.push(((t[j] - start) / HISTORY_MS * 300).toFixed(1) + "," + (88 - series[k][j] / top * 84).toFixed(1));
        c.lines[i].setAttribute("points", pts.join(" "));
      });
      c.now.textContent = t.length ? c.key.map((k) => c.fmt(series[k][t.length - 1]) || "0").join(" · ") + " (max " + c.fmt(maxV) + ")" : "";
    }
  }

  async function control(what, agent) {
    const r = await api("/dashboard/api/" + what + (agent ? "?agent=" + encodeURIComponent(agent) : ""), { method: "POST" });
    notice(r.ok ? "" : what + ": " + r.body.error);
    clearTimeout(timer); poll();
  }
  $("pause-all").addEventListener("click", () => control("pause", ""));
  $("resume-all").addEventListener("click", () => control("resume", ""));
  $("token-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    token = $("token-input").value.trim();
    $("token-input").value = "";
    if (token) sessionStorage.setItem("eddy-token", token); else sessionStorage.removeItem("eddy-token");
    clearTimeout(timer); poll();
  });
  $("lookup").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const out = $("lookup-result");
    const table = $("lookup-table").value, key = $("lookup-key").value;
    out.textContent = "…"; out.className = "result";
    const r = await api("/dashboard/api/get?table=" + encodeURIComponent(table) + "&key=" + encodeURIComponent(key));
    if (!r.ok) { out.textContent = "error: " + r.body.error; out.className = "result error"; return; }
    const a = r.body;
    out.dataset.found = String(a.found);
    out.textContent = a.found ? a.value + (a.binary ? " (base64)" : "") + "\n" + "partition " + a.partition + ", served by " + a.served_by
      : "not found (partition " + a.partition + ")";
  });
  poll();
})();
