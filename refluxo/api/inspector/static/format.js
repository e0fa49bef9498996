// How times, durations and stored values are written on the page.

/** Epoch milliseconds as ISO 8601 (UTC), or an em dash. */
export function iso(ms) {
  return typeof ms === "number" && Number.isFinite(ms) ? new Date(ms).toISOString() : "—";
}

/** A duration in milliseconds, in the largest unit that reads well. */
export function duration(ms) {
  if (typeof ms !== "number" || !Number.isFinite(ms)) return "—";
  const sign = ms < 0 ? "-" : "";
  let rest = Math.abs(ms);
  if (rest < 1000) return `${sign}${Math.round(rest)} ms`;
  if (rest < 60_000) return `${sign}${Number((rest / 1000).toFixed(rest < 10_000 ? 2 : 1))} s`;
  const parts = [];
  for (const [unit, size] of [["d", 86_400_000], ["h", 3_600_000], ["min", 60_000], ["s", 1000]]) {
    const count = Math.floor(rest / size);
    if (count > 0 && parts.length < 2) parts.push(`${count} ${unit}`);
    rest -= count * size;
  }
  return sign + parts.join(" ");
}

/** When `ms` is relative to now: "in 4.00 s", "3 min 2 s ago". */
export function relative(ms, now = Date.now()) {
  if (typeof ms !== "number") return "";
  const delta = ms - now;
  return delta >= 0 ? `in ${duration(delta)}` : `${duration(-delta)} ago`;
}

/** A stored value as indented JSON text. */
export function json(value) {
  return value === undefined ? "" : JSON.stringify(value, null, 2);
}

export const FINISHED = new Set(["completed", "failed"]);
/** Runs in these statuses never change again: nothing to poll, nothing to resume or cancel. */
