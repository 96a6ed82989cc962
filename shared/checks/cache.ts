import { createHash } from "node:crypto";
import { BlobExportStore } from "../blobStore";
import { createAzureCredential, createContainerClients } from "../composition";
import type { Settings } from "../config";
import { CHECK_NAMES, type CheckReport } from "./result";
import { runChecks, type CheckOptions } from "./run";
import { loadForChecks } from "./settings";
import { BLOB_STEP_TIMEOUT_MS, noCredential } from "./storage";
import { timed } from "./timing";

/**
 * The full check's report, kept for FULL_CHECK_CACHE_TTL_MS in a blob next to the export's state,
 * so that a monitor polling `checkPrerequisites` does not open a warehouse session (and start a
 * stopped warehouse, which costs DBUs) on every call. A blob rather than memory: the app scales
 * out and to zero, so an instance's memory would miss on most calls and each instance would
 * start the warehouse on its own. What is stored is the report as answered, whose details were
 * scrubbed of every secret; the settings it was computed for are kept only as a SHA-256 digest.
 */

export const FULL_CHECK_CACHE_TTL_MS = 5 * 60_000;

export interface CheckCacheStore {
  readCheckCache(): Promise<string | null>;
  writeCheckCache(text: string): Promise<void>;
}

interface CachedReport {
  /** Digest of the settings the report was computed with: other settings (another token, warehouse, source) miss. */
  settings: string;
  report: CheckReport;
}

/** The app's own settings (every instance has the same), not the per-instance ones such as IDENTITY_HEADER. */
const APP_SETTING = /^(?:DATABRICKS_|EXPORT_|LOGS_INGESTION_|AUDIT_|CHECK_|DETECTIONS_|AZURE_CLIENT_ID$)/;

export function settingsDigest(settings: Settings): string {
  const entries = Object.entries(settings)
    .filter(([name, value]) => APP_SETTING.test(name) && value !== undefined)
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  return createHash("sha256").update(JSON.stringify(entries)).digest("hex");
}

/**
 * The cached report when it is for these settings and younger than the TTL (and `refresh` is
 * off); otherwise runs the checks and caches their report. A cache that cannot be read or
 * written never fails the check: it only runs again.
 */
export async function cachedFullCheck(
  store: CheckCacheStore | undefined,
  digest: string,
  nowMs: number,
  refresh: boolean,
  run: () => Promise<CheckReport>,
): Promise<CheckReport> {
  if (store && !refresh) {
    const read = await timed(() => store.readCheckCache(), BLOB_STEP_TIMEOUT_MS);
    const cached = read.kind === "done" ? parseCached(read.value) : undefined;
    const computedMs = cached ? Date.parse(cached.report.checkedAt) : NaN;
    if (cached && cached.settings === digest && nowMs >= computedMs && nowMs - computedMs < FULL_CHECK_CACHE_TTL_MS) {
      return withCache(cached.report, true);
    }
  }
  const report = await run();
  if (store) {
    const entry: CachedReport = { settings: digest, report };
    await timed(() => store.writeCheckCache(JSON.stringify(entry)), BLOB_STEP_TIMEOUT_MS);
  }
  return withCache(report, false);
}

function withCache(report: CheckReport, fromCache: boolean): CheckReport {
  const computedMs = Date.parse(report.checkedAt);
  return { ...report, cache: { fromCache, computedAt: report.checkedAt, expiresAt: new Date(computedMs + FULL_CHECK_CACHE_TTL_MS).toISOString() } };
}

/** A stored entry, or undefined for anything that is not one (a partial write, another version). */
function parseCached(text: string | null): CachedReport | undefined {
  if (!text) return undefined;
  try {
    const entry = JSON.parse(text) as Partial<CachedReport>;
    const report = entry.report;
    const names = new Set<string>(CHECK_NAMES);
    if (
      typeof entry.settings !== "string" ||
      !report ||
      report.mode !== "full" ||
      !["PASS", "WARN", "FAIL"].includes(report.status) ||
      typeof report.checkedAt !== "string" ||
      Number.isNaN(Date.parse(report.checkedAt)) ||
      !Array.isArray(report.checks) ||
      !report.checks.every((check) => names.has(check.name)) ||
      !Array.isArray(report.sources)
    ) {
      return undefined;
    }
    return { settings: entry.settings, report: { ...report, cache: undefined } };
  } catch {
    return undefined;
  }
}

/**
 * The checks behind `checkPrerequisites`: a quick check runs as asked (it reads Blob only and
 * costs nothing); a full check answers from the cache (cachedFullCheck) unless `refresh`.
 */
export async function runHealthCheck(settings: Settings, env: Settings, options: CheckOptions & { refresh?: boolean; nowMs: number }): Promise<CheckReport> {
  const { refresh = false, nowMs, ...checkOptions } = options;
  if (checkOptions.mode === "quick") return runChecks(settings, env, checkOptions);
  const { config } = loadForChecks(settings, checkOptions.needs ?? { storage: false });
  const storage = config?.storage;
  let store: CheckCacheStore | undefined;
  try {
    if (config && storage) {
      const credential = storage.kind === "accountUrl" ? createAzureCredential(config, env, { maxRetries: checkOptions.maxRetries ?? 1 }) : noCredential;
      const containers = createContainerClients(storage, credential);
      store = new BlobExportStore(containers.archive, containers.state);
    }
  } catch {
    store = undefined; // the checks report what is wrong with storage
  }
  return cachedFullCheck(store, settingsDigest(settings), nowMs, refresh, () => runChecks(settings, env, checkOptions));
}
