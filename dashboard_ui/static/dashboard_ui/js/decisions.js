// Decisions as a finance user reads them: which pending rows a search shows, what a refused
// decision means in plain words, and what a bulk request did to each row. No DOM here.

/** A search text as it may be typed for an amount: "€1,200.50" -> "1200.50". */
function amountQuery(text) {
  const stripped = text.replace(/[\s,\u00a0]/g, "").replace(/^[^\d.-]+/, "");
  return /^\d*\.?\d*$/.test(stripped) && /\d/.test(stripped) ? stripped : null;
}

/**
 * Whether a pending transaction matches the queue's filter: `currency` exactly (empty: any), and every
 * word of `search` found in its reference or description (any case), or the search read as an amount
 * found at the start of its amount ("12" and "12.5" find "12.50").
 */
export function matchesFilter(txn, { search = "", currency = "" } = {}) {
  if (currency && txn.currency !== currency) return false;
  const query = search.trim().toLowerCase();
  if (!query) return true;
  const amount = amountQuery(query);
  if (amount !== null && String(txn.amount ?? "").startsWith(amount)) return true;
  const text = `${txn.reference ?? ""} ${txn.description ?? ""} ${txn.id ?? ""}`.toLowerCase();
  return query.split(/\s+/).every((word) => text.includes(word));
}

/** The refusals a decision can meet, in the words of the person who clicked. */
const MESSAGES = {
  own_submission: (label) =>
    `You submitted ${label} yourself, so you cannot approve it: another admin has to. You can still reject (withdraw) it.`,
  second_approver_required: (label) =>
    `You already gave ${label} its first approval. Its amount needs two different approvers: another admin has to approve it.`,
  transaction_not_approved: (label) => `${label} is not approved (any more), so it cannot be reversed.`,
  transaction_not_pending: (label) => `${label} was already decided by someone else.`,
  stale_version: (label) => `${label} changed meanwhile; look at it again before deciding.`,
  conflict: (label) => `${label} changed meanwhile; look at it again before deciding.`,
  transaction_not_found: (label) => `${label} no longer exists.`,
  not_found: (label) => `${label} no longer exists.`,
  permission_denied: () => "You do not have permission to decide transactions.",
  not_authenticated: () => "Your session has ended: sign in again.",
};

/** One sentence for a problem+json body (or an ApiError's problem) about transaction `label`. */
export function problemMessage(problem, label, status = problem?.status) {
  const code = problem?.code;
  if (code && MESSAGES[code]) return MESSAGES[code](label);
  const field = (problem?.errors || []).find((e) => e.message);
  if (field) return `${label}: ${field.message}`;
  if (status === 0) return problem?.detail || "The server could not be reached.";
  return `${label}: ${problem?.detail || `the request failed (${status})`}`;
}

/** How a bulk answer split: the items that took effect and the ones refused, each with its reason. */
export function bulkOutcome(answer) {
  const done = [];
  const failed = [];
  for (const item of answer?.results || []) {
    if (item.status >= 200 && item.status < 300 && item.transaction) done.push(item);
    else failed.push(item);
  }
  return { done, failed, position: answer?.position ?? null };
}
