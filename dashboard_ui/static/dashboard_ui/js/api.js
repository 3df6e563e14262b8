// The public REST API, with the session cookie and the CSRF header.

export class ApiError extends Error {
  constructor(status, problem) {
    super(problem?.detail || `Request failed with status ${status}`);
    this.status = status;
    this.problem = problem || {};
  }

  /** Field errors as {field: message}, from the problem's `errors` list. */
  get fieldErrors() {
    const out = {};
    for (const error of this.problem.errors || []) {
      const field = error.field || "";
      out[field] = out[field] ? `${out[field]} ${error.message}` : error.message;
    }
    return out;
  }
}

export function csrfToken() {
  const match = document.cookie.match(/(?:^|;\s*)csrftoken=([^;]+)/);
  return match ? decodeURIComponent(match[1]) : "";
}

export async function request(path, { method = "GET", body, params, keepalive = false, headers: extra = {} } = {}) {
  const url = new URL(path, window.location.origin);
  for (const [key, value] of Object.entries(params || {})) {
    if (value !== undefined && value !== null) url.searchParams.set(key, value);
  }
  if (url.origin !== window.location.origin) throw new Error(`refusing a cross-origin API call to ${url}`);
  const headers = { Accept: "application/json", ...extra };
  if (method !== "GET") {
    headers["Content-Type"] = "application/json";
    headers["X-CSRFToken"] = csrfToken();
  }
  let response;
  try {
    response = await fetch(url, {
      method,
      headers,
      credentials: "same-origin",
      keepalive,
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch (error) {
    throw new ApiError(0, { detail: "The server could not be reached. Check your connection and try again." });
  }
  const type = response.headers.get("Content-Type") || "";
  const data = type.includes("json") ? await response.json().catch(() => null) : null;
  if (!response.ok) throw new ApiError(response.status, data);
  return data;
}

export const api = {
  weeklyIncome: (from, to) => request("/api/analytics/weekly-income/", { params: { from, to } }),
  /** Pending transactions, newest first; `next` is the previous page's cursor URL. */
  pending: (next, status = "pending") => {
    if (!next) return request("/api/transactions/", { params: { status, limit: 50 } });
    const url = new URL(next, window.location.origin); // same path and cursor, on this page's origin
    return request(url.pathname + url.search);
  },
  /** The weekly income as it stood right after event `at` (time travel, see docs/api.md). */
  weeklyIncomeAt: (from, to, at) => request("/api/analytics/weekly-income/", { params: { from, to, at } }),
  weeklyCsvUrl: (from, to) => `/api/analytics/weekly-income/?${new URLSearchParams({ from, to, format: "csv" })}`,
  /** The gap-safe event feed: events with position > after, oldest first. */
  events: (after, limit) => request("/api/events/", { params: { after, limit } }),
  transaction: (id) => request(`/api/transactions/${id}/`),
  transactionEvents: (id) => request(`/api/transactions/${id}/events/`),
  approve: (id, reason, { keepalive = false } = {}) =>
    request(`/api/transactions/${id}/approve/`, { method: "POST", body: reason ? { reason } : {}, keepalive }),
  reject: (id, reason) => request(`/api/transactions/${id}/reject/`, { method: "POST", body: { reason } }),
  reverse: (id, reason, key) =>
    request(`/api/transactions/${id}/reverse/`, { method: "POST", body: { reason }, headers: { "Idempotency-Key": key } }),
  /** [{id, action, reason?}] in one request; the key makes a retry of the same click do nothing twice. */
  bulkDecisions: (decisions, key) =>
    request("/api/transactions/bulk-decisions/", { method: "POST", body: { decisions }, headers: { "Idempotency-Key": key } }),
  reviewQueue: () => request("/api/analytics/review-queue/"),
};

/** A fresh Idempotency-Key for one user action (kept across its retries). */
export function newKey() {
  if (window.crypto?.randomUUID) return window.crypto.randomUUID();
  return `${Date.now().toString(36)}-${Math.random().toString(36).slice(2)}`;
}
