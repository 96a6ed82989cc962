/** Reading an NCRONTAB schedule's longest interval, and ages for people: shared by the export's and the detections' freshness. */

const HOURLY_MS = 3_600_000;
const DAY_MINUTES = 24 * 60;

/**
 * The longest gap between two runs of an NCRONTAB schedule (`second minute hour day month
 * weekday`), from its minute and hour fields; hourly when they cannot be read. Day, month and
 * weekday restrictions are not taken into account.
 */
export function scheduleIntervalMs(schedule: string): number {
  const fields = schedule.trim().split(/\s+/);
  if (fields.length !== 6) return HOURLY_MS;
  const minutes = expandField(fields[1]!, 0, 59);
  const hours = expandField(fields[2]!, 0, 23);
  if (!minutes || !hours || minutes.length === 0 || hours.length === 0) return HOURLY_MS;
  const times = hours.flatMap((h) => minutes.map((m) => h * 60 + m)).sort((a, b) => a - b);
  let longest = times[0]! + DAY_MINUTES - times[times.length - 1]!;
  for (let i = 1; i < times.length; i++) longest = Math.max(longest, times[i]! - times[i - 1]!);
  return longest * 60_000;
}

/** The values of one cron field (`*`, `*\/n`, `a`, `a-b`, `a-b/n`, `a/n`, lists); undefined when unreadable. */
function expandField(field: string, min: number, max: number): number[] | undefined {
  const values = new Set<number>();
  for (const part of field.split(",")) {
    const match = /^(\*|(\d+)(?:-(\d+))?)(?:\/(\d+))?$/.exec(part);
    if (!match) return undefined;
    const step = match[4] === undefined ? 1 : Number(match[4]);
    const from = match[1] === "*" ? min : Number(match[2]);
    const to = match[1] === "*" || (match[3] === undefined && match[4] !== undefined) ? max : match[3] === undefined ? from : Number(match[3]);
    if (step < 1 || from < min || to > max || from > to) return undefined;
    for (let v = from; v <= to; v += step) values.add(v);
  }
  return [...values];
}

export function formatAge(ms: number): string {
  if (ms < 60_000) return `${Math.max(0, Math.round(ms / 1000))} s`;
  const minutes = Math.round(ms / 60_000);
  if (minutes < 120) return `${minutes} min`;
  const hours = ms / HOURLY_MS;
  if (hours < 48) return `${Math.round(hours * 10) / 10} h`;
  return `${Math.round((hours / 24) * 10) / 10} days`;
}
