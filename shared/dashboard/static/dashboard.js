// tokenpool dashboard: re-reads the JSON endpoints every refresh and redraws the fields
// the server rendered, without reloading the page. Text goes in with textContent only.
"use strict";

(function () {
  const body = document.body;
  const refreshMs = Math.max(1, parseInt(body.dataset.refreshSeconds || "5", 10)) * 1000;
  const chartEveryMs = Math.max(refreshMs, 60 * 1000);

  const STATUS_CLASS = { FRESH: "ok", ACTIVE: "ok", LOW: "warn", EXHAUSTED: "bad", RATE_LIMITED: "cool",
                         INVALID: "bad", DISABLED: "off" };
  const OUTCOME_CLASS = { ok: "ok", rate_limited: "warn", interrupted: "off" };
  const CLASS_MAPS = {
    status: (v) => STATUS_CLASS[v] || "off",
    outcome: (v) => OUTCOME_CLASS[v] || "bad",
    alive: (v) => (v ? "up" : "down"),
    state: (v) => (v === "up" || v === "stopped" ? v : "down"),
  };

  function duration(seconds) {
    const minutes = Math.max(0, Math.floor(seconds / 60));
    const hours = Math.floor(minutes / 60);
    return hours ? hours + "h " + (minutes % 60) + "m" : minutes + "m";
  }

  // The same formats as shared/dashboard/templating.py.
  const FORMATS = {
    tokens: (v) => (v == null ? "–" : Number(v).toLocaleString("en-US")),
    usd: (v) => {
      if (v == null) return "–";
      const usd = v / 1e9;
      return usd >= 1
        ? "$" + usd.toLocaleString("en-US", { minimumFractionDigits: 2, maximumFractionDigits: 2 })
        : "$" + usd.toFixed(4);
    },
    percent: (v) => (v == null ? "–" : (v * 100).toFixed(1) + "%"),
    duration: (v) => (v == null ? "–" : duration(v)),
    ago: (v) => (v == null ? "–" : v < 60 ? v + "s" : duration(v)),
    clock: (v) => (v ? String(v).slice(11, 19) : "never"),
    when: (v) => (v ? String(v).slice(5, 10) + " " + String(v).slice(11, 16) : "never"),
    updown: (v) => (v ? "up" : "DOWN"),
    state: (v) => (v === "down" ? "DOWN" : String(v)),
    text: (v) => (v == null ? "" : String(v)),
    chat: (v) => (v == null || v === "" ? "–" : String(v)),
  };

  // "a.b" walks into objects; "a+b" sums; "a|b" is the first of them that is set.
  function lookup(data, path) {
    const choices = path.split("|");
    if (choices.length > 1) {
      const values = choices.map((p) => lookup(data, p));
      return values.find((v) => v != null && v !== "");
    }
    const parts = path.split("+");
    if (parts.length > 1) return parts.reduce((sum, p) => sum + (Number(lookup(data, p)) || 0), 0);
    return path.split(".").reduce((obj, name) => (obj == null ? undefined : obj[name]), data);
  }

  function within(root, selector) {
    const found = Array.from(root.querySelectorAll(selector));
    return root.matches && root.matches(selector) ? [root].concat(found) : found;
  }

  function show(el, value) {
    const format = FORMATS[el.dataset.fmt || "text"] || FORMATS.text;
    const text = format(value);
    if (el.textContent !== text) el.textContent = text;
  }

  function topList(list, items) {
    const rows = (items || []).map((item) => {
      const li = document.createElement("li");
      const name = document.createElement("span");
      name.className = "name";
      name.textContent = item.group;
      const num = document.createElement("span");
      num.className = "num";
      num.textContent = FORMATS.tokens(item.total_tokens);
      li.append(name, " ", num);
      return li;
    });
    if (!rows.length) {
      const none = document.createElement("li");
      none.className = "none";
      none.textContent = "none";
      rows.push(none);
    }
    list.replaceChildren(...rows);
  }

  // Fill one card, row or list item from its part of the JSON.
  function fill(root, data) {
    within(root, "[data-bind]").forEach((el) => show(el, lookup(data, el.dataset.bind)));
    within(root, "[data-class-of]").forEach((el) => {
      const map = CLASS_MAPS[el.dataset.classMap] || String;
      el.className = el.dataset.class + map(lookup(data, el.dataset.classOf));
    });
    within(root, "[data-progress]").forEach((el) => {
      const [valuePath, maxPath] = el.dataset.progress.split(" ");
      const max = Number(lookup(data, maxPath)) || 1;
      el.max = max;
      el.value = Math.min(Number(lookup(data, valuePath)) || 0, max);
    });
    within(root, "[data-list]").forEach((el) => topList(el, lookup(data, el.dataset.list)));
  }

  // Make a container's children match a list: keep elements whose identity still exists.
  function syncItems(name, items, identity) {
    const container = document.querySelector('[data-items="' + name + '"]');
    const template = container && document.getElementById(container.dataset.template);
    if (!container || !template) return;
    const existing = new Map();
    container.querySelectorAll(":scope > [data-id]").forEach((el) => existing.set(el.dataset.id, el));
    const nodes = items.map((item) => {
      const id = identity(item);
      let el = id == null ? undefined : existing.get(id);
      if (!el) {
        el = template.content.firstElementChild.cloneNode(true);
        if (id != null) el.dataset.id = id;
      }
      fill(el, item);
      return el;
    });
    container.replaceChildren(...nodes);
  }

  function showStats(stats) {
    document.querySelectorAll("[data-stat]").forEach((el) => show(el, lookup(stats, el.dataset.stat)));
    syncItems("processes", stats.processes, (p) => p.kind + ":" + p.name);
    syncItems("allowances", stats.allowances || [], (a) => "allowance:" + a.name);
  }

  async function getJSON(url) {
    const response = await fetch(url, { credentials: "same-origin", cache: "no-store",
                                        headers: { Accept: "application/json" } });
    if (response.status === 401) {
      window.location.assign("/login");
      throw new Error("log in again");
    }
    if (!response.ok) throw new Error(url + ": HTTP " + response.status);
    return response.json();
  }

  const state = document.getElementById("refresh-state");
  let lastChart = Date.now();

  async function refresh() {
    try {
      const [stats, recent] = await Promise.all(["/api/stats", "/api/recent"].map(getJSON));
      showStats(stats);
      syncItems("keys", stats.keys, (k) => "key:" + k.label);
      syncItems("calls", recent, (c) => "call:" + c.id);
      if (Date.now() - lastChart >= chartEveryMs) {
        lastChart = Date.now();
        // Both charts, in both sizes (the <source> a phone uses and the <img> fallback).
        document.querySelectorAll("picture source[srcset], picture img").forEach((el) => {
          const attr = el.tagName === "SOURCE" ? "srcset" : "src";
          const url = new URL(el.getAttribute(attr), window.location.href);
          url.searchParams.set("t", String(lastChart));
          el.setAttribute(attr, url.pathname + url.search);
        });
      }
      body.dataset.refreshes = String(Number(body.dataset.refreshes || "0") + 1);
      if (state) { state.textContent = "· live"; state.className = "refresh-state live"; }
    } catch (error) {
      if (state) { state.textContent = "· not updating: " + error.message; state.className = "refresh-state stale"; }
    } finally {
      window.setTimeout(refresh, refreshMs);
    }
  }

  window.setTimeout(refresh, refreshMs);
})();
