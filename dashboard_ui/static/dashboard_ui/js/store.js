// The page's model of the server state, fed by websocket messages and REST reads.
// No DOM here: every apply* method returns what changed, and the view redraws that.
//
// Rules:
// - a weekly (week, currency) cell carries the seq its value reflects; a live
//   update only applies when its seq is newer, a snapshot or REST read (values
//   at one consistent position) when it is not older;
// - a snapshot is the new truth for the pending queue; transaction messages
//   after it are deltas, each applied once (keyed by type and id); the queue was read
//   at `pending.as_of`, which can be ahead of the snapshot's seq (the projector lags the
//   event store), so a transaction message up to that position is already in it and only
//   goes to the feed;
// - lastSeq is the highest seq received over the websocket, sent back on resume;
// - a weekly cell's `total` is its net (gross - reversed): the bars and the table show net,
//   and `gross`/`reversed` say how it came about;
// - a transaction awaiting its second approval stays in the pending queue (it still needs a
//   decision), marked with who approved first.

import { fractionDigits, zeroWithDigits } from "./money.js";
import { todayIn, weekRange, weekStartOf } from "./weeks.js";

export const FEED_LIMIT = 50;
const REMEMBERED_DECISIONS = 5000;

const DECISIONS = { "transaction.approved": "approved", "transaction.rejected": "rejected" };
export const WAITING = new Set(["pending", "awaiting_second_approval"]);

function newestFirst(a, b) {
  if (a.created_at !== b.created_at) return a.created_at < b.created_at ? 1 : -1;
  return a.id < b.id ? 1 : a.id > b.id ? -1 : 0;
}

export class DashboardState {
  constructor({ rangeWeeks = 12 } = {}) {
    this.rangeWeeks = rangeWeeks;
    this.timeZone = "UTC";
    this.weekStartDay = "monday";
    this.currentWeek = null;
    this.cells = new Map(); // "YYYY-MM-DD|EUR" -> {week, currency, total, count, gross, reversed, reversedCount, seq}
    this.digits = new Map(); // currency -> digits after the dot
    this.lastSeq = 0;
    this.snapshotSeq = null; // seq of the snapshot the queue was last reset from
    this.pendingAsOf = null; // the event position the snapshot's pending queue reflects (>= its seq)
    this.pending = new Map(); // id -> transaction (status pending)
    this.pendingCount = 0;
    this.pendingNext = null; // REST cursor URL for loading older pending rows
    this.appliedSinceSnapshot = new Set(); // "submitted:<id>" / "decided:<id>"
    this.decided = new Map(); // id -> "approved" | "rejected" | "reversed", remembered across snapshots
    // The review queue: pending now ({count, oldest_submitted_at, oldest_age_seconds}) and this week's decisions.
    this.review = { pending: null, week: null, seq: 0 };
    this.feed = []; // newest first
    this.feedKeys = new Set();
  }

  // --- weekly income -----------------------------------------------------------

  get currencies() {
    return [...this.digits.keys()].sort();
  }

  get lastWeek() {
    return this.currentWeek ?? weekStartOf(todayIn(this.timeZone), this.weekStartDay);
  }

  weeks(count = this.rangeWeeks) {
    return weekRange(this.lastWeek, count);
  }

  cell(week, currency) {
    const zero = zeroWithDigits(this.digits.get(currency) ?? 2);
    return (
      this.cells.get(`${week}|${currency}`) ?? {
        week,
        currency,
        total: zero,
        count: 0,
        gross: zero,
        reversed: zero,
        reversedCount: 0,
        seq: 0,
      }
    );
  }

  /** Whether any week of the range had a reversal in `currency` (the table then shows gross and reversed). */
  hasReversals(currency, weeks = this.weeks()) {
    return weeks.some((week) => this.cell(week, currency).reversedCount > 0);
  }

  /** Store one row at `seq`; returns {changed, layout} or null when it was not newer. */
  putCell(row, seq, { strict }) {
    const key = `${row.week_start}|${row.currency}`;
    const have = this.cells.get(key);
    if (have && (strict ? seq <= have.seq : seq < have.seq)) return null;
    const newCurrency = !this.digits.has(row.currency);
    if (newCurrency) this.digits.set(row.currency, fractionDigits(row.total));
    const newWeek = this.currentWeek === null || row.week_start > this.currentWeek;
    if (newWeek) this.currentWeek = row.week_start;
    const previous = have ?? this.cell(row.week_start, row.currency);
    const next = {
      week: row.week_start,
      currency: row.currency,
      total: row.total,
      count: Number(row.count),
      // A row without the breakdown (a server before reversals existed) had none: gross = total.
      gross: row.gross ?? row.total,
      reversed: row.reversed ?? zeroWithDigits(fractionDigits(row.total)),
      reversedCount: Number(row.reversed_count ?? 0),
      seq,
    };
    this.cells.set(key, next);
    const reversalsAppeared = (previous.reversedCount > 0) !== (next.reversedCount > 0);
    return {
      key,
      changed: ["total", "count", "gross", "reversed", "reversedCount"].some((field) => previous[field] !== next[field]),
      layout: newCurrency || newWeek || reversalsAppeared,
    };
  }

  /** Rows read at one position (snapshot or REST `as_of`). */
  applyWeeklyRows(rows, seq) {
    const result = { changed: [], layout: false };
    for (const row of rows) {
      const put = this.putCell(row, seq, { strict: false });
      if (!put) continue;
      if (put.changed) result.changed.push(put.key);
      result.layout ||= put.layout;
    }
    return result;
  }

  // --- websocket messages ---------------------------------------------------------

  applySnapshot(snapshot) {
    this.timeZone = snapshot.time_zone || this.timeZone;
    this.weekStartDay = snapshot.week_start_day || this.weekStartDay;
    const weekly = this.applyWeeklyRows(snapshot.weekly_income || [], snapshot.seq);
    this.snapshotSeq = snapshot.seq;
    this.lastSeq = Math.max(this.lastSeq, snapshot.seq);
    this.appliedSinceSnapshot.clear();
    this.pending = new Map();
    for (const txn of snapshot.pending?.latest || []) this.pending.set(txn.id, txn);
    this.pendingCount = snapshot.pending?.count ?? this.pending.size;
    this.pendingAsOf = Math.max(snapshot.seq, snapshot.pending?.as_of ?? snapshot.seq);
    this.pendingNext = null;
    if (snapshot.review_queue) {
      this.review = { pending: snapshot.review_queue.pending ?? null, week: snapshot.review_queue.this_week ?? null, seq: snapshot.seq };
    }
    return { kind: "snapshot", weekly };
  }

  /** `review_queue.updated`: the pending figures of its position, and the week it changed. */
  applyReviewQueue(message) {
    if (message.seq <= this.review.seq) return { kind: "ignored" };
    this.review.seq = message.seq;
    if (message.pending) this.review.pending = message.pending;
    const week = message.week;
    // Only this week's figures are shown; a decision's week is the week it was made, so an older
    // week's update (a late replay) never replaces the current one.
    if (week && (!this.review.week || week.week_start >= this.review.week.week_start) && week.week_start >= this.lastWeek) {
      this.review.week = week;
    }
    return { kind: "review" };
  }

  /** One message from the socket; returns a description of what it changed (or {kind: "ignored"}). */
  applyMessage(message) {
    if (typeof message.seq === "number") this.lastSeq = Math.max(this.lastSeq, message.seq);
    if (message.type === "snapshot") return this.applySnapshot(message);
    if (this.snapshotSeq === null || (typeof message.seq === "number" && message.seq <= this.snapshotSeq)) {
      return { kind: "ignored" };
    }
    if (message.type === "weekly_income.updated") {
      const put = this.putCell(message, message.seq, { strict: true });
      if (!put) return { kind: "ignored" };
      return { kind: "weekly", weekly: { changed: put.changed ? [put.key] : [], layout: put.layout } };
    }
    if (message.type === "transaction.submitted") return this.applySubmitted(message.transaction, message.seq);
    if (message.type in DECISIONS) return this.applyDecision(message.transaction, DECISIONS[message.type], message.seq);
    if (message.type === "transaction.approval_recorded") return this.applyFirstApproval(message.transaction, message.seq);
    if (message.type === "transaction.reversed") return this.applyReversal(message.transaction, message.seq);
    if (message.type === "review_queue.updated") return this.applyReviewQueue(message);
    return { kind: "ignored" };
  }

  /** Whether the snapshot's pending queue already reflects the event at `seq`. */
  inPendingSnapshot(seq) {
    return typeof seq === "number" && this.pendingAsOf !== null && seq <= this.pendingAsOf;
  }

  /** The first of two approvals: the row stays in the queue, now marked with its first approver. */
  applyFirstApproval(txn, seq) {
    const key = `first:${txn.id}`;
    if (this.appliedSinceSnapshot.has(key)) return { kind: "ignored" };
    this.appliedSinceSnapshot.add(key);
    const feed = this.addFeed("transaction.approval_recorded", txn, seq);
    if (this.inPendingSnapshot(seq)) return { kind: "queue", queue: false, feed };
    const listed = this.pending.get(txn.id);
    if (listed && !this.decided.has(txn.id)) {
      this.pending.set(txn.id, { ...listed, ...txn, status: "awaiting_second_approval" });
      return { kind: "queue", queue: true, updated: txn.id, feed };
    }
    return { kind: "queue", queue: false, feed };
  }

  /** A reversal of an approved transaction: not in the queue; the feed and recent approvals change. */
  applyReversal(txn, seq) {
    const key = `reversed:${txn.id}`;
    if (this.appliedSinceSnapshot.has(key)) return { kind: "ignored" };
    this.appliedSinceSnapshot.add(key);
    this.rememberDecision(txn.id, "reversed");
    const feed = this.addFeed("transaction.reversed", txn, seq);
    return { kind: "queue", queue: false, reversed: txn.id, feed };
  }

  /** Whether an approval can still be reversed, as far as this page knows. */
  isReversed(id) {
    return this.decided.get(id) === "reversed";
  }

  applySubmitted(txn, seq) {
    const key = `submitted:${txn.id}`;
    if (this.appliedSinceSnapshot.has(key)) return { kind: "ignored" };
    this.appliedSinceSnapshot.add(key);
    const feed = this.addFeed("transaction.submitted", txn, seq);
    if (this.inPendingSnapshot(seq)) return { kind: "queue", queue: false, feed };
    // Already listed (the snapshot read it) or decided before its submission arrived.
    if (this.pending.has(txn.id) || this.decided.has(txn.id)) return { kind: "queue", queue: false, feed };
    this.pending.set(txn.id, { ...txn, status: "pending" });
    this.pendingCount += 1;
    return { kind: "queue", queue: true, feed };
  }

  /** A decision from the socket, or from this page's own REST call (seq = its `position`). */
  applyDecision(txn, status, seq) {
    const key = `decided:${txn.id}`;
    if (this.appliedSinceSnapshot.has(key)) return { kind: "ignored" };
    this.appliedSinceSnapshot.add(key);
    this.rememberDecision(txn.id, status);
    const feed = this.addFeed(status === "approved" ? "transaction.approved" : "transaction.rejected", txn, seq);
    if (this.inPendingSnapshot(seq)) return { kind: "queue", queue: false, feed };
    if (this.pending.delete(txn.id)) {
      this.pendingCount = Math.max(0, this.pendingCount - 1);
      return { kind: "queue", queue: true, removed: txn.id, feed };
    }
    // Not listed: counted only if it is older than every loaded row of an incomplete list.
    if (!this.pendingComplete) {
      const rows = this.pendingRows();
      const oldest = rows[rows.length - 1];
      if (oldest && newestFirst(txn, oldest) > 0) {
        this.pendingCount = Math.max(0, this.pendingCount - 1);
        return { kind: "queue", queue: true, feed };
      }
    }
    return { kind: "queue", queue: false, feed };
  }

  rememberDecision(id, status) {
    if (this.decided.get(id) === "reversed" && status === "approved") return; // a late echo of the approval
    this.decided.delete(id);
    this.decided.set(id, status);
    if (this.decided.size > REMEMBERED_DECISIONS) this.decided.delete(this.decided.keys().next().value);
  }

  // --- pending queue --------------------------------------------------------------

  get pendingComplete() {
    return this.pending.size >= this.pendingCount;
  }

  pendingRows() {
    return [...this.pending.values()].sort(newestFirst);
  }

  /** A page of GET /api/transactions/?status=pending; returns how many rows were new. */
  addPendingPage(results, next) {
    // Only rows older than every loaded one: newer ones arrive over the socket,
    // where they are counted exactly once.
    const rows = this.pendingRows();
    const oldest = rows[rows.length - 1];
    let added = 0;
    for (const txn of results) {
      if (!WAITING.has(txn.status) || this.pending.has(txn.id) || this.decided.has(txn.id)) continue;
      if (oldest && newestFirst(txn, oldest) <= 0) continue;
      this.pending.set(txn.id, txn);
      added += 1;
    }
    this.pendingNext = next;
    if (!next && this.pending.size > this.pendingCount) this.pendingCount = this.pending.size;
    return added;
  }

  // --- activity feed --------------------------------------------------------------

  /** Older entries read from the events API on load: added once each, the feed kept newest first. */
  backfillFeed(entries) {
    let added = 0;
    for (const entry of entries) {
      if (this.feedKeys.has(entry.key)) continue;
      this.feedKeys.add(entry.key);
      this.feed.push(entry);
      added += 1;
    }
    this.feed.sort((a, b) => (b.seq ?? 0) - (a.seq ?? 0));
    while (this.feed.length > FEED_LIMIT) this.feed.pop();
    return added;
  }

  addFeed(type, txn, seq) {
    const key = `${type}:${txn.id}`;
    if (this.feedKeys.has(key)) return null;
    this.feedKeys.add(key);
    // A first approval may not be "the latest decision" of the read model: then it happened just now.
    const at = type === "transaction.submitted" ? txn.created_at : txn.decided_at ?? new Date().toISOString();
    const entry = { key, type, transaction: txn, seq, at };
    this.feed.unshift(entry);
    while (this.feed.length > FEED_LIMIT) this.feed.pop();
    if (this.feedKeys.size > REMEMBERED_DECISIONS) this.feedKeys = new Set(this.feed.map((e) => e.key));
    return entry;
  }
}
