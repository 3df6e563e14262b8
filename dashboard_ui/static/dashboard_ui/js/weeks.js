// Week arithmetic on "YYYY-MM-DD" strings (calendar dates, no time zone involved).

const DAY_MS = 86_400_000;

function toUtc(day) {
  const [y, m, d] = day.split("-").map(Number);
  return Date.UTC(y, m - 1, d);
}

function fromUtc(ms) {
  return new Date(ms).toISOString().slice(0, 10);
}

export function addWeeks(day, weeks) {
  return fromUtc(toUtc(day) + weeks * 7 * DAY_MS);
}

/** `count` week starts ending with `last`, oldest first. */
export function weekRange(last, count) {
  const weeks = [];
  for (let i = count - 1; i >= 0; i -= 1) weeks.push(addWeeks(last, -i));
  return weeks;
}

/** Today's calendar date in `timeZone`, "YYYY-MM-DD". */
export function todayIn(timeZone, now = new Date()) {
  try {
    return new Intl.DateTimeFormat("en-CA", { timeZone, year: "numeric", month: "2-digit", day: "2-digit" }).format(now);
  } catch {
    return now.toISOString().slice(0, 10);
  }
}

/** The start of the week holding `day`, for weeks starting "monday" or "sunday". */
export function weekStartOf(day, weekStartDay = "monday") {
  const ms = toUtc(day);
  const weekday = new Date(ms).getUTCDay(); // 0 = Sunday
  const offset = weekStartDay === "sunday" ? weekday : (weekday + 6) % 7;
  return fromUtc(ms - offset * DAY_MS);
}

export const MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
const WEEKDAYS = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];

/** "2026-01-12" -> "12 Jan". */
export function shortWeekLabel(day) {
  const [, m, d] = day.split("-").map(Number);
  return `${d} ${MONTHS[m - 1]}`;
}

/** "2026-01-12" -> "12 Jan 2026". */
export function weekLabel(day) {
  return `${shortWeekLabel(day)} ${day.slice(0, 4)}`;
}

/** "2026-01-12" -> "Mon 12 Jan 2026". */
export function longWeekLabel(day) {
  return `${WEEKDAYS[new Date(toUtc(day)).getUTCDay()]} ${weekLabel(day)}`;
}

/**
 * A duration for people: 42 -> "42 s", 725 -> "12 min 5 s", 11520 -> "3 h 12 min", 187200 -> "2 d 4 h".
 * Seconds are shown only under an hour, where they are what changes.
 */
export function formatDuration(seconds) {
  const s = Math.max(0, Math.floor(Number(seconds)));
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${s % 60} s`;
  if (s < 86_400) return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
  return `${Math.floor(s / 86_400)} d ${Math.floor((s % 86_400) / 3600)} h`;
}
