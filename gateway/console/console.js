// Infer Mesh console: plain JavaScript, no build step, no third-party code (docs/console.md).
//
// Security rules this file keeps:
// * the management key lives only in the `credential` variable below: never in the URL, a cookie,
//   localStorage or sessionStorage; it goes out only as `Authorization: Bearer` on same-origin fetches
//   (with credentials: "omit", so no cookie ever travels either);
// * every value from the server reaches the DOM through textContent, property assignment or
//   setAttribute on non-executable attributes: never innerHTML, insertAdjacentHTML or document.write.
"use strict";

(function () {
  let credential = null;     // the management key (mk-...), memory only
  let lastCreatedKey = null; // the API key created in this tab, for the quick-start snippets
  let keyNames = {};         // key_id -> name, for the usage table
  let catalogue = [];        // /pricing models
  let currentKeyId = null;

  const $ = (id) => document.getElementById(id);
  const SVG_NS = "http://www.w3.org/2000/svg";
  const COLORS = ["#4f6bed", "#e8793a", "#2aa876", "#c94f7c", "#8a63d2", "#d4a72c", "#1f9bb5", "#7a8b99"];

  // -- DOM helpers: text only -----------------------------------------------------------------

  function el(tag, options, ...children) {
    const node = document.createElement(tag);
    const opts = options || {};
    if (opts.className) node.className = opts.className;
    if (opts.title) node.title = opts.title;
    if (opts.data) for (const [k, v] of Object.entries(opts.data)) node.dataset[k] = String(v);
    for (const child of children) {
      if (child === null || child === undefined) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  function svg(tag, attrs, text) {
    const node = document.createElementNS(SVG_NS, tag);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, String(v));
    if (text !== undefined) node.textContent = String(text);
    return node;
  }

  function show(node, visible) { node.hidden = !visible; }

  function setError(node, message) {
    node.textContent = message || "";
    show(node, Boolean(message));
  }

  function fmtTime(unix) {
    if (unix === null || unix === undefined) return "never";
    const d = new Date(unix * 1000);
    return d.toLocaleString(undefined, {year: "numeric", month: "short", day: "numeric",
                                        hour: "2-digit", minute: "2-digit", second: "2-digit"});
  }

  function fmtShortTime(unix) {
    if (unix === null || unix === undefined) return "never";
    return new Date(unix * 1000).toLocaleString(undefined, {month: "short", day: "numeric",
                                                            hour: "2-digit", minute: "2-digit"});
  }

  function timeCell(unix) {
    return el("td", {title: unix === null || unix === undefined ? "" : fmtTime(unix)}, fmtShortTime(unix));
  }

  // One rule for every amount (balances, prices, costs): rounded to a millionth of a dollar, trailing zeros
  // dropped but at least cents: "$3.00", "$0.60", "$0.075", "$4.99871". Exact decimal arithmetic (BigInt):
  // the server sends amounts as decimal strings and a binary float must not round them.
  function fmtUsd(text) {
    if (text === null || text === undefined || text === "") return "—";
    const match = /^(-?)(\d+)(?:\.(\d*))?$/.exec(String(text).trim());
    if (!match) return String(text);
    const [, sign, whole, fraction = ""] = match;
    const nano = BigInt(whole) * 1000000000n + BigInt((fraction + "000000000").slice(0, 9));
    const micro = (nano + 500n) / 1000n;
    const digits = (micro % 1000000n).toString().padStart(6, "0").replace(/0+$/, "").padEnd(2, "0");
    return (sign && micro !== 0n ? "-" : "") + "$" + (micro / 1000000n).toLocaleString("en-US") + "." + digits;
  }

  const PERIOD_WORD = {day: "today", week: "this week", month: "this month"};

  // "$1.20 of $20.00 today", "$3.00 of $10.00 (lifetime)", or "$0.42" without a limit.
  function spendCell(key) {
    const cell = el("td", {className: "num"});
    if (key.limit_usd === null || key.limit_usd === undefined) {
      cell.append(fmtUsd(key.spent_usd));
      return cell;
    }
    const period = key.limit_period;
    cell.append(fmtUsd(period ? key.window_spent_usd : key.spent_usd), " of ", fmtUsd(key.limit_usd));
    cell.append(el("div", {className: "muted small",
                           title: period && key.window_resets_at ? "resets " + fmtTime(key.window_resets_at) : ""},
                   period ? PERIOD_WORD[period] || period : "lifetime"));
    return cell;
  }

  function ratesText(key) {
    const parts = [];
    if (key.rpm) parts.push(fmtInt(key.rpm) + " req/min");
    if (key.tpm) parts.push(fmtInt(key.tpm) + " tokens/min");
    if (key.max_concurrent) parts.push(fmtInt(key.max_concurrent) + " at once");
    return parts.length ? parts.join(" · ") : "none";
  }

  function fmtInt(n) { return typeof n === "number" ? n.toLocaleString() : "—"; }

  // -- the API --------------------------------------------------------------------------------

  class ApiError extends Error {
    constructor(status, message) { super(message); this.status = status; }
  }

  async function api(method, path, body) {
    const headers = {"Accept": "application/json"};
    if (credential) headers["Authorization"] = "Bearer " + credential;
    if (body !== undefined) headers["Content-Type"] = "application/json";
    let response;
    try {
      response = await fetch(path, {method, headers, credentials: "omit", cache: "no-store", redirect: "error",
                                    body: body === undefined ? undefined : JSON.stringify(body)});
    } catch (err) {
      throw new ApiError(0, "cannot reach the gateway (" + err.message + ")");
    }
    let data = null;
    try { data = await response.json(); } catch (err) { data = null; }
    if (!response.ok) {
      const message = data && data.error && data.error.message ? data.error.message : "HTTP " + response.status;
      throw new ApiError(response.status, message);
    }
    return data;
  }

  // An authenticated call that signs out when the key stops working (revoked, expired).
  async function authed(method, path, body) {
    try {
      return await api(method, path, body);
    } catch (err) {
      if (err.status === 401 && credential) {
        signOut("You were signed out: " + err.message);
      }
      throw err;
    }
  }

  // -- sign in / out --------------------------------------------------------------------------

  async function signIn(event) {
    event.preventDefault();
    const input = $("signin-key");
    const key = input.value.trim();
    setError($("signin-error"), "");
    if (!key) { setError($("signin-error"), "Enter your management key."); return; }
    credential = key;
    $("signin-button").disabled = true;
    try {
      const keys = await api("GET", "/v1/keys");
      input.value = "";
      currentKeyId = keys.current_key_id;
      $("account-id").textContent = keys.account;
      show($("signin"), false);
      show($("app"), true);
      show($("session"), true);
      selectTab("overview");
      renderKeys(keys);
      await refreshAll();
    } catch (err) {
      credential = null;
      let message = err.message;
      if (err.status === 403) message = "That is an API key (sk-). Sign in with your account's management key (mk-).";
      else if (err.status === 401) message = "Sign-in failed: " + err.message;
      setError($("signin-error"), message);
    } finally {
      $("signin-button").disabled = false;
    }
  }

  function signOut(message) {
    credential = null;
    lastCreatedKey = null;
    currentKeyId = null;
    keyNames = {};
    for (const id of ["usage-table", "keys-table"]) $(id).tBodies[0].replaceChildren();
    for (const id of ["balance", "reserved", "available", "account-id"]) $(id).textContent = "";
    $("chart").replaceChildren();
    $("chart-legend").replaceChildren();
    $("new-key-value").value = "";
    show($("new-key"), false);
    show($("app"), false);
    show($("session"), false);
    show($("signin"), true);
    setError($("app-error"), "");
    setError($("signin-error"), typeof message === "string" ? message : "");
    $("signin-key").focus();
  }

  // -- tabs -----------------------------------------------------------------------------------

  function selectTab(name) {
    for (const button of document.querySelectorAll("[data-tab]")) {
      button.setAttribute("aria-selected", String(button.dataset.tab === name));
    }
    for (const section of document.querySelectorAll(".tab")) {
      show(section, section.id === "tab-" + name);
    }
  }

  // -- loading --------------------------------------------------------------------------------

  async function refreshAll() {
    setError($("app-error"), "");
    const jobs = [loadBalance(), loadKeys(), loadPricing()];
    const results = await Promise.allSettled(jobs);
    // usage needs key names, and the snippets need the catalogue
    results.push(...await Promise.allSettled([loadUsage(), loadChart()]));
    renderQuickstart();
    const failed = results.find((r) => r.status === "rejected");
    if (failed && credential) setError($("app-error"), failed.reason.message);
  }

  async function loadBalance() {
    const b = await authed("GET", "/v1/balance");
    $("balance").textContent = fmtUsd(b.balance_usd);
    $("reserved").textContent = fmtUsd(b.reserved_usd);
    $("available").textContent = fmtUsd(b.available_usd);
    $("available").classList.toggle("negative", String(b.available_usd).startsWith("-"));
  }

  async function loadKeys() {
    renderKeys(await authed("GET", "/v1/keys"));
  }

  function renderKeys(list) {
    keyNames = {};
    const body = $("keys-table").tBodies[0];
    body.replaceChildren();
    for (const key of list.data.slice().reverse()) {
      keyNames[key.key_id] = key.name;
      const expired = key.expires_at !== null && key.expires_at * 1000 <= Date.now();
      const status = key.revoked ? "revoked" : expired ? "expired" : "active";
      const action = el("td");
      if (!key.revoked) {
        const button = el("button", {className: "danger small-button revoke"}, "Revoke");
        button.type = "button";
        button.addEventListener("click", () => revoke(key, button));
        action.append(button);
      }
      // Seven columns, so the table fits its card at 1280 px with Revoke in view: the prefix and kind sit
      // under the name, the creation time in its tooltip, the expiry under the status.
      const name = el("td", {className: "name", title: "created " + fmtTime(key.created_at)}, key.name);
      if (key.key_id === currentKeyId) name.append(" ", el("span", {className: "tag"}, "you"));
      if (key.kind === "management") name.append(" ", el("span", {className: "tag"}, "management"));
      name.append(el("div", {}, el("code", {className: "small"}, key.prefix + "…")));
      const state = el("td", {className: "status"}, el("span", {className: "pill " + status}, status));
      if (key.expires_at !== null && !key.revoked) {
        state.append(el("div", {className: "muted small", title: fmtTime(key.expires_at)},
                        (expired ? "expired " : "until ") + fmtShortTime(key.expires_at)));
      }
      body.append(el("tr", {data: {keyId: key.key_id}, className: status},
        name,
        timeCell(key.last_used_at),
        el("td", {className: "wrap"}, key.kind === "management" ? "—" : key.models === null ? "all" : key.models.join(", ")),
        spendCell(key),
        el("td", {className: "wrap"}, key.kind === "management" ? "—" : ratesText(key)),
        state,
        action));
    }
  }

  async function loadPricing() {
    const prices = await api("GET", "/pricing");
    catalogue = prices.models;
    const body = $("pricing-table").tBodies[0];
    body.replaceChildren();
    for (const m of catalogue) {
      body.append(el("tr", {},
        el("td", {}, el("code", {}, m.id)),
        el("td", {}, m.kind || "chat"),
        el("td", {className: "num"}, fmtUsd(m.input)),
        el("td", {className: "num"}, m.cached_input === undefined ? "—" : fmtUsd(m.cached_input)),
        el("td", {className: "num"}, m.cache_write === undefined ? "—" : fmtUsd(m.cache_write)),
        el("td", {className: "num"}, m.cache_write_1h === undefined ? "—" : fmtUsd(m.cache_write_1h)),
        el("td", {className: "num"}, m.output === undefined ? "—" : fmtUsd(m.output))));
    }
    // the model choices of the create-key form
    const box = $("create-models");
    const ticked = new Set(Array.from(box.querySelectorAll("input:checked"), (i) => i.value));
    box.replaceChildren();
    for (const m of catalogue) {
      const check = el("input");
      check.type = "checkbox";
      check.value = m.id;
      check.checked = ticked.has(m.id);
      box.append(el("label", {className: "check"}, check, " ", m.id));
    }
  }

  async function loadUsage() {
    const usage = await authed("GET", "/v1/usage?limit=50");
    const body = $("usage-table").tBodies[0];
    body.replaceChildren();
    for (const r of usage.data) {
      const ok = typeof r.status === "number" && r.status < 400;
      body.append(el("tr", {data: {requestId: r.request_id || ""}, title: "request " + (r.request_id || "")},
        el("td", {}, fmtTime(r.created_at)),
        el("td", {}, el("code", {}, r.model)),
        el("td", {}, keyNames[r.key_id] || r.key_id || ""),
        el("td", {className: "num"}, fmtInt(r.input_tokens)),
        el("td", {className: "num"}, fmtInt(r.output_tokens)),
        el("td", {className: "num"}, fmtInt(r.cached_tokens)),
        el("td", {className: "num"}, fmtUsd(r.cost_usd) + (r.estimated ? " (est.)" : "")),
        el("td", {}, el("span", {className: "pill " + (ok ? "active" : "revoked")}, String(r.status)))));
    }
    show($("usage-empty"), usage.data.length === 0);
    $("usage-count").textContent = usage.data.length ? "latest " + usage.data.length : "";
  }

  // -- the chart (an SVG this page draws itself) ---------------------------------------------

  let chartData = null;

  async function loadChart() {
    const bucket = $("chart-bucket").value;
    const span = bucket === "hour" ? 48 * 3600 : 30 * 86400;
    const since = Math.floor(Date.now() / 1000) - span;
    chartData = await authed("GET", "/v1/usage/summary?bucket=" + encodeURIComponent(bucket) + "&since=" + since);
    drawChart();
  }

  function niceMax(value) {
    if (value <= 0) return 1;
    const exp = Math.pow(10, Math.floor(Math.log10(value)));
    for (const step of [1, 2, 2.5, 5, 10]) if (step * exp >= value) return step * exp;
    return 10 * exp;
  }

  // Decimals that show every multiple of `step` exactly (0.005 -> 3, 0.0025 -> 4, 0.5 -> 2 for money).
  function decimalsFor(step, least) {
    for (let d = least; d < 10; d++) {
      if (Math.abs(Number(step.toFixed(d)) - step) <= step * 1e-9) return d;
    }
    return 10;
  }

  function fmtAxis(value, metric, step) {
    if (metric === "tokens") {
      if (step >= 1e6 || value >= 1e6 && step >= 1e5) return (value / 1e6).toFixed(decimalsFor(step / 1e6, 0)) + "M";
      if (step >= 1e3 || value >= 1e3 && step >= 100) return (value / 1e3).toFixed(decimalsFor(step / 1e3, 0)) + "k";
      return String(Math.round(value));
    }
    if (value === 0) return "$0";
    return "$" + value.toFixed(decimalsFor(step, 2));
  }

  function drawChart() {
    const chart = $("chart");
    const legend = $("chart-legend");
    chart.replaceChildren();
    legend.replaceChildren();
    if (!chartData) return;
    const metric = $("chart-metric").value;
    const width = chartData.bucket_seconds;
    const first = chartData.first_bucket;
    const count = Math.max(1, Math.floor((chartData.until - first) / width) + 1);
    const models = Array.from(new Set(chartData.data.map((r) => r.model))).sort();
    const color = (model) => COLORS[models.indexOf(model) % COLORS.length];
    const valueOf = (r) => metric === "tokens" ? r.input_tokens + r.output_tokens : parseFloat(r.cost_usd);
    const stacks = Array.from({length: count}, () => []);
    for (const row of chartData.data) {
      const index = Math.round((row.start - first) / width);
      if (index >= 0 && index < count) stacks[index].push(row);
    }
    const totals = stacks.map((s) => s.reduce((sum, r) => sum + valueOf(r), 0));
    const top = metric === "tokens" ? Math.max(4, niceMax(Math.max(0, ...totals))) : niceMax(Math.max(0, ...totals));

    const W = 900, H = 260, left = 64, right = 12, topPad = 12, bottom = 34;
    const plotW = W - left - right, plotH = H - topPad - bottom;
    const root = svg("svg", {viewBox: `0 0 ${W} ${H}`, role: "img", class: "chart-svg",
                             "aria-label": (metric === "tokens" ? "tokens" : "spend") + " per " + chartData.bucket});
    root.append(svg("title", {}, (metric === "tokens" ? "Tokens" : "Spend (USD)") + " per " + chartData.bucket));
    for (let i = 0; i <= 4; i++) {
      const y = topPad + plotH - (plotH * i) / 4;
      root.append(svg("line", {x1: left, x2: W - right, y1: y, y2: y, class: i ? "grid" : "axis"}));
      root.append(svg("text", {x: left - 8, y: y + 4, "text-anchor": "end", class: "tick"}, fmtAxis((top * i) / 4, metric, top / 4)));
    }
    const slot = plotW / count;
    const barW = Math.max(1, Math.min(40, slot * 0.7));
    const labelEvery = Math.max(1, Math.ceil(count / 10));
    for (let i = 0; i < count; i++) {
      const x = left + slot * i + (slot - barW) / 2;
      let y = topPad + plotH;
      for (const row of stacks[i]) {
        const h = (valueOf(row) / top) * plotH;
        if (h <= 0) continue;
        y -= h;
        const rect = svg("rect", {x: x.toFixed(2), y: y.toFixed(2), width: barW.toFixed(2), height: Math.max(h, 0.5).toFixed(2),
                                  fill: color(row.model), class: "bar"});
        rect.append(svg("title", {}, `${row.model} · ${fmtTime(row.start)}\n$${row.cost_usd} · ` +
                                     `${fmtInt(row.input_tokens)} in / ${fmtInt(row.output_tokens)} out tokens · ` +
                                     `${row.requests} request${row.requests === 1 ? "" : "s"}`));
        root.append(rect);
      }
      if (i % labelEvery === 0 || i === count - 1 && count <= 10) {
        const d = new Date((first + width * i) * 1000);
        const label = chartData.bucket === "hour"
          ? d.toLocaleTimeString(undefined, {hour: "2-digit", minute: "2-digit"})
          : d.toLocaleDateString(undefined, {month: "short", day: "numeric"});
        root.append(svg("text", {x: (left + slot * i + slot / 2).toFixed(2), y: H - 12, "text-anchor": "middle", class: "tick"}, label));
      }
    }
    chart.append(root);
    for (const model of models) {
      const swatch = el("span", {className: "swatch"});
      swatch.style.backgroundColor = color(model); // CSSOM, allowed by the CSP (no style attribute markup)
      legend.append(el("li", {}, swatch, model));
    }
    const total = chartData.data.reduce((s, r) => s + r.requests, 0);
    $("chart-note").textContent = total
      ? `${total} request${total === 1 ? "" : "s"} in this period. Buckets are aligned to UTC ${chartData.bucket}s.`
      : "No usage in this period yet.";
  }

  // -- keys -----------------------------------------------------------------------------------

  async function createKey(event) {
    event.preventDefault();
    setError($("create-error"), "");
    const body = {name: $("create-name").value.trim()};
    if (!body.name) { setError($("create-error"), "Give the key a name."); return; }
    const limit = $("create-limit").value.trim();
    if (limit) body.limit_usd = limit;
    const period = $("create-period").value;
    if (period) {
      if (!limit) { setError($("create-error"), "A limit that resets needs an amount: fill in the spend limit."); return; }
      body.limit_period = period;
    }
    for (const [id, field] of [["create-rpm", "rpm"], ["create-tpm", "tpm"], ["create-concurrent", "max_concurrent"]]) {
      const text = $(id).value.trim();
      if (!text) continue;
      if (!/^[0-9]+$/.test(text) || Number(text) < 1) {
        setError($("create-error"), "Rate limits are whole numbers from 1 (leave empty for none).");
        return;
      }
      body[field] = Number(text);
    }
    const expires = $("create-expires").value;
    if (expires) {
      const end = new Date(expires + "T23:59:59");
      if (isNaN(end.getTime())) { setError($("create-error"), "The expiry date is not valid."); return; }
      body.expires_at = Math.floor(end.getTime() / 1000);
    }
    const models = Array.from($("create-models").querySelectorAll("input:checked"), (i) => i.value);
    if (models.length) body.models = models;
    $("create-button").disabled = true;
    try {
      const created = await authed("POST", "/v1/keys", body);
      lastCreatedKey = created.key;
      $("new-key-value").value = created.key;
      show($("new-key"), true);
      $("create-form").reset();
      $("new-key-value").select();
      await loadKeys();
      renderQuickstart();
    } catch (err) {
      setError($("create-error"), err.message);
    } finally {
      $("create-button").disabled = false;
    }
  }

  async function revoke(key, button) {
    // Two clicks: the first arms the button, the second revokes (no blocking confirm() dialog).
    if (button.dataset.armed !== "1") {
      button.dataset.armed = "1";
      button.textContent = key.key_id === currentKeyId ? "Revoke and sign out?" : "Confirm revoke";
      setTimeout(() => { if (button.isConnected) { button.dataset.armed = ""; button.textContent = "Revoke"; } }, 5000);
      return;
    }
    button.disabled = true;
    try {
      const result = await authed("DELETE", "/v1/keys/" + encodeURIComponent(key.key_id));
      if (result.signed_out) { signOut("You revoked the key you were signed in with."); return; }
      if (lastCreatedKey && $("new-key-value").value === lastCreatedKey && key.prefix && lastCreatedKey.startsWith(key.prefix)) {
        lastCreatedKey = null;
        renderQuickstart();
      }
      await loadKeys();
    } catch (err) {
      if (credential) setError($("app-error"), err.message);
      button.disabled = false;
    }
  }

  // -- copy -----------------------------------------------------------------------------------

  async function copyText(text, button) {
    let ok = false;
    if (navigator.clipboard && window.isSecureContext) {
      try { await navigator.clipboard.writeText(text); ok = true; } catch (err) { ok = false; }
    }
    if (!ok) { // plain http on a LAN address is not a secure context: fall back to a selection copy
      const area = el("textarea", {className: "offscreen"});
      area.value = text;
      document.body.append(area);
      area.select();
      try { ok = document.execCommand("copy"); } catch (err) { ok = false; }
      area.remove();
    }
    const label = button.textContent;
    button.textContent = ok ? "Copied" : "Select and copy by hand";
    setTimeout(() => { button.textContent = label; }, 1500);
  }

  // -- quick start ----------------------------------------------------------------------------

  function renderQuickstart() {
    const origin = window.location.origin;
    const key = lastCreatedKey || "sk-YOUR-API-KEY";
    const chat = catalogue.filter((m) => (m.kind || "chat") === "chat").map((m) => m.id);
    const chatModel = chat.find((id) => !id.toLowerCase().includes("claude")) || chat[0] || "gpt-4o-mini";
    const claude = chat.filter((id) => id.toLowerCase().includes("claude"));
    const claudeModel = claude.find((id) => !id.toLowerCase().includes("haiku")) || claude[0] || chatModel;
    const small = claude.find((id) => id.toLowerCase().includes("haiku"));
    $("qs-origin").textContent = origin;
    $("qs-curl").textContent =
      `curl ${origin}/v1/chat/completions \\\n` +
      `  -H 'Authorization: Bearer ${key}' -H 'Content-Type: application/json' \\\n` +
      `  -d '${JSON.stringify({model: chatModel, messages: [{role: "user", content: "Hello!"}]})}'`;
    $("qs-openai").textContent =
      "from openai import OpenAI\n\n" +
      `client = OpenAI(base_url=${JSON.stringify(origin + "/v1")}, api_key=${JSON.stringify(key)})\n` +
      "reply = client.chat.completions.create(\n" +
      `    model=${JSON.stringify(chatModel)}, messages=[{"role": "user", "content": "Hello!"}])\n` +
      "print(reply.choices[0].message.content)";
    $("qs-anthropic").textContent =
      "import anthropic\n\n" +
      `client = anthropic.Anthropic(base_url=${JSON.stringify(origin)}, api_key=${JSON.stringify(key)})\n` +
      `message = client.messages.create(model=${JSON.stringify(claudeModel)}, max_tokens=256,\n` +
      '                                 messages=[{"role": "user", "content": "Hello!"}])\n' +
      "print(message.content[0].text)";
    const env = {ANTHROPIC_BASE_URL: origin, ANTHROPIC_AUTH_TOKEN: key, ANTHROPIC_MODEL: claudeModel};
    if (small) env.ANTHROPIC_DEFAULT_HAIKU_MODEL = small;  // the current name (ANTHROPIC_SMALL_FAST_MODEL is deprecated)
    $("qs-claude").textContent = JSON.stringify({env}, null, 2);
  }

  // -- wiring ---------------------------------------------------------------------------------

  document.addEventListener("DOMContentLoaded", () => {
    $("signin-form").addEventListener("submit", signIn);
    $("signout").addEventListener("click", () => signOut(""));
    $("refresh").addEventListener("click", () => { refreshAll(); });
    $("create-form").addEventListener("submit", createKey);
    $("new-key-copy").addEventListener("click", (e) => copyText($("new-key-value").value, e.currentTarget));
    $("new-key-hide").addEventListener("click", () => { $("new-key-value").value = ""; show($("new-key"), false); });
    $("chart-bucket").addEventListener("change", () => { loadChart().catch((e) => setError($("app-error"), e.message)); });
    $("chart-metric").addEventListener("change", drawChart);
    for (const button of document.querySelectorAll("[data-tab]")) {
      button.addEventListener("click", () => selectTab(button.dataset.tab));
    }
    for (const button of document.querySelectorAll("[data-copy]")) {
      button.addEventListener("click", () => copyText($(button.dataset.copy).textContent, button));
    }
    renderQuickstart();
    $("signin-key").focus();
  });
})();
