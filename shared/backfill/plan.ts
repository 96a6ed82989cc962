import Ajv from "ajv";
import { ConfigError } from "../errors";
import { microsToIso, parseTimestampMicros, utcDateOf } from "../timestamps";

/**
 * A backfill of `[from, to)`: one slice per (source, UTC day), each exported on its own (its own
 * state blob, the same archive layout as the live export). Pure: what to export, checked against
 * the live export and the table's retention, and the queue message of each slice.
 *
 * Rules: `from` is a UTC midnight; `to` is a UTC midnight or the live export's start, never
 * after it, so a backfill and the live export never read the same event; nothing older than the
 * audit table's 365 days. Slices are whole UTC days except the last, which ends where the live
 * export began, so a (source, day) always means the same range: a second backfill over a day
 * finds its state and never archives the day twice. Account-level events (`workspace_id` "0"),
 * which every region's table holds, come from the first configured source only.
 */

export type Sinks = "archive" | "both";
export const SINKS: readonly Sinks[] = ["archive", "both"];

export const RETENTION_DAYS = 365;
export const MICROS_PER_DAY = 86_400_000_000;

/** What one queue message asks for: a (source, day) of one backfill. */
export interface SliceMessage {
  version: 1;
  backfill: string;
  source: string;
  /** The UTC day, YYYY-MM-DD. */
  day: string;
  /** ISO-8601 UTC with microseconds; [from, to). */
  from: string;
  to: string;
  sinks: Sinks;
  /** Whether this source brings the account-level events (the first configured source only). */
  accountLevel: boolean;
}

export interface SliceRef {
  source: string;
  day: string;
  from: string;
  to: string;
  accountLevel: boolean;
}

export interface BackfillRequest {
  /** As the user wrote them (for messages). */
  from?: string;
  to?: string;
  sinks?: string;
  source?: string;
}

export interface PlanContext {
  /** Configured sources in order; the first brings account-level events when its filter includes them. */
  sources: readonly { name: string; includeAccountLevel: boolean }[];
  /** Where the live export of each source began (its state), or, before its first run, an absolute EXPORT_START. */
  liveStartUs: (source: string) => number | undefined;
  logAnalyticsConfigured: boolean;
  nowMs: number;
}

export interface BackfillPlan {
  fromUs: number;
  toUs: number;
  sinks: Sinks;
  sources: string[];
  slices: SliceRef[];
}

/** Checks a request and cuts it into slices; every problem names its flag and what would be valid. */
export function planBackfill(request: BackfillRequest, context: PlanContext): BackfillPlan {
  const problems: string[] = [];
  const sinks = (request.sinks ?? "archive") as Sinks;
  if (!SINKS.includes(sinks)) problems.push(`--sinks must be archive (the Blob archive only) or both (archive and Log Analytics); got '${request.sinks}'.`);
  if (sinks === "both" && !context.logAnalyticsConfigured) {
    problems.push(
      "--sinks both needs Log Analytics: set LOGS_INGESTION_ENDPOINT, LOGS_INGESTION_RULE_ID and LOGS_INGESTION_STREAM (or backfill with --sinks archive).",
    );
  }
  const selected = request.source === undefined ? context.sources : context.sources.filter((s) => s.name === request.source);
  if (selected.length === 0) {
    problems.push(`--source must name a configured source (${context.sources.map((s) => s.name).join(", ")}); got '${request.source}'.`);
  }

  const earliestUs = Math.ceil(((context.nowMs - RETENTION_DAYS * 86_400_000) * 1000) / MICROS_PER_DAY) * MICROS_PER_DAY;
  const fromUs = request.from === undefined ? undefined : parseTimestampMicros(request.from);
  if (request.from === undefined) problems.push(`--from is required: a UTC day such as ${utcDateOf(earliestUs)} (the earliest the table still holds).`);
  else if (fromUs === undefined) problems.push(`--from must be an ISO-8601 date or timestamp such as ${utcDateOf(earliestUs)}; got '${request.from}'.`);
  else if (fromUs % MICROS_PER_DAY !== 0)
    problems.push(`--from must be a UTC midnight (backfill slices are UTC days), e.g. ${utcDateOf(fromUs)}; got '${request.from}'.`);
  else if (fromUs < earliestUs) {
    problems.push(
      `--from ${utcDateOf(fromUs)} is beyond the audit table's ${RETENTION_DAYS}-day retention: its rows are gone or going. The earliest day to backfill is ${utcDateOf(earliestUs)}.`,
    );
  }

  const toGiven = request.to === undefined ? undefined : parseTimestampMicros(request.to);
  if (request.to !== undefined && toGiven === undefined) problems.push(`--to must be an ISO-8601 date or timestamp; got '${request.to}'.`);

  const slices: SliceRef[] = [];
  let toUs = 0;
  for (const source of selected) {
    const liveUs = context.liveStartUs(source.name);
    if (liveUs === undefined) {
      problems.push(
        `Source '${source.name}': the live export has not started yet, so where it begins is not fixed (EXPORT_START is relative). Let the timer run once (or run 'dbx-audit run'), or set EXPORT_START to a timestamp, then start the backfill.`,
      );
      continue;
    }
    const sourceTo = toGiven ?? liveUs;
    if (toGiven !== undefined && toGiven > liveUs) {
      problems.push(
        `--to ${request.to} is after where the live export of source '${source.name}' began (${microsToIso(liveUs)}): the two would export the same events. Use --to ${microsToIso(liveUs)} or earlier (the default).`,
      );
      continue;
    }
    if (toGiven !== undefined && toGiven !== liveUs && toGiven % MICROS_PER_DAY !== 0) {
      problems.push(`--to must be a UTC midnight or where the live export began (${microsToIso(liveUs)}); got '${request.to}'.`);
      continue;
    }
    if (fromUs === undefined || fromUs % MICROS_PER_DAY !== 0) continue;
    if (sourceTo <= fromUs) {
      problems.push(`--to (${microsToIso(sourceTo)}) must be after --from (${microsToIso(fromUs)}) for source '${source.name}': the range is [from, to).`);
      continue;
    }
    toUs = Math.max(toUs, sourceTo);
    const accountLevel = source.name === context.sources[0]?.name && source.includeAccountLevel;
    for (let dayUs = fromUs; dayUs < sourceTo; dayUs += MICROS_PER_DAY) {
      slices.push({
        source: source.name,
        day: utcDateOf(dayUs),
        from: microsToIso(dayUs),
        to: microsToIso(Math.min(sourceTo, dayUs + MICROS_PER_DAY)),
        accountLevel,
      });
    }
  }
  if (problems.length > 0) throw new ConfigError(problems);
  return { fromUs: fromUs!, toUs, sinks, sources: selected.map((s) => s.name), slices };
}

/** A new backfill's id: when it started, and a random tail (sortable; safe in blob names). */
export function backfillId(nowMs: number, random: string): string {
  return `${new Date(nowMs)
    .toISOString()
    .replace(/[-:]/g, "")
    .replace(/\.\d+Z$/, "Z")}-${random}`;
}

export function sliceMessage(backfill: string, slice: SliceRef, sinks: Sinks): SliceMessage {
  return { version: 1, backfill, source: slice.source, day: slice.day, from: slice.from, to: slice.to, sinks, accountLevel: slice.accountLevel };
}

const ajv = new Ajv({ allErrors: true });
const validateMessage = ajv.compile<SliceMessage>({
  type: "object",
  required: ["version", "backfill", "source", "day", "from", "to", "sinks", "accountLevel"],
  properties: {
    version: { const: 1 },
    backfill: { type: "string", pattern: "^[0-9]{8}T[0-9]{6}Z-[a-z0-9]{1,16}$" },
    source: { type: "string", pattern: "^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$" },
    day: { type: "string", pattern: "^[0-9]{4}-[0-9]{2}-[0-9]{2}$" },
    from: { type: "string" },
    to: { type: "string" },
    sinks: { enum: SINKS },
    accountLevel: { type: "boolean" },
  },
});

/** A queue message as a slice, or an error that says what is wrong with it (it then ends in the poison queue). */
export function parseSliceMessage(body: unknown): SliceMessage & { fromUs: number; toUs: number } {
  const value = typeof body === "string" ? safeJson(body) : body;
  if (!validateMessage(value)) {
    throw new Error(
      `Not a backfill slice message (${ajv.errorsText(validateMessage.errors)}): expected {version: 1, backfill, source, day, from, to, sinks, accountLevel} as 'dbx-audit backfill start' writes it.`,
    );
  }
  const fromUs = parseTimestampMicros(value.from);
  const toUs = parseTimestampMicros(value.to);
  if (fromUs === undefined || toUs === undefined || toUs <= fromUs || utcDateOf(fromUs) !== value.day || toUs - fromUs > MICROS_PER_DAY) {
    throw new Error(`Backfill slice message for ${value.source}/${value.day} has an impossible range [${value.from}, ${value.to}).`);
  }
  return { ...value, fromUs, toUs };
}

function safeJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}
