import { app, type HttpRequest, type HttpResponseInit, type InvocationContext } from "@azure/functions";
import { DEFAULTS, loadConfig } from "../shared/config";
import { ConfigError, describeError } from "../shared/errors";
import { backfillClients, cancelBackfill, startBackfill } from "../shared/backfill/control";
import { readBackfillStatus } from "../shared/backfill/status";
import { readHostFunctionTimeout } from "../shared/hostSettings";

/**
 * `/api/backfill` (function key): what `dbx-audit backfill` does from a shell. POST
 * `{"from": "2026-01-01", "to"?, "sinks"?: "archive"|"both", "source"?}` starts a backfill
 * (202 with its id and slices), GET answers the latest one's status (`?id=` another), DELETE
 * cancels it. Refused input is a 400 naming the field and what would be valid; nothing is
 * written then.
 */
export async function backfill(request: HttpRequest, context: InvocationContext): Promise<HttpResponseInit> {
  const headers = { "Cache-Control": "no-store" };
  try {
    const config = loadConfig(process.env, { storage: true, functionTimeout: readHostFunctionTimeout() ?? DEFAULTS.functionTimeoutHost });
    const clients = backfillClients(config, process.env);
    const id = request.query.get("id") ?? undefined;
    if (request.method === "GET") {
      const status = await readBackfillStatus(clients.store, Date.now(), id);
      return { status: 200, headers, jsonBody: status ?? { status: "none", message: "No backfill has been started." } };
    }
    if (request.method === "DELETE") {
      const manifest = await cancelBackfill(clients.store, Date.now(), id);
      context.log(`backfill ${manifest.id} cancelled`);
      return { status: 200, headers, jsonBody: { id: manifest.id, cancelledAt: manifest.cancelledAt } };
    }
    const body = await readBody(request);
    const result = await startBackfill(config, clients, body, Date.now());
    const m = result.manifest;
    context.log(`backfill ${m.id} started: [${m.from}, ${m.to}), ${result.enqueued} slice(s) enqueued, ${result.skipped.length} already done`);
    return {
      status: 202,
      headers,
      jsonBody: {
        id: m.id,
        from: m.from,
        to: m.to,
        sinks: m.sinks,
        sources: m.sources,
        enqueued: result.enqueued,
        skipped: result.skipped.length,
        notes: result.notes,
      },
    };
  } catch (error) {
    if (error instanceof ConfigError) {
      // The CLI's flags are the body's fields here.
      const problems = error.problems.map((p) => p.replace(/--(from|to|sinks|source)\b/g, "$1"));
      return { status: 400, headers, jsonBody: { error: new ConfigError(problems).message, problems } };
    }
    context.error(`backfill failed: ${describeError(error)}`);
    return { status: 500, headers, jsonBody: { error: "The backfill request failed; see the function's logs." } };
  }
}

/** The request's JSON body as the CLI's flags; every field a string when present. */
async function readBody(request: HttpRequest): Promise<{ from?: string; to?: string; sinks?: string; source?: string }> {
  let value: unknown;
  try {
    value = await request.json();
  } catch {
    throw new ConfigError(['The body must be JSON such as {"from": "2026-01-01", "sinks": "archive"}.']);
  }
  if (typeof value !== "object" || value === null || Array.isArray(value))
    throw new ConfigError(['The body must be a JSON object such as {"from": "2026-01-01"}.']);
  const body = value as Record<string, unknown>;
  const problems: string[] = [];
  const out: Record<string, string> = {};
  for (const [key, field] of Object.entries(body)) {
    if (!["from", "to", "sinks", "source"].includes(key)) problems.push(`Unknown field '${key}': the body takes from, to, sinks and source.`);
    else if (typeof field !== "string") problems.push(`${key} must be a string; got ${JSON.stringify(field)}.`);
    else out[key] = field;
  }
  if (problems.length > 0) throw new ConfigError(problems);
  return out;
}

app.http("backfill", {
  methods: ["GET", "POST", "DELETE"],
  authLevel: "function",
  handler: backfill,
});
