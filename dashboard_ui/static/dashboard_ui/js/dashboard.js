// The Ledgerpulse dashboard page: renders the DashboardState and wires the
// websocket (LiveSocket) and REST calls (api) to it. Talks only to public APIs.

import { api, newKey } from "./api.js";
import { bulkOutcome, matchesFilter, problemMessage } from "./decisions.js";
import { LiveSocket } from "./live.js";
import { compareDecimal, formatCompact, formatMoney, formatPercent, percentChange, sumDecimals, zeroWithDigits } from "./money.js";
import { DashboardState, FEED_LIMIT, WAITING } from "./store.js";
import { addWeeks, formatDuration, longWeekLabel, MONTHS, shortWeekLabel, weekLabel } from "./weeks.js";

const RANGES = [12, 26, 52];
const SNAPSHOT_WEEKS = 12;
const HEAL_AFTER_MS = 6000;
const PALETTE = { EUR: "#2563eb", USD: "#059669", JPY: "#d97706", GBP: "#7c3aed", CHF: "#dc2626" };
const SPARE_COLORS = ["#0891b2", "#db2777", "#65a30d", "#9333ea", "#ea580c", "#475569"];

const $ = (selector, root = document) => root.querySelector(selector);
const canDecide = document.body.dataset.canDecide === "true";

function initialRange() {
  const asked = Number(new URLSearchParams(window.location.search).get("weeks"));
  return RANGES.includes(asked) ? asked : SNAPSHOT_WEEKS;
}

const state = new DashboardState({ rangeWeeks: initialRange() });
let loadedFrom = null; // oldest week whose values came from a snapshot or REST read since the last snapshot

// --- small DOM helpers ----------------------------------------------------------------

function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "class") el.className = value;
    else if (key === "text") el.textContent = value;
    else if (key === "dataset") Object.assign(el.dataset, value);
    // Through the CSSOM: a style="" attribute would be refused by the Content-Security-Policy.
    else if (key === "style") el.style.cssText = value;
    else if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
    else el.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

function flash(el) {
  el.classList.remove("flash");
  void el.offsetWidth; // restart the animation
  el.classList.add("flash");
}

function colorFor(currency) {
  if (PALETTE[currency]) return PALETTE[currency];
  const others = state.currencies.filter((c) => !PALETTE[c]);
  return SPARE_COLORS[Math.max(0, others.indexOf(currency)) % SPARE_COLORS.length];
}

const partFormats = new Map();

/** Calendar parts of an instant in the analytics time zone (weeks are cut there too). */
function partsOf(iso) {
  const zone = state.timeZone;
  if (!partFormats.has(zone)) {
    const options = { weekday: "short", year: "numeric", month: "numeric", day: "numeric", hour: "2-digit", minute: "2-digit", second: "2-digit", hourCycle: "h23" };
    let format;
    try {
      format = new Intl.DateTimeFormat("en-US", { ...options, timeZone: zone });
    } catch {
      format = new Intl.DateTimeFormat("en-US", { ...options, timeZone: "UTC" });
    }
    partFormats.set(zone, format);
  }
  const parts = Object.fromEntries(partFormats.get(zone).formatToParts(new Date(iso)).map((p) => [p.type, p.value]));
  return { ...parts, monthName: MONTHS[Number(parts.month) - 1] };
}

function formatDate(iso) {
  if (!iso) return "";
  const p = partsOf(iso);
  return `${Number(p.day)} ${p.monthName} ${p.year}`;
}

function formatDateTime(iso) {
  if (!iso) return "";
  const p = partsOf(iso);
  return `${Number(p.day)} ${p.monthName}, ${p.hour}:${p.minute}`;
}

function formatTime(iso) {
  if (!iso) return "";
  const p = partsOf(iso);
  return `${p.hour}:${p.minute}:${p.second}`;
}

function txnLabel(txn) {
  return txn.reference || `#${txn.id.slice(0, 8)}`;
}

// --- toasts -------------------------------------------------------------------------------

function toast(message, kind = "info") {
  const box = $("#toasts");
  const item = h("div", { class: `toast toast--${kind}`, role: kind === "error" ? "alert" : null }, message);
  box.append(item);
  setTimeout(() => item.classList.add("toast--leaving"), kind === "error" ? 7000 : 4000);
  setTimeout(() => item.remove(), kind === "error" ? 7400 : 4400);
}

// --- connection indicator -------------------------------------------------------------------

const conn = $('[data-testid="connection-status"]');
let countdownTimer = null;

function renderConnection({ state: live, retryAt }) {
  clearInterval(countdownTimer);
  countdownTimer = null;
  const labels = {
    connected: ["connected", "Connected", ""],
    connecting: ["reconnecting", "Connecting…", ""],
    reconnecting: ["reconnecting", "Reconnecting", ""],
    offline: ["offline", "Offline", "waiting for the network"],
    "signed-out": ["offline", "Signed out", ""],
    forbidden: ["offline", "No access", "staff only"],
  };
  const [dataState, label, detail] = labels[live] || labels.offline;
  conn.dataset.state = dataState;
  conn.dataset.phase = live;
  $(".conn__label", conn).textContent = label;
  $(".conn__action", conn).hidden = live !== "signed-out";
  const detailEl = $(".conn__detail", conn);
  detailEl.textContent = detail;
  if (live === "reconnecting" && retryAt) {
    const tick = () => {
      const seconds = Math.ceil((retryAt - Date.now()) / 1000);
      detailEl.textContent = seconds > 0 ? `in ${seconds} s` : "now…";
      conn.dataset.retryIn = String(Math.max(0, seconds));
    };
    tick();
    countdownTimer = setInterval(tick, 250);
  } else {
    delete conn.dataset.retryIn;
  }
}

function renderSeq() {
  // A finance user wants to know how fresh the figures are, not an event number (kept in data-value).
  const el = $('[data-testid="last-seq"]');
  el.dataset.value = String(state.lastSeq);
  const now = new Date().toISOString();
  const time = $(".seq__value", el);
  time.textContent = formatTime(now);
  time.setAttribute("datetime", now);
  el.title = `The page last received live data at ${formatTime(now)} (${state.timeZone})`;
}

// --- weekly table -------------------------------------------------------------------------------

let tableLayout = "";

const isZero = (text) => /^-?0*\.?0*$/.test(text);

/** The net cell (data-value = total = net), with the breakdown in data-gross / data-reversed. Beside gross
 * and reversed columns its second line is the count; alone, a week with reversals says how much there. */
function fillWeekCell(td, cell, split = td.dataset.split === "true") {
  td.dataset.value = cell.total;
  td.dataset.count = String(cell.count);
  td.dataset.gross = cell.gross;
  td.dataset.reversed = cell.reversed;
  td.dataset.reversedCount = String(cell.reversedCount);
  td.classList.toggle("is-zero", cell.count === 0 && cell.reversedCount === 0 && isZero(cell.total));
  td.classList.toggle("is-negative", compareDecimal(cell.total, "0") < 0);
  const approved = `${cell.count.toLocaleString("en-US")} tx`;
  td.title = cell.reversedCount
    ? `Gross ${formatMoney(cell.gross, cell.currency)} (${approved}) less ${cell.reversedCount} reversed ${formatMoney(cell.reversed, cell.currency)}`
    : "";
  // Beside its own gross and reversed columns the reversed line is drawn only on a phone, where the
  // stylesheet hides those columns.
  const reversed = cell.reversedCount ? h("span", { class: "cnt cnt--rev" }, `\u2212${formatMoney(cell.reversed, cell.currency)} rev.`) : null;
  const count = h("span", { class: "cnt cnt--tx", title: `${cell.count} approved` }, approved);
  td.replaceChildren(...[h("span", { class: "amt" }, formatMoney(cell.total, cell.currency)), reversed && !split ? reversed : count, split ? reversed : null].filter(Boolean));
}

function fillGrossCell(td, cell) {
  td.dataset.value = cell.gross;
  td.classList.toggle("is-zero", isZero(cell.gross));
  td.replaceChildren(h("span", { class: "amt" }, formatMoney(cell.gross, cell.currency)));
}

function fillReversedCell(td, cell) {
  td.dataset.value = cell.reversed;
  td.dataset.count = String(cell.reversedCount);
  td.classList.toggle("is-zero", cell.reversedCount === 0);
  const amount = h("span", { class: "amt" }, cell.reversedCount ? `\u2212${formatMoney(cell.reversed, cell.currency)}` : formatMoney(cell.reversed, cell.currency));
  if (cell.reversedCount) td.replaceChildren(amount, h("span", { class: "cnt" }, `${cell.reversedCount.toLocaleString("en-US")} rev.`));
  else td.replaceChildren(amount);
}

/** The cells of one (week, currency): net alone, or gross, reversed and net when the range has reversals. */
function weekCells(week, currency, split) {
  const cell = state.cell(week, currency);
  const net = h("td", { class: "num", "data-testid": "week-total", "data-week": week, "data-currency": currency, "data-split": String(split) });
  fillWeekCell(net, cell);
  if (!split) return [net];
  const gross = h("td", { class: "num sub", "data-testid": "week-gross", "data-week": week, "data-currency": currency });
  const reversed = h("td", { class: "num sub rev", "data-testid": "week-reversed", "data-week": week, "data-currency": currency });
  fillGrossCell(gross, cell);
  fillReversedCell(reversed, cell);
  return [gross, reversed, net];
}

function renderTotals(weeks, currencies, split) {
  const tfoot = $("#weekly-table tfoot");
  const row = h("tr", {}, h("th", { scope: "row" }, "Total", h("span", { class: "total__span" }, `${weeks.length} weeks`)));
  for (const currency of currencies) {
    const cells = weeks.map((w) => state.cell(w, currency));
    const digits = state.digits.get(currency) ?? 0;
    const total = sumDecimals(cells.map((c) => c.total), digits);
    const gross = sumDecimals(cells.map((c) => c.gross), digits);
    const reversed = sumDecimals(cells.map((c) => c.reversed), digits);
    const count = cells.reduce((n, c) => n + c.count, 0);
    const reversals = cells.reduce((n, c) => n + c.reversedCount, 0);
    if (split.has(currency)) {
      row.append(
        h("td", { class: "num sub", "data-testid": "range-gross", "data-currency": currency, "data-value": gross },
          h("span", { class: "amt" }, formatMoney(gross, currency))),
        h("td", { class: "num sub rev", "data-testid": "range-reversed", "data-currency": currency, "data-value": reversed, "data-count": reversals },
          h("span", { class: "amt" }, `\u2212${formatMoney(reversed, currency)}`),
          h("span", { class: "cnt" }, `${reversals.toLocaleString("en-US")} rev.`)),
      );
    }
    row.append(
      h(
        "td",
        { class: "num", "data-testid": "range-total", "data-currency": currency, "data-value": total, "data-count": count, "data-gross": gross, "data-reversed": reversed },
        h("span", { class: "amt" }, formatMoney(total, currency)),
        h("span", { class: "cnt" }, `${count.toLocaleString("en-US")} tx`),
      ),
    );
  }
  tfoot.replaceChildren(row);
}

function renderTable(changed = []) {
  const table = $("#weekly-table");
  const weeks = state.weeks();
  const currencies = state.currencies;
  // The chart's currency, when its range has reversals, gets gross, reversed and net columns: the table
  // mirrors the chart. The others keep one net column (their reversals in its second line), so the
  // table still fits beside the chart and on a phone.
  const shown = shownCurrency();
  const split = new Set(currencies.filter((currency) => currency === shown && state.hasReversals(currency, weeks)));
  const layout = `${weeks[0]}/${weeks.length}/${currencies.map((c) => (split.has(c) ? `${c}+` : c)).join(",")}`;
  if (layout !== tableLayout) {
    tableLayout = layout;
    table.classList.toggle("has-split", split.size > 0);
    const head = h("tr", {}, h("th", { scope: "col" }, "Week of"));
    for (const currency of currencies) {
      const swatch = () => h("span", { class: "swatch", style: `--swatch:${colorFor(currency)}`, "aria-hidden": "true" });
      if (split.has(currency)) {
        head.append(
          h("th", { scope: "col", class: "num sub", title: `${currency} approved in the week (by occurrence date)` }, currency, h("span", { class: "th__sub" }, "gross")),
          h("th", { scope: "col", class: "num sub rev", title: `${currency} reversed during the week` }, currency, h("span", { class: "th__sub" }, "reversed")),
          h("th", { scope: "col", class: "num", title: `${currency} net: gross less reversed` }, swatch(), currency, h("span", { class: "th__sub" }, "net")),
        );
      } else {
        head.append(h("th", { scope: "col", class: "num", title: `${currency} net income` }, swatch(), currency));
      }
    }
    $("thead", table).replaceChildren(head);
    const rows = [...weeks].reverse().map((week) => {
      const tr = h("tr", { "data-week": week },
        h("th", { scope: "row" }, h("time", { datetime: week, title: longWeekLabel(week) }, shortWeekLabel(week), h("span", { class: "yr" }, ` ${week.slice(0, 4)}`))));
      for (const currency of currencies) tr.append(...weekCells(week, currency, split.has(currency)));
      return tr;
    });
    $("tbody", table).replaceChildren(...rows);
    if (!currencies.length) {
      $("tbody", table).replaceChildren(
        h("tr", {}, h("td", { class: "empty", colspan: "1" }, "No approved income yet.")),
      );
    }
  } else {
    for (const key of changed) {
      const [week, currency] = key.split("|");
      const td = table.querySelector(`td[data-testid="week-total"][data-week="${week}"][data-currency="${currency}"]`);
      if (!td) continue;
      const cell = state.cell(week, currency);
      fillWeekCell(td, cell);
      flash(td);
      const gross = table.querySelector(`td[data-testid="week-gross"][data-week="${week}"][data-currency="${currency}"]`);
      const reversed = table.querySelector(`td[data-testid="week-reversed"][data-week="${week}"][data-currency="${currency}"]`);
      if (gross) fillGrossCell(gross, cell);
      if (reversed) {
        fillReversedCell(reversed, cell);
        flash(reversed);
      }
    }
  }
  renderTotals(weeks, currencies, split);
  const [first, last] = [weeks[0], weeks[weeks.length - 1]];
  const csv = $("#export-csv");
  csv.href = api.weeklyCsvUrl(first, last);
  csv.title = `Weekly totals from ${weekLabel(first)} to ${weekLabel(last)}, as CSV`;
  $("#chart-range").textContent = `${first.slice(0, 4) === last.slice(0, 4) ? shortWeekLabel(first) : weekLabel(first)} – ${weekLabel(last)}`;
}

// --- KPI tiles ----------------------------------------------------------------------------------
// "This week so far" is compared with last week up to the same moment (now minus 7 days), never
// with the whole of last week. That figure is the projection as it stood right after the last event
// recorded before that moment (GET weekly-income ?at=), so it counts what the dashboard showed then.

const WEEK_MS = 7 * 86_400_000;
const BASELINE_REFRESH_MS = 5 * 60_000;
let baseline = { state: "loading", week: null, cutoff: null, at: null, totals: new Map() };
let baselineBusy = false;

/** The highest event position recorded at or before `cutoffMs` (0: none), by binary search on the feed. */
async function positionAt(cutoffMs, last) {
  let lo = 0;
  let hi = last;
  while (lo < hi) {
    const mid = Math.floor((lo + hi + 1) / 2);
    const page = await api.events(mid - 1, 1); // the first event at or after `mid`
    const event = page.results[0];
    if (event && event.position <= hi && Date.parse(event.recorded_at) <= cutoffMs) lo = event.position;
    else hi = mid - 1;
  }
  return lo;
}

async function loadBaseline() {
  if (baselineBusy || firstSnapshot) return;
  baselineBusy = true;
  try {
    const cutoff = Date.now() - WEEK_MS;
    const week = addWeeks(state.lastWeek, -1);
    const at = await positionAt(cutoff, state.lastSeq);
    const rows = at > 0 ? (await api.weeklyIncomeAt(week, week, at)).results : [];
    baseline = {
      state: "ready",
      week,
      cutoff: new Date(cutoff).toISOString(),
      at,
      totals: new Map(rows.filter((r) => r.week_start === week).map((r) => [r.currency, r.total])),
    };
  } catch (error) {
    console.warn("week-to-date baseline:", error);
    baseline = { ...baseline, state: "failed" };
  } finally {
    baselineBusy = false;
  }
  renderKpis([]);
}

setInterval(() => loadBaseline(), BASELINE_REFRESH_MS);

function cutoffLabel(iso) {
  const p = partsOf(iso);
  return `${p.weekday} ${p.hour}:${p.minute}`;
}

function renderKpis(changed = []) {
  const grid = $("#kpis");
  const week = state.lastWeek;
  const previous = addWeeks(week, -1);
  if (baseline.state === "ready" && baseline.week !== previous) {
    baseline = { ...baseline, state: "loading" }; // a new week began: compare with the right one
    loadBaseline();
  }
  const ready = baseline.state === "ready";
  const currencies = state.currencies;
  grid.querySelectorAll(".kpi--placeholder").forEach((el) => el.remove());
  const tiles = new Map([...grid.querySelectorAll('[data-testid="kpi"]')].map((el) => [el.dataset.currency, el]));
  for (const [currency, el] of tiles) if (!currencies.includes(currency)) el.remove();
  if (!currencies.length && !grid.querySelector(".kpi--empty")) {
    grid.append(h("p", { class: "kpi kpi--empty" }, "No approved income yet: tiles appear with the first approval."));
  } else if (currencies.length) {
    grid.querySelector(".kpi--empty")?.remove();
  }
  const when = ready ? cutoffLabel(baseline.cutoff) : "";
  currencies.forEach((currency, index) => {
    const now = state.cell(week, currency);
    const full = state.cell(previous, currency);
    const base = ready ? baseline.totals.get(currency) ?? zeroWithDigits(state.digits.get(currency) ?? 2) : null;
    const change = ready ? percentChange(now.total, base) : null;
    const direction = change === null ? "none" : change.startsWith("-") ? "down" : /^0*\.?0*$/.test(change) ? "flat" : "up";
    const arrow = { up: "▲", down: "▼", flat: "■", none: "" }[direction];
    let chipText = "New";
    let chipWhy = `No income last week by ${when} to compare with`;
    if (!ready) {
      chipText = baseline.state === "failed" ? "n/a" : "…";
      chipWhy = baseline.state === "failed" ? "Last week's figure at this time could not be read" : "Reading last week's figure at this time";
    } else if (change !== null) {
      chipText = formatPercent(change);
      chipWhy = `Change from last week up to the same time (${when})`;
    }
    const tile = h(
      "article",
      { class: "kpi", "data-testid": "kpi", "data-currency": currency, style: `--accent:${colorFor(currency)}`, "aria-label": `${currency} income` },
      h("header", { class: "kpi__head" },
        h("span", { class: "kpi__cur" }, currency),
        h("span", { class: "kpi__label" }, "This week so far (net)"),
        h("span", { class: "kpi__count" }, `${now.count.toLocaleString("en-US")} approved`)),
      h("div", { class: "kpi__main" },
        h("p", { class: "kpi__value", "data-testid": "kpi-this-week", "data-value": now.total }, formatMoney(now.total, currency)),
        h("span", {
          class: `chip chip--${direction}`,
          "data-testid": "kpi-change",
          "data-value": change ?? "",
          "data-state": baseline.state,
          title: chipWhy,
        },
        arrow ? h("span", { "aria-hidden": "true" }, `${arrow} `) : null,
        chipText,
        h("span", { class: "visually-hidden" }, `: ${chipWhy}`))),
      h("p", { class: "kpi__foot" },
        ready ? ["Last week by ", h("time", { datetime: baseline.cutoff }, when), " ",
          h("span", { "data-testid": "kpi-last-week-to-date", "data-value": base, "data-at": String(baseline.at) }, formatMoney(base, currency)),
          " · "] : null,
        "whole week ",
        h("span", { "data-testid": "kpi-last-week", "data-value": full.total }, formatMoney(full.total, currency))),
      now.reversedCount
        ? h("p", { class: "kpi__rev", "data-testid": "kpi-reversed", "data-value": now.reversed },
          `Net of ${now.reversedCount} reversal${now.reversedCount === 1 ? "" : "s"} this week: \u2212${formatMoney(now.reversed, currency)}`)
        : null,
    );
    const existing = tiles.get(currency);
    if (existing) {
      existing.replaceWith(tile);
      if (changed.some((key) => key === `${week}|${currency}`)) flash(tile);
    }
    const at = grid.querySelectorAll('[data-testid="kpi"]')[index];
    if (!existing) grid.insertBefore(tile, at || null);
  });
}

// --- chart ----------------------------------------------------------------------------------------
// One currency at a time, as bars (a week is a bucket, nothing lies between weeks), on its own
// labelled axis at every width. The currency shown is remembered in this browser.

const CHART_CURRENCY_KEY = "ledgerpulse.chartCurrency";
let chart = null;
let chartLayout = "";
let chartCurrency = null;

function remembered(key) {
  try {
    return window.localStorage.getItem(key);
  } catch {
    return null; // storage disabled: nothing is remembered
  }
}

function remember(key, value) {
  try {
    window.localStorage.setItem(key, value);
  } catch {
    // storage disabled or full: the choice lasts for this page only
  }
}

function shownCurrency() {
  const currencies = state.currencies;
  if (chartCurrency && currencies.includes(chartCurrency)) return chartCurrency;
  const stored = remembered(CHART_CURRENCY_KEY);
  chartCurrency = currencies.includes(stored) ? stored : currencies[0] ?? null;
  return chartCurrency;
}

const switcher = $("#currency-switcher");
let switcherLayout = null;

function renderSwitcher() {
  const currencies = state.currencies;
  const current = shownCurrency();
  const layout = currencies.join(",");
  if (layout !== switcherLayout) {
    switcherLayout = layout;
    [...switcher.querySelectorAll("label")].forEach((label) => label.remove());
    for (const currency of currencies) {
      switcher.append(h("label", {},
        h("input", { type: "radio", name: "chart-currency", value: currency, "data-testid": "currency-option" }),
        h("span", {}, currency)));
    }
  }
  switcher.hidden = currencies.length < 2;
  switcher.querySelectorAll("input").forEach((input) => {
    input.checked = input.value === current;
  });
}

switcher.addEventListener("change", (event) => {
  const input = event.target.closest('input[name="chart-currency"]');
  if (!input?.checked) return;
  chartCurrency = input.value;
  remember(CHART_CURRENCY_KEY, chartCurrency);
  renderTable([]);
  renderChart();
});

function axisTitle(currency) {
  return `Income per week (${currency})`;
}

// Reversals are drawn as a hatched segment from the net bar's end to where the bar would end without
// them (gross): its length is the amount reversed that week. A pattern, not only a colour, so it reads
// without colour vision and in print.
const hatches = new Map();

function hatch(color) {
  if (!hatches.has(color)) {
    const tile = document.createElement("canvas");
    tile.width = tile.height = 8;
    const g = tile.getContext("2d");
    g.fillStyle = "#fee2e2";
    g.fillRect(0, 0, 8, 8);
    g.strokeStyle = color;
    g.lineWidth = 2;
    g.beginPath();
    g.moveTo(-2, 10);
    g.lineTo(10, -2);
    g.moveTo(-2, 2);
    g.lineTo(2, -2);
    g.moveTo(6, 10);
    g.lineTo(10, 6);
    g.stroke();
    hatches.set(color, g.createPattern(tile, "repeat"));
  }
  return hatches.get(color);
}

const REVERSED_COLOR = "#b91c1c";

/** The chart's numbers for one currency: net bars, and [net, gross] spans for the reversals. */
function chartSeries(weeks, currency) {
  const net = [];
  const reversed = [];
  for (const week of weeks) {
    const cell = currency ? state.cell(week, currency) : null;
    const value = cell ? Number(cell.total) : 0;
    net.push(value);
    reversed.push(cell && cell.reversedCount ? [value, Number(cell.gross)] : null);
  }
  return { net, reversed };
}

function renderChart() {
  const box = $("#chart-box");
  const weeks = state.weeks();
  const currency = shownCurrency();
  renderSwitcher();
  $("#chart-empty").hidden = currency !== null;
  if (!window.Chart) {
    $("#chart-empty").hidden = false;
    $("#chart-empty").textContent = "The chart could not be loaded; the table has every figure.";
    return;
  }
  const compact = box.clientWidth < 520;
  const canvas = $("#income-chart");
  canvas.dataset.currency = currency ?? "";
  canvas.setAttribute("aria-label", currency
    ? `Bar chart of net income per week in ${currency} (approved less reversed), ${weeks.length} weeks, reversals hatched. The table of weekly totals has the same figures.`
    : "Bar chart of approved income per week: no income yet.");
  const series = chartSeries(weeks, currency);
  const anyReversal = series.reversed.some((span) => span !== null);
  $("#chart-legend").hidden = !anyReversal;
  if (!chart) {
    chart = new window.Chart(canvas, {
      type: "bar",
      data: { labels: [], datasets: [] },
      options: {
        responsive: true,
        maintainAspectRatio: false,
        animation: { duration: 300 },
        interaction: { mode: "index", intersect: false },
        layout: { padding: { top: 4, right: 4 } },
        plugins: {
          legend: { display: false },
          tooltip: {
            backgroundColor: "#111827",
            padding: 10,
            // One line per drawn part: the net bar, and the reversed span when that week had reversals.
            filter: (item) => item.datasetIndex === 0 || item.raw !== null,
            callbacks: {
              title: (items) => (items.length ? `Week of ${longWeekLabel(state.weeks()[items[0].dataIndex])}` : ""),
              label: (item) => {
                const currency = item.chart.data.datasets[0].label;
                const cell = state.cell(state.weeks()[item.dataIndex], currency);
                if (item.datasetIndex === 0) {
                  const net = cell.reversedCount ? "Net " : "";
                  return ` ${net}${formatMoney(cell.total, currency)}  ·  ${cell.count} approved`;
                }
                return ` Reversed \u2212${formatMoney(cell.reversed, currency)} (${cell.reversedCount})  ·  gross ${formatMoney(cell.gross, currency)}`;
              },
            },
          },
        },
        scales: {},
      },
    });
  }
  const layout = `${weeks[0]}/${weeks.length}/${currency}/${compact}`;
  if (layout !== chartLayout) {
    chartLayout = layout;
    const color = currency ? colorFor(currency) : "#94a3b8";
    chart.data.labels = weeks.map(shortWeekLabel);
    $("#legend-net").style.setProperty("--swatch", color);
    chart.data.datasets = [{
      label: currency ?? "",
      data: series.net,
      backgroundColor: `${color}cc`,
      hoverBackgroundColor: color,
      borderRadius: 3,
      maxBarThickness: 36,
      grouped: false,
    }, {
      // Floating bars [net, gross]: drawn in the same slot as the net bar (grouped: false).
      label: `${currency ?? ""} reversed`,
      data: series.reversed,
      backgroundColor: hatch(REVERSED_COLOR),
      hoverBackgroundColor: hatch(REVERSED_COLOR),
      borderColor: REVERSED_COLOR,
      borderWidth: 1,
      borderSkipped: false,
      borderRadius: 3,
      maxBarThickness: 36,
      grouped: false,
    }];
    chart.options.scales = {
      x: {
        grid: { display: false },
        border: { color: "#d5d9e0" },
        ticks: { color: "#5b6472", maxRotation: 0, autoSkip: true, autoSkipPadding: compact ? 14 : 6, font: { size: 11 } },
      },
      y: {
        type: "linear",
        position: "left",
        beginAtZero: true,
        grace: "8%",
        display: true, // on every screen size: a bar without a scale cannot be read
        title: { display: true, text: currency ? axisTitle(currency) : "", color: "#1f2733", font: { size: 12, weight: "600" } },
        grid: { color: "#edf0f4", drawTicks: false },
        border: { display: false },
        ticks: {
          color: "#5b6472",
          maxTicksLimit: compact ? 5 : 6,
          padding: 6,
          font: { size: 11 },
          callback: (value) => formatCompact(value, currency ?? "XXX"),
        },
      },
    };
  } else {
    chart.data.datasets[0].data = series.net;
    chart.data.datasets[1].data = series.reversed;
  }
  chart.update();
  box.setAttribute("aria-busy", "false");
  box.dataset.drawn = "true";
}

// --- pending queue --------------------------------------------------------------------------------

const queueBody = $("#queue-body");
let queueShown = false; // rows of the first render are not "new"
const selected = new Set(); // ids of the rows ticked for a bulk decision (only rows shown)
const rowProblems = new Map(); // id -> why its last decision was refused (shown in the row until acted on again)
const filter = { search: "", currency: "" };

function awaitingMark(txn) {
  if (txn.status !== "awaiting_second_approval") return null;
  const first = txn.first_approved_by || "another admin";
  return h("span", { class: "mark mark--second", "data-testid": "awaiting-mark", "data-first-approver": txn.first_approved_by || "" },
    `1st approval by ${first} · needs a 2nd approver`);
}

function pendingRow(txn) {
  const label = txnLabel(txn);
  const amount = formatMoney(txn.amount, txn.currency);
  const disabled = canDecide ? null : true;
  const why = canDecide ? null : "You do not have permission to decide transactions";
  const second = txn.status === "awaiting_second_approval";
  const problem = rowProblems.get(txn.id);
  return h(
    "tr",
    {
      class: `qrow${second ? " is-awaiting" : ""}${problem ? " has-problem" : ""}`,
      "data-testid": "pending-row",
      "data-id": txn.id,
      "data-status": txn.status || "pending",
      "data-first-approver": txn.first_approved_by || null,
    },
    h("td", { class: "pick" },
      h("input", {
        type: "checkbox",
        "data-testid": "select-row",
        "data-action": "select",
        "aria-label": `Select ${label}, ${amount}`,
        checked: selected.has(txn.id),
        disabled,
      })),
    h("td", { class: "ref" },
      h("button", { type: "button", class: "ref__main linkish", "data-action": "detail", "data-testid": "open-detail", title: "Show details and audit trail" }, label),
      txn.description ? h("span", { class: "ref__sub" }, txn.description) : null,
      awaitingMark(txn),
      problem ? h("span", { class: "row-problem", "data-testid": "row-problem", role: "alert" }, problem) : null),
    h("td", { class: "occ", "data-label": "Occurred" }, h("time", { datetime: txn.occurred_at }, formatDate(txn.occurred_at))),
    h("td", { class: "sub", "data-label": "Submitted" },
      h("time", { datetime: txn.created_at }, formatDateTime(txn.created_at)),
      txn.submitted_by ? h("span", { class: "sub__by" }, ` by ${txn.submitted_by}`) : null),
    h("td", { class: "num amt", "data-value": txn.amount, "data-currency": txn.currency }, amount),
    h("td", { class: "actions" },
      h("div", { class: "btn-group" },
        h("button", {
          type: "button", class: "btn btn--approve btn--sm", "data-testid": "approve", "data-action": "approve",
          "aria-label": second ? `Give ${label}, ${amount}, its second approval` : `Approve ${label}, ${amount}`, disabled, title: why,
        }, second ? "Approve (2nd)" : "Approve"),
        h("button", { type: "button", class: "btn btn--reject btn--sm", "data-testid": "reject", "data-action": "reject", "aria-label": `Reject ${label}, ${amount}`, disabled, title: why }, "Reject"))),
  );
}

/** The rows the queue shows: every loaded pending row that matches the search and currency. */
function shownRows() {
  return state.pendingRows().filter((txn) => matchesFilter(txn, filter));
}

function renderCurrencyFilter() {
  const select = $("#pending-currency");
  const currencies = [...new Set([...state.pending.values()].map((t) => t.currency).concat(filter.currency ? [filter.currency] : []))].sort();
  const have = [...select.options].slice(1).map((o) => o.value);
  if (have.join(",") === currencies.join(",")) return;
  select.replaceChildren(h("option", { value: "" }, "All currencies"), ...currencies.map((c) => h("option", { value: c }, c)));
  select.value = filter.currency;
}

function renderSelection() {
  const shown = [...queueBody.querySelectorAll('[data-testid="pending-row"]')];
  const ids = shown.map((tr) => tr.dataset.id);
  for (const id of [...selected]) if (!ids.includes(id)) selected.delete(id); // only what is on screen is acted on
  for (const tr of shown) {
    const box = tr.querySelector('[data-testid="select-row"]');
    if (box) box.checked = selected.has(tr.dataset.id);
    tr.classList.toggle("is-selected", selected.has(tr.dataset.id));
  }
  const all = $("#select-all");
  all.checked = ids.length > 0 && ids.every((id) => selected.has(id));
  all.indeterminate = selected.size > 0 && !all.checked;
  all.disabled = !canDecide || ids.length === 0;
  const count = $("#selection-count");
  count.dataset.value = String(selected.size);
  count.textContent = `${selected.size.toLocaleString("en-US")} selected`;
  $("#bulk-approve").disabled = !canDecide || selected.size === 0 || bulkBusy;
  $("#bulk-reject").disabled = !canDecide || selected.size === 0 || bulkBusy;
  $("#bulk-approve").textContent = selected.size ? `Approve ${selected.size}` : "Approve selected";
  $("#bulk-reject").textContent = selected.size ? `Reject ${selected.size}` : "Reject selected";
}

function renderQueue() {
  const rows = shownRows();
  const wanted = new Map(rows.map((t) => [t.id, t]));
  const existing = new Map([...queueBody.children].filter((tr) => tr.dataset.id).map((tr) => [tr.dataset.id, tr]));
  let refocusIndex = null;
  [...queueBody.children].forEach((tr, index) => {
    if (wanted.has(tr.dataset.id)) return;
    if (tr.contains(document.activeElement)) refocusIndex = index;
    tr.remove();
    existing.delete(tr.dataset.id);
  });
  rows.forEach((txn, index) => {
    let tr = existing.get(txn.id);
    // A row whose status changed (a first approval arrived) is drawn again, unless someone is acting on it.
    if (tr && tr.dataset.status !== (txn.status || "pending") && !tr.classList.contains("is-busy") && !waiting.has(txn.id)) {
      const fresh = pendingRow(txn);
      const hadFocus = tr.contains(document.activeElement);
      tr.replaceWith(fresh);
      flash(fresh);
      if (hadFocus) fresh.querySelector("button:not([disabled])")?.focus();
      tr = fresh;
    }
    tr = tr || pendingRow(txn);
    if (queueBody.children[index] !== tr) {
      queueBody.insertBefore(tr, queueBody.children[index] || null);
      if (!existing.has(txn.id) && queueShown) flash(tr);
    }
  });
  if (refocusIndex !== null) focusQueueRow(refocusIndex);
  queueShown = true;
  const count = $('[data-testid="pending-count"]');
  count.dataset.value = String(state.pendingCount);
  $(".badge__value", count).textContent = state.pendingCount.toLocaleString("en-US");
  const loaded = state.pending.size;
  const filtering = Boolean(filter.search.trim() || filter.currency);
  $("#queue-empty").hidden = loaded > 0;
  $("#queue-nomatch").hidden = loaded === 0 || rows.length > 0;
  $("#queue-table").hidden = rows.length === 0;
  $("#queue-tools").hidden = loaded === 0 && !filtering;
  $("#queue-shown").textContent = filtering
    ? `${rows.length} of ${loaded.toLocaleString("en-US")} loaded match${loaded < state.pendingCount ? " (load older to search more)" : ""}`
    : rows.length < state.pendingCount ? `Showing ${rows.length} of ${state.pendingCount.toLocaleString("en-US")}` : "";
  const more = $("#queue-more");
  more.hidden = state.pendingComplete;
  renderCurrencyFilter();
  renderSelection();
}

function setRowBusy(tr, busy, text) {
  tr.classList.toggle("is-busy", busy);
  tr.setAttribute("aria-busy", busy ? "true" : "false");
  tr.querySelectorAll("button").forEach((button) => {
    button.disabled = busy || !canDecide;
  });
  const approve = tr.querySelector('[data-action="approve"]');
  const idle = tr.dataset.status === "awaiting_second_approval" ? "Approve (2nd)" : "Approve";
  if (approve) approve.textContent = busy && text ? text : idle;
}

function heal(stillStale) {
  // If the socket has not brought the news in time, ask for a fresh snapshot.
  setTimeout(() => {
    if (stillStale()) live.resync(state.lastSeq);
  }, HEAL_AFTER_MS);
}

/** Applies this page's own decision at once (the socket brings the same news later, applied once). */
function applyOwnDecision(result, status, position = result.position) {
  let change;
  if (status === "approved" && result.status === "awaiting_second_approval") change = state.applyFirstApproval(result, position);
  else if (status === "reversed") change = state.applyReversal(result, position);
  else change = state.applyDecision(result, status, position);
  rowProblems.delete(result.id);
  applied(change);
  if (typeof position === "number") heal(() => state.lastSeq < position);
}

/** A refused decision: said in plain words, in the row (while it is listed) and as a toast. */
function decisionFailed(error, txn, verb) {
  const label = txnLabel(txn);
  const code = error.problem?.code;
  if (error.status === 409 && (!code || code === "transaction_not_pending" || code === "conflict")) {
    toast(`${label} was already decided by someone else.`, "warning");
    heal(() => state.pending.has(txn.id));
  } else if (error.status === 404) {
    toast(`${label} no longer exists.`, "warning");
    live.resync(state.lastSeq);
  } else if (error.status === 401) {
    toast("Your session has ended: sign in again.", "error");
  } else if (error.status === 0 || error.status >= 500) {
    toast(`Could not ${verb} ${label}: ${error.message}`, "error");
  } else {
    const message = problemMessage(error.problem, label, error.status);
    if (state.pending.has(txn.id)) {
      rowProblems.set(txn.id, message);
      redrawRow(txn.id);
    }
    toast(message, "error");
  }
}

/** Draws one queue row again (its problem line changed). */
function redrawRow(id) {
  const tr = queueBody.querySelector(`[data-testid="pending-row"][data-id="${id}"]`);
  const txn = state.pending.get(id);
  if (!tr || !txn || waiting.has(id)) return;
  const fresh = pendingRow(txn);
  const focused = tr.contains(document.activeElement) ? document.activeElement.dataset.action : null;
  tr.replaceWith(fresh);
  if (focused) fresh.querySelector(`[data-action="${focused}"]`)?.focus();
  renderSelection();
}

async function approve(tr, txn) {
  setRowBusy(tr, true, "Approving…");
  try {
    const result = await api.approve(txn.id);
    applyOwnDecision(result, "approved");
    if (result.status === "awaiting_second_approval") {
      toast(`First approval of ${txnLabel(txn)} · ${formatMoney(txn.amount, txn.currency)} recorded: its amount needs a second admin to approve it too.`, "info");
    } else {
      toast(`Approved ${txnLabel(txn)} · ${formatMoney(txn.amount, txn.currency)}`, "success");
    }
  } catch (error) {
    decisionFailed(error, txn, "approve");
  } finally {
    if (tr.isConnected) setRowBusy(tr, false);
    renderQueue(); // a first approval redraws the row, which could not happen while it was busy
  }
}

// Approve waits a few seconds before it is sent: the row stays where it is and the Approve button
// becomes Undo, so a second click that lands on the same spot cancels instead of approving the
// next row. Nothing reaches the server (or the audit log) until the window has passed.
const UNDO_KEY = "ledgerpulse.approveUndoMs"; // a per-browser override of the page's default
const waiting = new Map(); // transaction id -> {tr, txn, timer, ticker}

function undoWindowMs() {
  const stored = remembered(UNDO_KEY);
  if (stored !== null && stored !== "" && Number.isFinite(Number(stored)) && Number(stored) >= 0) return Number(stored);
  return Number(document.body.dataset.undoMs) || 0;
}

function setUndoLabel(button, label, seconds) {
  button.replaceChildren(`Undo · ${seconds} s`);
  button.setAttribute("aria-label", `Undo the approval of ${label}; it is sent in ${seconds} seconds`);
}

function scheduleApprove(tr, txn) {
  const ms = undoWindowMs();
  if (ms <= 0) {
    approve(tr, txn);
    return;
  }
  const label = txnLabel(txn);
  const button = tr.querySelector('[data-action="approve"]');
  const deadline = Date.now() + ms;
  tr.classList.add("is-waiting");
  tr.dataset.approvingAt = new Date(deadline).toISOString();
  button.dataset.action = "undo";
  button.dataset.testid = "undo";
  button.classList.replace("btn--approve", "btn--undo");
  const reject = tr.querySelector('[data-action="reject"]');
  if (reject) reject.disabled = true;
  const tick = () => setUndoLabel(button, label, Math.max(0, Math.ceil((deadline - Date.now()) / 1000)));
  tick();
  const entry = {
    tr,
    txn,
    ticker: setInterval(tick, 250),
    timer: setTimeout(() => {
      endWaiting(txn.id);
      if (state.pending.has(txn.id)) approve(tr, txn);
    }, ms),
  };
  waiting.set(txn.id, entry);
  toast(`Approving ${label} in ${Math.round(ms / 1000)} s. Undo stays where Approve was.`, "info");
}

/** Ends the window (sent or cancelled) and gives the row its Approve button back. */
function endWaiting(id) {
  const entry = waiting.get(id);
  if (!entry) return null;
  waiting.delete(id);
  clearTimeout(entry.timer);
  clearInterval(entry.ticker);
  const { tr, txn } = entry;
  tr.classList.remove("is-waiting");
  delete tr.dataset.approvingAt;
  const button = tr.querySelector('[data-action="undo"]');
  if (button) {
    button.dataset.action = "approve";
    button.dataset.testid = "approve";
    button.classList.replace("btn--undo", "btn--approve");
    button.replaceChildren(tr.dataset.status === "awaiting_second_approval" ? "Approve (2nd)" : "Approve");
    button.setAttribute("aria-label", `Approve ${txnLabel(txn)}, ${formatMoney(txn.amount, txn.currency)}`);
  }
  const reject = tr.querySelector('[data-action="reject"]');
  if (reject) reject.disabled = !canDecide;
  return entry;
}

function undoApprove(id) {
  const entry = endWaiting(id);
  if (entry) toast(`Approval of ${txnLabel(entry.txn)} cancelled: nothing was sent.`, "info");
}

// Leaving the page inside a window sends what was clicked: the admin meant to approve.
window.addEventListener("pagehide", () => {
  for (const { txn } of [...waiting.values()]) {
    endWaiting(txn.id);
    api.approve(txn.id, undefined, { keepalive: true }).catch(() => {});
  }
});

queueBody.addEventListener("click", (event) => {
  const button = event.target.closest("button[data-action]");
  if (!button || button.disabled) return;
  const tr = button.closest("tr");
  const action = button.dataset.action;
  if (action !== "detail" && rowProblems.delete(tr.dataset.id)) {
    tr.classList.remove("has-problem");
    tr.querySelector('[data-testid="row-problem"]')?.remove();
  }
  if (action === "detail") {
    openDetail(tr.dataset.id, button);
    return;
  }
  if (action === "undo") {
    undoApprove(tr.dataset.id);
    return;
  }
  const txn = state.pending.get(tr.dataset.id);
  if (!txn) return;
  if (action === "approve") scheduleApprove(tr, txn);
  else openReject(txn, button);
});

// The list API filters one status at a time: rows awaiting a second approval are read once (there are
// few) and each page of pending rows takes those that fall within it, so the queue stays newest first.
let awaitingPool = null;

async function loadAwaitingPool() {
  if (awaitingPool) return awaitingPool;
  const rows = [];
  let page = await api.pending(null, "awaiting_second_approval");
  rows.push(...page.results);
  for (let pages = 1; page.next && pages < 10; pages += 1) {
    page = await api.pending(page.next);
    rows.push(...page.results);
  }
  awaitingPool = rows;
  return rows;
}

function withAwaiting(page, pool) {
  const oldest = page.results[page.results.length - 1];
  if (!page.next || !oldest) return [...page.results, ...pool];
  const newer = (t) => t.created_at > oldest.created_at || (t.created_at === oldest.created_at && t.id > oldest.id);
  return [...page.results, ...pool.filter(newer)];
}

$("#queue-more").addEventListener("click", async (event) => {
  const button = event.currentTarget;
  button.disabled = true;
  button.textContent = "Loading…";
  try {
    const pool = await loadAwaitingPool();
    let page = await api.pending(state.pendingNext);
    let added = state.addPendingPage(withAwaiting(page, pool), page.next);
    // The first page may hold only rows already shown: keep paging until something is new.
    while (!added && page.next) {
      page = await api.pending(page.next);
      added = state.addPendingPage(withAwaiting(page, pool), page.next);
    }
    if (!page.next && !added) state.pendingCount = state.pending.size;
    renderQueue();
  } catch (error) {
    toast(`Could not load older pending transactions: ${error.message}`, "error");
  } finally {
    button.disabled = false;
    button.textContent = "Show older pending";
  }
});

// --- selection, search and bulk decisions -------------------------------------------------------------
// Ticked rows are decided together through the bulk endpoint: each one is its own decision, so some can
// be refused while the others go through. Refused rows stay ticked, with the reason in the row.

let bulkBusy = false;

queueBody.addEventListener("change", (event) => {
  const box = event.target.closest('input[data-action="select"]');
  if (!box) return;
  const id = box.closest("tr").dataset.id;
  if (box.checked) selected.add(id);
  else selected.delete(id);
  renderSelection();
});

$("#select-all").addEventListener("change", (event) => {
  const rows = [...queueBody.querySelectorAll('[data-testid="pending-row"]')];
  for (const tr of rows) {
    if (event.target.checked) selected.add(tr.dataset.id);
    else selected.delete(tr.dataset.id);
  }
  renderSelection();
});

let searchTimer = null;
$("#pending-search").addEventListener("input", (event) => {
  clearTimeout(searchTimer);
  const value = event.target.value;
  searchTimer = setTimeout(() => {
    filter.search = value;
    renderQueue();
  }, 120);
});

$("#pending-currency").addEventListener("change", (event) => {
  filter.currency = event.target.value;
  renderQueue();
});

function selectedTransactions() {
  return [...selected].map((id) => state.pending.get(id)).filter(Boolean);
}

/** Sends one bulk request for `txns`; applies what went through, marks what was refused. Returns the split. */
async function decideMany(txns, action, reason) {
  const status = action === "approve" ? "approved" : "rejected";
  const rows = txns.map((txn) => queueBody.querySelector(`[data-testid="pending-row"][data-id="${txn.id}"]`)).filter(Boolean);
  bulkBusy = true;
  renderSelection();
  rows.forEach((tr) => setRowBusy(tr, true, action === "approve" ? "Approving…" : null));
  const key = newKey();
  const decisions = txns.map((txn) => (reason ? { id: txn.id, action, reason } : { id: txn.id, action }));
  try {
    let answer;
    try {
      answer = await api.bulkDecisions(decisions, key);
    } catch (error) {
      // Lost on the way (no answer at all): the same key again can only take effect once.
      if (error.status !== 0) throw error;
      answer = await api.bulkDecisions(decisions, key);
    }
    const outcome = bulkOutcome(answer);
    const byId = new Map(txns.map((txn) => [txn.id, txn]));
    for (const item of outcome.done) {
      selected.delete(item.id);
      applyOwnDecision(item.transaction, status, item.position ?? outcome.position);
    }
    for (const item of outcome.failed) {
      const txn = byId.get(item.id) || { id: item.id };
      rowProblems.set(item.id, problemMessage(item.problem, txnLabel(txn), item.status));
      if (item.status === 409 && (item.problem?.code === "transaction_not_pending" || !item.problem?.code)) {
        heal(() => state.pending.has(item.id));
      }
    }
    return outcome;
  } finally {
    bulkBusy = false;
    rows.forEach((tr) => tr.isConnected && setRowBusy(tr, false));
    for (const id of rowProblems.keys()) redrawRow(id);
    renderQueue();
  }
}

function summarize(outcome, verb) {
  const total = outcome.done.length + outcome.failed.length;
  const awaiting = outcome.done.filter((item) => item.transaction.status === "awaiting_second_approval").length;
  const parts = [`${verb} ${outcome.done.length - awaiting} of ${total}`];
  if (awaiting) parts.push(`${awaiting} got a first approval and now need a second approver`);
  if (outcome.failed.length) parts.push(`${outcome.failed.length} refused: ${outcome.failed.length === 1 ? "it stays" : "they stay"} selected, with the reason in the row`);
  toast(parts.join("; "), outcome.failed.length ? "warning" : "success");
}

$("#bulk-approve").addEventListener("click", async () => {
  const txns = selectedTransactions();
  if (!txns.length || bulkBusy) return;
  try {
    summarize(await decideMany(txns, "approve"), "Approved");
  } catch (error) {
    toast(`Could not approve the selection: ${problemMessage(error.problem, `${txns.length} transactions`, error.status)}`, "error");
  }
});

$("#bulk-reject").addEventListener("click", (event) => {
  const txns = selectedTransactions();
  if (!txns.length || bulkBusy) return;
  openReject(txns, event.currentTarget);
});

// --- reject dialog ----------------------------------------------------------------------------------

const dialog = $("#reject-dialog");
const reasonField = $("#reject-reason");
const reasonError = $("#reject-error");
let rejecting = null; // {txns, many, opener, index}

function focusQueueRow(index) {
  const rows = queueBody.querySelectorAll('[data-testid="pending-row"]');
  const row = rows[Math.min(index, rows.length - 1)];
  const target = row?.querySelector('[data-action="approve"]:not([disabled])') || row?.querySelector("button:not([disabled])") || $("#queue-title");
  target.focus();
}

/** One transaction (its row's Reject) or several (the selection): one reason for all. */
function openReject(target, opener) {
  const many = Array.isArray(target);
  const rows = [...queueBody.querySelectorAll('[data-testid="pending-row"]')];
  rejecting = { txns: many ? target : [target], many, opener, index: Math.max(0, rows.indexOf(opener.closest("tr"))) };
  if (many) {
    const sums = new Map();
    for (const txn of target) sums.set(txn.currency, sumDecimals([sums.get(txn.currency) ?? "0", txn.amount]));
    const amounts = [...sums].map(([currency, amount]) => formatMoney(amount, currency)).join(" + ");
    $("#reject-title").textContent = `Reject ${target.length} transactions`;
    $("#reject-summary").textContent = `${target.length} selected · ${amounts}`;
    $("#reject-reason-note").textContent = "(required; the same reason is recorded for each)";
    $("#reject-confirm").textContent = `Reject ${target.length}`;
  } else {
    $("#reject-title").textContent = "Reject transaction";
    $("#reject-summary").textContent = `${txnLabel(target)} · ${formatMoney(target.amount, target.currency)} · occurred ${formatDate(target.occurred_at)}`;
    $("#reject-reason-note").textContent = "(required; shared with the audit log)";
    $("#reject-confirm").textContent = "Reject transaction";
  }
  reasonField.value = "";
  reasonField.removeAttribute("aria-invalid");
  reasonError.textContent = "";
  $("#reject-confirm").disabled = false;
  dialog.showModal();
  reasonField.focus();
}

function showReasonError(message) {
  reasonError.textContent = message;
  reasonField.setAttribute("aria-invalid", "true");
  reasonField.focus();
}

$("#reject-cancel").addEventListener("click", () => dialog.close("cancel"));

dialog.addEventListener("close", () => {
  const { opener, index } = rejecting || {};
  rejecting = null;
  if (opener?.isConnected) opener.focus();
  else focusQueueRow(index ?? 0);
});

$("#reject-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  if (!rejecting) return;
  const { txns, many, opener } = rejecting;
  const reason = reasonField.value.trim();
  if (!reason) {
    showReasonError("Enter a reason: rejections are recorded with one.");
    return;
  }
  const confirm = $("#reject-confirm");
  confirm.disabled = true;
  if (many) {
    try {
      const outcome = await decideMany(txns, "reject", reason);
      dialog.close("rejected");
      summarize(outcome, "Rejected");
    } catch (error) {
      if (error.status === 400) showReasonError(problemMessage(error.problem, "The reason", 400));
      else {
        dialog.close("failed");
        toast(`Could not reject the selection: ${problemMessage(error.problem, `${txns.length} transactions`, error.status)}`, "error");
      }
    } finally {
      confirm.disabled = false;
    }
    return;
  }
  const [txn] = txns;
  const tr = opener.closest("tr");
  if (tr) setRowBusy(tr, true, "Rejecting…");
  try {
    const result = await api.reject(txn.id, reason);
    dialog.close("rejected");
    applyOwnDecision(result, "rejected");
    toast(`Rejected ${txnLabel(txn)} · ${formatMoney(txn.amount, txn.currency)}`, "success");
  } catch (error) {
    if (error.status === 400) {
      showReasonError(error.fieldErrors.reason || error.message);
    } else {
      dialog.close("failed");
      decisionFailed(error, txn, "reject");
    }
  } finally {
    confirm.disabled = false;
    if (tr?.isConnected) setRowBusy(tr, false);
  }
});

// --- activity feed ------------------------------------------------------------------------------------

const feedList = $("#feed");
const FEED_TEXT = {
  "transaction.submitted": ["Submitted", "submitted", "+"],
  "transaction.approval_recorded": ["First approval", "first", "½"],
  "transaction.approved": ["Approved", "approved", "✓"],
  "transaction.rejected": ["Rejected", "rejected", "✕"],
  "transaction.reversed": ["Reversed", "reversed", "↺"],
};
const FEED_FROM_EVENT = {
  TransactionSubmitted: "transaction.submitted",
  TransactionApprovalRecorded: "transaction.approval_recorded",
  TransactionApproved: "transaction.approved",
  TransactionRejected: "transaction.rejected",
  TransactionReversed: "transaction.reversed",
};
const WITH_REASON = new Set(["transaction.rejected", "transaction.reversed"]);
const BACKFILL_EVENTS = 1000; // one page of the events API: enough to find the submissions behind 50 decisions

function feedItem(entry) {
  const txn = entry.transaction;
  const [verb, modifier, icon] = FEED_TEXT[entry.type];
  const who = entry.type === "transaction.submitted" ? entry.actor || txn.submitted_by || null
    : entry.type === "transaction.approval_recorded" ? entry.actor || txn.first_approved_by || txn.decided_by
    : entry.actor || txn.decided_by;
  return h(
    "li",
    { class: `feed__item feed__item--${modifier}`, "data-testid": "feed-item", "data-type": entry.type, "data-id": txn.id, "data-key": entry.key },
    h("span", { class: "feed__icon", "aria-hidden": "true" }, icon),
    h("div", { class: "feed__body" },
      h("p", { class: "feed__line" },
        h("strong", {}, verb), " ",
        h("button", { type: "button", class: "feed__ref linkish", "data-action": "detail", "data-testid": "open-detail", title: "Show details and audit trail" }, txnLabel(txn)),
        txn.amount && txn.currency ? h("span", { class: "feed__amt" }, formatMoney(txn.amount, txn.currency)) : null),
      h("p", { class: "feed__meta" },
        who ? `by ${who} · ` : "",
        h("time", { datetime: entry.at || "" }, formatTime(entry.at)),
        entry.type === "transaction.approval_recorded" ? " · needs a second approver" : ""),
      WITH_REASON.has(entry.type) && (entry.reason ?? txn.decision_reason)
        ? h("p", { class: "feed__reason" }, `“${entry.reason ?? txn.decision_reason}”`) : null,
      entry.type === "transaction.approved" && canDecide
        ? h("p", { class: "feed__actions" },
          h("button", {
            type: "button", class: "btn btn--reject btn--xs", "data-action": "reverse", "data-testid": "reverse",
            "aria-label": `Reverse the approval of ${txnLabel(txn)}${txn.amount ? `, ${formatMoney(txn.amount, txn.currency)}` : ""}`,
          }, "Reverse…"),
          h("span", { class: "feed__done", "data-testid": "reversed-mark", hidden: true }, "Reversed since"))
        : null),
  );
}

/** Recent approvals keep a Reverse button until they are reversed (by anyone). */
function refreshFeedActions(li) {
  if (li.dataset.type !== "transaction.approved") return;
  const reversed = state.isReversed(li.dataset.id);
  const button = li.querySelector('[data-action="reverse"]');
  const mark = li.querySelector('[data-testid="reversed-mark"]');
  if (button) button.hidden = reversed;
  if (mark) mark.hidden = !reversed;
  li.classList.toggle("is-reversed", reversed);
}

function renderFeed() {
  const existing = new Map([...feedList.children].map((li) => [li.dataset.key, li]));
  const wanted = new Set(state.feed.map((e) => e.key));
  for (const [key, li] of existing) if (!wanted.has(key)) li.remove();
  state.feed.forEach((entry, index) => {
    const li = existing.get(entry.key) || feedItem(entry);
    if (feedList.children[index] !== li) feedList.insertBefore(li, feedList.children[index] || null);
    refreshFeedActions(li);
  });
  $("#feed-empty").hidden = state.feed.length > 0;
}

feedList.addEventListener("click", (event) => {
  const button = event.target.closest("button[data-action]");
  if (!button) return;
  const li = button.closest("li");
  if (button.dataset.action === "detail") openDetail(li.dataset.id, button);
  if (button.dataset.action === "reverse") {
    const entry = state.feed.find((e) => e.key === li.dataset.key);
    if (entry) openReverse(entry.transaction, button);
  }
});

/** On load the feed shows what happened before the page opened, read from the events API. */
async function backfillFeed(upTo) {
  try {
    const page = await api.events(Math.max(0, upTo - BACKFILL_EVENTS), BACKFILL_EVENTS);
    const submissions = new Map();
    for (const event of page.results) {
      if (event.type === "TransactionSubmitted") submissions.set(event.data.transaction_id ?? event.stream_id, event);
    }
    const entries = [];
    for (const event of page.results) {
      const type = FEED_FROM_EVENT[event.type];
      if (!type) continue;
      const id = event.data.transaction_id ?? event.stream_id;
      const submitted = submissions.get(id);
      const known = state.pending.get(id) || {};
      if (type === "transaction.reversed") state.rememberDecision(id, "reversed");
      entries.push({
        key: `${type}:${id}`,
        type,
        seq: event.position,
        at: event.recorded_at,
        actor: event.metadata?.actor ?? "",
        reason: event.data.reason ?? "",
        transaction: {
          id,
          amount: event.data.amount ?? submitted?.data.amount ?? known.amount,
          currency: event.data.currency ?? submitted?.data.currency ?? known.currency,
          reference: submitted?.data.reference ?? known.reference ?? "",
          description: submitted?.data.description ?? known.description ?? "",
          created_at: submitted?.recorded_at ?? known.created_at,
          decided_at: type === "transaction.submitted" ? null : event.recorded_at,
          decided_by: type === "transaction.submitted" ? "" : event.metadata?.actor ?? "",
          decision_reason: event.data.reason ?? "",
        },
      });
    }
    state.backfillFeed(entries.slice(-FEED_LIMIT));
  } catch (error) {
    console.warn("feed backfill:", error);
  }
  feedList.dataset.backfilled = "true";
  renderFeed();
}

// --- transaction detail ---------------------------------------------------------------------------------

const detailDialog = $("#detail-dialog");
let detailOpener = null;
const AUDIT_TEXT = {
  TransactionSubmitted: "Submitted",
  TransactionApprovalRecorded: "First approval recorded",
  TransactionApproved: "Approved",
  TransactionRejected: "Rejected",
  TransactionReversed: "Reversed",
};

function fact(term, value, testid) {
  return [h("dt", {}, term), h("dd", { "data-testid": testid }, value)];
}

function auditEntry(event) {
  const reason = event.data?.reason;
  return h(
    "li",
    { class: "audit__item", "data-testid": "audit-entry", "data-type": event.type, "data-position": String(event.position) },
    h("p", { class: "audit__what" },
      h("strong", {}, AUDIT_TEXT[event.type] || event.type), " by ",
      h("span", { "data-testid": "audit-who" }, event.metadata?.actor || "unknown")),
    h("p", { class: "audit__when" },
      h("time", { datetime: event.recorded_at, "data-testid": "audit-when" }, `${formatDate(event.recorded_at)}, ${formatTime(event.recorded_at)}`),
      ` ${state.timeZone}`),
    reason ? h("p", { class: "audit__why" }, "Reason: ", h("span", { "data-testid": "audit-why" }, reason)) : null,
  );
}

let detailTxn = null;

function statusText(txn) {
  if (txn.status === "awaiting_second_approval") {
    return `awaiting a second approval (first approval by ${txn.first_approved_by || "another admin"})`;
  }
  if (txn.status === "reversed" && txn.decided_by) return `reversed by ${txn.decided_by}`;
  return txn.status.replaceAll("_", " ");
}

async function openDetail(id, opener) {
  detailOpener = opener;
  detailTxn = null;
  $("#detail-reverse").hidden = true;
  const facts = $("#detail-facts");
  const audit = $("#detail-audit");
  detailDialog.dataset.id = id;
  $("#detail-title").textContent = "Transaction";
  facts.replaceChildren();
  audit.replaceChildren(h("li", { class: "muted" }, "Loading…"));
  audit.setAttribute("aria-busy", "true");
  if (!detailDialog.open) detailDialog.showModal();
  try {
    const [txn, events] = await Promise.all([api.transaction(id), api.transactionEvents(id)]);
    if (detailDialog.dataset.id !== id) return;
    $("#detail-title").textContent = `Transaction ${txnLabel(txn)}`;
    detailTxn = txn;
    const reverse = $("#detail-reverse");
    reverse.hidden = !(canDecide && txn.status === "approved");
    reverse.setAttribute("aria-label", `Reverse the approval of ${txnLabel(txn)}, ${formatMoney(txn.amount, txn.currency)}`);
    facts.replaceChildren(
      ...fact("Amount", formatMoney(txn.amount, txn.currency), "detail-amount"),
      ...fact("Status", statusText(txn), "detail-status"),
      ...(txn.submitted_by ? fact("Submitted by", txn.submitted_by, "detail-submitted-by") : []),
      ...(txn.first_approved_by ? fact("First approval", txn.first_approved_by, "detail-first-approver") : []),
      ...fact("Occurred", `${formatDateTime(txn.occurred_at)} ${state.timeZone}`, "detail-occurred"),
      ...fact("Reference", txn.reference || "—", "detail-reference"),
      ...(txn.description ? fact("Description", txn.description, "detail-description") : []),
      ...fact("ID", txn.id, "detail-id"),
    );
    audit.replaceChildren(...events.results.map(auditEntry));
  } catch (error) {
    if (detailDialog.dataset.id === id) audit.replaceChildren(h("li", { class: "field__error", role: "alert" }, `Could not load the details: ${error.message}`));
  } finally {
    if (detailDialog.dataset.id === id) audit.setAttribute("aria-busy", "false");
  }
}

detailDialog.addEventListener("close", () => {
  if (reversing?.fromDetail) return; // the reverse dialog is on top; the panel is opened again after it
  delete detailDialog.dataset.id;
  if (detailOpener?.isConnected) detailOpener.focus();
  detailOpener = null;
});

$("#detail-reverse").addEventListener("click", (event) => {
  if (detailTxn) openReverse(detailTxn, event.currentTarget, { fromDetail: true });
});

// --- reverse dialog ------------------------------------------------------------------------------------
// A reversal is recorded beside the approval (nothing is edited) and counts in the week it happens.

const reverseDialog = $("#reverse-dialog");
const reverseReason = $("#reverse-reason");
const reverseError = $("#reverse-error");
let reversing = null; // {txn, opener, key, fromDetail}

function openReverse(txn, opener, { fromDetail = false } = {}) {
  // A new key per opening; retries from this dialog (a lost answer) reuse it and take effect once.
  reversing = { txn, opener, key: newKey(), fromDetail };
  reverseDialog.returnValue = "";
  const amount = txn.amount && txn.currency ? ` · ${formatMoney(txn.amount, txn.currency)}` : "";
  $("#reverse-summary").textContent = `${txnLabel(txn)}${amount}${txn.decided_by ? ` · approved by ${txn.decided_by}` : ""}`;
  reverseReason.value = "";
  reverseReason.removeAttribute("aria-invalid");
  reverseError.textContent = "";
  $("#reverse-confirm").disabled = false;
  reverseDialog.showModal();
  reverseReason.focus();
}

function showReverseError(message) {
  reverseError.textContent = message;
  reverseReason.setAttribute("aria-invalid", "true");
  reverseReason.focus();
}

$("#reverse-cancel").addEventListener("click", () => reverseDialog.close("cancel"));

reverseDialog.addEventListener("close", () => {
  const { opener, fromDetail, txn } = reversing || {};
  reversing = null;
  const done = reverseDialog.returnValue === "reversed";
  if (fromDetail && detailDialog.open && txn && done) openDetail(txn.id, detailOpener); // the new status and trail
  else if (fromDetail && detailDialog.open) $("#detail-reverse").focus();
  else if (opener?.isConnected && !opener.hidden) opener.focus();
  else $("#feed-title").focus?.();
});

$("#reverse-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  if (!reversing) return;
  const { txn, key } = reversing;
  const reason = reverseReason.value.trim();
  if (!reason) {
    showReverseError("Enter a reason: a reversal is recorded with one (refund, chargeback, approved by mistake…).");
    return;
  }
  const confirm = $("#reverse-confirm");
  confirm.disabled = true;
  try {
    const result = await api.reverse(txn.id, reason, key);
    reverseDialog.close("reversed");
    applyOwnDecision(result, "reversed");
    toast(`Reversed ${txnLabel(txn)} · ${formatMoney(result.amount, result.currency)}: this week's net income is lower by that amount.`, "success");
  } catch (error) {
    if (error.status === 400) showReverseError(error.fieldErrors.reason || problemMessage(error.problem, txnLabel(txn), 400));
    else if (error.status === 0 || error.status >= 500) showReverseError(`Not reversed yet: ${error.message} Try again; it is recorded once.`);
    else showReverseError(problemMessage(error.problem, txnLabel(txn), error.status));
  } finally {
    confirm.disabled = false;
  }
});

// --- review queue tiles ----------------------------------------------------------------------------------
// Pending now, the oldest one's age (ticking here between updates), and this week's median time from
// submission to decision, from the snapshot's "review_queue" and `review_queue.updated` messages.

let reviewFetched = false;

function oldestAgeSeconds(pending) {
  if (!pending?.oldest_submitted_at) return null;
  return Math.max(0, Math.floor((Date.now() - Date.parse(pending.oldest_submitted_at)) / 1000));
}

function setTile(testid, value, text, title) {
  const el = $(`[data-testid="${testid}"]`);
  el.dataset.value = value === null || value === undefined ? "" : String(value);
  el.textContent = text;
  if (title) el.title = title;
  return el;
}

function renderReview() {
  const { pending, week } = state.review;
  if (pending) setTile("rq-pending", pending.count, Number(pending.count).toLocaleString("en-US"), "Pending or awaiting a second approval");
  renderOldest();
  if (week || pending) {
    const p50 = week?.time_to_decision_p50_seconds ?? null;
    const p90 = week?.time_to_decision_p90_seconds ?? null;
    const decisions = week?.decisions ?? 0;
    setTile("rq-median", p50 === null ? null : Math.round(p50), p50 === null ? "–" : formatDuration(p50),
      p50 === null ? "No decision yet this week" : `Median from submission to approval or rejection, ${decisions} decisions this week`);
    $("#rq-median-hint").textContent = p50 === null
      ? "this week: no decision yet"
      : `this week · ${decisions.toLocaleString("en-US")} decision${decisions === 1 ? "" : "s"}${p90 === null ? "" : ` · p90 ${formatDuration(p90)}`}`;
  }
}

function renderOldest() {
  const pending = state.review.pending;
  if (!pending) return;
  const age = oldestAgeSeconds(pending);
  const el = setTile("rq-oldest", age, age === null ? "none" : formatDuration(age));
  el.dataset.since = pending.oldest_submitted_at || "";
  el.classList.toggle("is-old", age !== null && age >= 86_400);
  $("#rq-oldest-hint").textContent = age === null ? "nothing is waiting" : `waiting since ${formatDateTime(pending.oldest_submitted_at)}`;
}

setInterval(renderOldest, 1000);

/** A server whose snapshot has no "review_queue" yet: read it once from the REST API. */
async function fetchReview() {
  if (reviewFetched) return;
  reviewFetched = true;
  try {
    const report = await api.reviewQueue();
    if (state.review.seq === 0) {
      state.review.pending = report.pending;
      state.review.week = report.weeks?.at(-1) ?? null;
      renderReview();
    }
  } catch (error) {
    console.warn("review queue:", error);
  }
}

// --- range ------------------------------------------------------------------------------------------------

let rangeRequest = 0;

async function loadRange(weeks) {
  const last = state.lastWeek;
  const from = addWeeks(last, -(weeks - 1));
  if (loadedFrom !== null && loadedFrom <= from) return true;
  const ticket = ++rangeRequest;
  $("#chart-box").setAttribute("aria-busy", "true");
  $("#weekly-scroll").setAttribute("aria-busy", "true");
  try {
    const report = await api.weeklyIncome(from, last);
    const weekly = state.applyWeeklyRows(report.results, report.as_of);
    if (loadedFrom === null || from < loadedFrom) loadedFrom = from;
    return ticket === rangeRequest ? weekly : "superseded";
  } catch (error) {
    toast(`Could not load ${weeks} weeks: ${error.message}`, "error");
    return null;
  } finally {
    $("#weekly-scroll").setAttribute("aria-busy", "false");
  }
}

async function setRange(weeks) {
  if (firstSnapshot) {
    state.rangeWeeks = weeks; // applied when the first snapshot arrives
    return;
  }
  const loaded = await loadRange(weeks);
  if (loaded === "superseded") return; // a later choice is on its way
  if (!loaded) {
    document.querySelector(`input[name="range"][value="${state.rangeWeeks}"]`).checked = true;
    return;
  }
  state.rangeWeeks = weeks;
  document.querySelector(`input[name="range"][value="${weeks}"]`).checked = true;
  const url = new URL(window.location.href);
  if (weeks === SNAPSHOT_WEEKS) url.searchParams.delete("weeks");
  else url.searchParams.set("weeks", String(weeks));
  window.history.replaceState(null, "", url);
  renderWeekly([]);
}

document.querySelectorAll('input[name="range"]').forEach((input) => {
  input.checked = Number(input.value) === state.rangeWeeks;
  input.addEventListener("change", () => input.checked && setRange(Number(input.value)));
});

// --- applying changes ------------------------------------------------------------------------------------

function renderWeekly(changed) {
  renderTable(changed);
  renderKpis(changed);
  renderChart();
}

function renderMeta() {
  const start = state.weekStartDay === "sunday" ? "Sunday" : "Monday";
  $("#income-meta").textContent = `Net income per week (approved less reversed) · weeks start ${start} · times in ${state.timeZone}`;
}

function applied(change) {
  if (change.kind === "ignored") return;
  if (change.weekly) renderWeekly(change.weekly.changed);
  if (change.kind === "queue" || change.kind === "snapshot") renderQueue();
  if (change.feed || change.kind === "snapshot" || change.reversed) renderFeed();
  if (change.kind === "review" || change.kind === "snapshot") renderReview();
}

let firstSnapshot = true;

function onMessage(message) {
  if (message.type === "error") {
    console.warn("dashboard socket:", message.code, message.detail);
    return;
  }
  const change = state.applyMessage(message);
  renderSeq();
  if (change.kind === "snapshot") {
    // A snapshot covers the last 12 weeks; older weeks of a longer range are re-read.
    loadedFrom = state.weeks(SNAPSHOT_WEEKS)[0];
    awaitingPool = null;
    renderMeta();
    if (firstSnapshot) {
      firstSnapshot = false;
      if (!message.review_queue) fetchReview();
      backfillFeed(message.seq);
      loadBaseline();
      if (state.rangeWeeks > SNAPSHOT_WEEKS) {
        const wanted = state.rangeWeeks;
        state.rangeWeeks = SNAPSHOT_WEEKS;
        setRange(wanted);
      }
    } else if (state.rangeWeeks > SNAPSHOT_WEEKS) {
      loadRange(state.rangeWeeks).then((weekly) => weekly?.changed && renderWeekly(weekly.changed));
    }
  }
  applied(change);
}

const live = new LiveSocket(`${window.location.protocol === "https:" ? "wss" : "ws"}://${window.location.host}${document.body.dataset.wsPath}`, {
  resumeFrom: () => state.lastSeq,
});
live.addEventListener("state", (event) => renderConnection(event.detail));
live.addEventListener("message", (event) => onMessage(event.detail));

let resizeTimer = null;
window.addEventListener("resize", () => {
  clearTimeout(resizeTimer);
  resizeTimer = setTimeout(() => chart && renderChart(), 150);
});

// Nothing is drawn until the first snapshot: the page never shows made-up zeros.
renderConnection({ state: "connecting" });
live.start();
// For debugging in the console only; the page itself never reads these.
window.ledgerpulse = { state, live };
