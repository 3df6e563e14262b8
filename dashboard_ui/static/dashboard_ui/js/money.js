// Exact money for the page: amounts arrive as decimal strings ("12.50", JPY "1200")
// and are shown and compared without ever passing through a binary float.
// Number() is used only for drawing (chart coordinates, compact axis ticks).

const DECIMAL = /^\s*(-)?(\d+)(?:\.(\d+))?\s*$/;

/** "12.50" -> {units: 1250n, scale: 2, negative: false}. Throws on anything else. */
export function parseDecimal(text) {
  const match = DECIMAL.exec(String(text));
  if (!match) throw new TypeError(`not a decimal string: ${JSON.stringify(text)}`);
  const [, minus, whole, fraction = ""] = match;
  const magnitude = BigInt(whole + fraction);
  return { units: minus ? -magnitude : magnitude, scale: fraction.length };
}

/** Digits after the dot: "12.50" -> 2, "1200" -> 0. */
export function fractionDigits(text) {
  return parseDecimal(text).scale;
}

function unitsAt(parsed, scale) {
  return parsed.units * 10n ** BigInt(scale - parsed.scale);
}

/** -1, 0 or 1, exactly. */
export function compareDecimal(a, b) {
  const x = parseDecimal(a);
  const y = parseDecimal(b);
  const scale = Math.max(x.scale, y.scale);
  const d = unitsAt(x, scale) - unitsAt(y, scale);
  return d > 0n ? 1 : d < 0n ? -1 : 0;
}

/** Zero written the way the server writes it for a currency with `digits` minor digits. */
export function zeroWithDigits(digits) {
  return digits > 0 ? `0.${"0".repeat(digits)}` : "0";
}

function abs(n) {
  return n < 0n ? -n : n;
}

/**
 * Percent change from `previous` to `current`, rounded half away from zero to
 * `decimals` places, as a string ("12.3", "-4.0", "0.0"); null when `previous`
 * is zero (no base to compare with). Computed on BigInt minor units.
 */
export function percentChange(current, previous, decimals = 1) {
  const x = parseDecimal(current);
  const y = parseDecimal(previous);
  const scale = Math.max(x.scale, y.scale);
  const now = unitsAt(x, scale);
  const before = unitsAt(y, scale);
  if (before === 0n) return null;
  const numerator = (now - before) * 100n * 10n ** BigInt(decimals);
  let quotient = numerator / before; // truncates toward zero
  const remainder = numerator % before;
  if (2n * abs(remainder) >= abs(before)) {
    quotient += (numerator < 0n) !== (before < 0n) ? -1n : 1n;
  }
  const negative = quotient < 0n;
  const digits = abs(quotient).toString().padStart(decimals + 1, "0");
  const whole = digits.slice(0, digits.length - decimals);
  const fraction = decimals ? `.${digits.slice(digits.length - decimals)}` : "";
  return `${negative ? "-" : ""}${whole}${fraction}`;
}

/** "1234567" -> "1,234,567". */
export function groupThousands(digits) {
  return digits.replace(/\B(?=(\d{3})+(?!\d))/g, ",");
}

const symbols = new Map();

/** The currency's display symbol in en-US ("€", "$", "¥", "CA$", "CHF"). */
export function currencySymbol(currency) {
  if (!symbols.has(currency)) {
    let symbol = currency;
    try {
      const part = new Intl.NumberFormat("en-US", { style: "currency", currency })
        .formatToParts(0)
        .find((p) => p.type === "currency");
      if (part) symbol = part.value;
    } catch {
      // An unknown code: show the code itself.
    }
    symbols.set(currency, symbol);
  }
  return symbols.get(currency);
}

const minorDigits = new Map();

/** The currency's minor digits from Intl (EUR 2, JPY 0, KWD 3); 2 for a code Intl does not know. */
export function currencyDigits(currency) {
  if (!minorDigits.has(currency)) {
    let digits = 2;
    try {
      digits = new Intl.NumberFormat("en-US", { style: "currency", currency }).resolvedOptions().maximumFractionDigits;
    } catch {
      // An unknown code: two digits, the common case.
    }
    minorDigits.set(currency, digits);
  }
  return minorDigits.get(currency);
}

/**
 * "1234567.5" EUR -> "€1,234,567.50": the server's digits exactly (padded with zeros up to the
 * currency's minor digits, never rounded), grouped, with the currency shown once (symbol or code).
 */
export function formatMoney(text, currency) {
  const match = DECIMAL.exec(String(text));
  if (!match) return `${text} ${currency}`;
  const [, minus, whole] = match;
  let fraction = match[3];
  const digits = currencyDigits(currency);
  if (digits > 0 && (fraction ?? "").length < digits) fraction = (fraction ?? "").padEnd(digits, "0");
  const symbol = currencySymbol(currency);
  const gap = /^[A-Za-z]+$/.test(symbol) ? "\u00a0" : "";
  const number = groupThousands(whole.replace(/^0+(?=\d)/, "")) + (fraction !== undefined ? `.${fraction}` : "");
  const isZero = /^0*$/.test(whole + (fraction || ""));
  return `${minus && !isZero ? "\u2212" : ""}${symbol}${gap}${number}`;
}

/** Short axis label for a drawing: 250000 JPY -> "¥250K". Not for exact figures. */
export function formatCompact(value, currency) {
  const symbol = currencySymbol(currency);
  const gap = /^[A-Za-z]+$/.test(symbol) ? "\u00a0" : "";
  const number = new Intl.NumberFormat("en-US", { notation: "compact", maximumFractionDigits: 1 }).format(Math.abs(value));
  return `${value < 0 ? "\u2212" : ""}${symbol}${gap}${number}`;
}

/** "12.3" -> "+12.3%", "-4.0" -> "−4.0%", null -> "—". */
export function formatPercent(text) {
  if (text === null || text === undefined) return "\u2014";
  if (text.startsWith("-")) return `\u2212${text.slice(1)}%`;
  return /^0*\.?0*$/.test(text) ? `${text}%` : `+${text}%`;
}

/** Exact sum of decimal strings, written with the largest number of fraction digits among them. */
export function sumDecimals(texts, digits = 0) {
  const parsed = texts.map(parseDecimal);
  const scale = Math.max(digits, ...parsed.map((p) => p.scale));
  const total = parsed.reduce((acc, p) => acc + unitsAt(p, scale), 0n);
  const negative = total < 0n;
  const padded = abs(total).toString().padStart(scale + 1, "0");
  const whole = padded.slice(0, padded.length - scale);
  return `${negative ? "-" : ""}${whole}${scale ? `.${padded.slice(padded.length - scale)}` : ""}`;
}
