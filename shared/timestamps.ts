/**
 * `event_time` carries microseconds; a JS Date keeps milliseconds. Inside the project an
 * instant is an integer count of microseconds since the epoch (exact up to year 2255 as a
 * double), and text is ISO-8601 UTC with six fractional digits.
 */
export const MICROS_PER_HOUR = 3_600_000_000;

let cachedSecond = NaN;
let cachedPrefix = "";

export function microsToIso(us: number): string {
  // Formatting a Date is slow and events come in time order: reuse the last second's text.
  const second = Math.floor(us / 1_000_000);
  if (second !== cachedSecond) {
    cachedSecond = second;
    cachedPrefix = new Date(second * 1000).toISOString().slice(0, 19); // yyyy-mm-ddThh:mm:ss
  }
  return `${cachedPrefix}.${String(us - second * 1_000_000).padStart(6, "0")}Z`;
}

export function msToMicros(ms: number): number {
  return Math.round(ms) * 1000;
}

const DAYS_IN_MONTH = [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];

function daysInMonth(year: number, month: number): number {
  const leap = (year % 4 === 0 && year % 100 !== 0) || year % 400 === 0;
  return month === 2 && leap ? 29 : (DAYS_IN_MONTH[month - 1] ?? 0);
}

/**
 * Parses an ISO-8601 timestamp keeping microseconds. A date alone means midnight UTC; a
 * timestamp without a zone is taken as UTC (as `event_time` is). Each field is checked as
 * written, whatever the zone: Date.parse rolls an impossible date or time over into a real one
 * (2024-02-30 into March 1st, 24:00 into the next day), and an offset moves the UTC date, so
 * comparing its result with the text cannot tell.
 */
export function parseTimestampMicros(text: string): number | undefined {
  const match = /^(\d{4})-(\d{2})-(\d{2})(?:[T ](\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,9}))?)?)?\s*(Z|[+-]\d{2}:?\d{2})?$/i.exec(text.trim());
  if (!match) return undefined;
  const [, year = "", month = "", day = "", hh = "00", mm = "00", ss = "00", fraction = "", zone = "Z"] = match;
  const zoneText = zone.toUpperCase() === "Z" ? "Z" : zone.includes(":") ? zone : `${zone.slice(0, 3)}:${zone.slice(3)}`;
  const inRange = (value: string, max: number, min = 0): boolean => Number(value) >= min && Number(value) <= max;
  const calendar = inRange(month, 12, 1) && inRange(day, daysInMonth(Number(year), Number(month)), 1) && inRange(hh, 23) && inRange(mm, 59) && inRange(ss, 59);
  const offset = zoneText === "Z" || (inRange(zoneText.slice(1, 3), 23) && inRange(zoneText.slice(4, 6), 59));
  if (!calendar || !offset) return undefined;
  const ms = Date.parse(`${year}-${month}-${day}T${hh}:${mm}:${ss}${zoneText}`);
  if (Number.isNaN(ms)) return undefined;
  const micros = Number(fraction.padEnd(6, "0").slice(0, 6));
  return ms * 1000 + micros;
}

export function hourIndexOf(us: number): number {
  return Math.floor(us / MICROS_PER_HOUR);
}

let cachedDay = NaN;
let cachedDate = "";

export function utcDateOf(us: number): string {
  const day = Math.floor(us / 86_400_000_000);
  if (day !== cachedDay) {
    cachedDay = day;
    cachedDate = new Date(day * 86_400_000).toISOString().slice(0, 10);
  }
  return cachedDate;
}
