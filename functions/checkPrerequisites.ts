import { app, type HttpRequest, type HttpResponseInit, type InvocationContext } from "@azure/functions";
import { describeError } from "../shared/errors";
import { checkTitle, runHealthCheck, type CheckReport } from "../shared/prerequisites";

/**
 * GET: runs the prerequisite checks within their time budget (well under the 230 s HTTP limit)
 * and answers the JSON report, 200 when nothing failed, 503 otherwise. `?quick=1` runs only the
 * checks that read Blob (no warehouse session, so no DBUs); a full check's report is served from
 * a five-minute cache unless `?refresh=1`. The report and the logs carry statuses, details and
 * remediations only: never a token, key, connection string or stack.
 */
export async function checkPrerequisites(request: HttpRequest, context: InvocationContext): Promise<HttpResponseInit> {
  const quick = flag(request, "quick");
  const refresh = flag(request, "refresh");
  const refused = [quick, refresh].find((f): f is { error: string } => typeof f === "object");
  if (refused) return { status: 400, headers: { "Cache-Control": "no-store" }, jsonBody: { error: refused.error } };
  let report: CheckReport;
  try {
    // The deployed app must be able to export, so storage is required here (the CLI's check does not need it).
    report = await runHealthCheck(process.env, process.env, {
      needs: { storage: true },
      mode: quick ? "quick" : "full",
      refresh: refresh === true,
      nowMs: Date.now(),
    });
  } catch (error) {
    context.error(`checkPrerequisites could not run the checks: ${describeError(error)}`);
    return {
      status: 503,
      headers: { "Cache-Control": "no-store" },
      jsonBody: { status: "FAIL", checks: [], error: "The checks could not run; see the function's logs." },
    };
  }
  const origin = report.cache?.fromCache ? `from the cache of ${report.cache.computedAt}` : `in ${report.durationMs} ms`;
  context.log(
    `prerequisite checks ${report.status} ${origin} (${report.mode}): ${report.checks.map((c) => `${checkTitle(c, report)} ${c.status}`).join(", ")}`,
  );
  for (const check of report.checks) {
    if (check.status !== "PASS") context.warn(`${check.name} ${check.status}: ${check.detail}`);
  }
  return {
    status: report.status === "FAIL" ? 503 : 200,
    headers: { "Cache-Control": "no-store" },
    jsonBody: report,
  };
}

/** A query flag: absent, 0 or false is off; 1 or true is on; anything else (an empty value too) is refused, naming it. */
function flag(request: HttpRequest, name: string): boolean | { error: string } {
  const value = request.query.get(name);
  if (value === null) return false;
  const lower = value.toLowerCase();
  if (lower === "1" || lower === "true") return true;
  if (lower === "0" || lower === "false") return false;
  return { error: `${name} must be 1 or 0 (or true/false); got '${value.slice(0, 20)}'.` };
}

app.http("checkPrerequisites", {
  methods: ["GET"],
  authLevel: "function",
  handler: checkPrerequisites,
});
