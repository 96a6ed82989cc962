import type { TokenCredential } from "@azure/identity";
import { BlobExportStore } from "../blobStore";
import { createAzureCredential, createContainerClients, type StorageContainers } from "../composition";
import { DEFAULTS, type ConfigNeeds, type Settings } from "../config";
import { detectionsStateCheck } from "../detections/health";
import { LOGS_INGESTION_SCOPE } from "../logsIngestion";
import { backfillCheck } from "./backfill";
import { BackfillStore } from "../backfill/store";
import { exportStateChecks } from "./exportState";
import { azureAuthenticationCheck, neededScopes, STORAGE_SCOPE, type TokenOutcome } from "./identity";
import { logsIngestionCheck } from "./logsIngestion";
import { lastReconciliationCheck, reconciliationCheck } from "./reconciliation";
import { LOG_ANALYTICS_QUERY_SCOPE } from "../logAnalyticsQuery";
import {
  CHECK_NAMES,
  PER_SOURCE_CHECKS,
  skipped,
  skippedAfter,
  worstStatus,
  type CheckMode,
  type CheckName,
  type CheckReport,
  type CheckResult,
} from "./result";
import { secretScrubber } from "./secrets";
import { configurationCheck, loadForChecks, SECTION_SETTINGS, type Section } from "./settings";
import { namesSources, sourcesToCheck, type CheckedSource } from "./sources";
import { blobContainerCheck, noCredential } from "./storage";
import { Budget } from "./timing";
import { warehouseChecks } from "./warehouse";

/**
 * The prerequisite checks behind the `checkPrerequisites` HTTP function and `dbx-audit check`.
 * Every check answers PASS, WARN or FAIL with a detail and a precise remediation; a check whose
 * dependency failed is reported as skipped, never left out. The whole run keeps to a time
 * budget (each network step has its own timeout as well), because an HTTP answer must come
 * within 230 s and a stopped warehouse can take minutes to start.
 */

export interface CheckOptions {
  /** Wall clock for the lookback window and freshness (default Date.now); the time budget always uses the real clock. */
  now?: () => number;
  /** Total time for every check together; default 60 s. */
  budgetMs?: number;
  /** Overrides CHECK_WORKSPACE_LOOKBACK_HOURS. */
  lookbackHours?: number;
  /** What the configuration must provide: the HTTP function needs storage (the export does), the CLI check does not. */
  needs?: ConfigNeeds;
  /** Azure SDK retries per token request (default 1: a health check answers fast rather than waiting out back-offs). */
  maxRetries?: number;
  /** `quick`: only QUICK_CHECKS, which read Blob and never open a warehouse session; default `full`. */
  mode?: CheckMode;
}

/**
 * The quick check's set: what the export, the detections (and every other writer of state in
 * Blob) leave there, read without a warehouse session, so it costs no DBUs and answers in a
 * second. A check that reads only Blob joins by its name here and by its run in blobChain.
 * azure_authentication stays for the storage token it may need.
 */
export const QUICK_CHECKS: ReadonlySet<CheckName> = new Set<CheckName>([
  "configuration",
  "azure_authentication",
  "blob_container",
  "export_freshness",
  "log_analytics_lag",
  "log_analytics_reconciliation",
  "detections_state",
  "backfill",
]);

export const DEFAULT_CHECK_BUDGET_MS = 60_000;

export async function runChecks(settings: Settings, env: Settings, options: CheckOptions = {}): Promise<CheckReport> {
  const now = options.now ?? Date.now;
  const startedMs = now();
  const mode = options.mode ?? "full";
  const reports = (name: CheckName): boolean => mode === "full" || QUICK_CHECKS.has(name);
  const budget = new Budget(options.budgetMs ?? DEFAULT_CHECK_BUDGET_MS);
  const scrub = secretScrubber(settings, env);
  // One result per check, and per source for a per-source check.
  const results = new Map<string, CheckResult>();
  const keyOf = (name: CheckName, source?: string): string => (source === undefined ? name : `${name}@${source}`);
  const resultOf = (name: CheckName, source?: string): CheckResult | undefined => results.get(keyOf(name, source));
  const record = ({ source, ...result }: CheckResult): CheckResult => {
    // `source` last on every result, so the JSON reads the same whichever check made it.
    const clean = { ...result, detail: scrub(result.detail), remediation: scrub(result.remediation), ...(source === undefined ? {} : { source }) };
    results.set(keyOf(result.name, source), clean);
    return clean;
  };

  const loaded = loadForChecks(settings, options.needs ?? { storage: false });
  record(configurationCheck(loaded));
  const { config, broken } = loaded;
  const sources = sourcesToCheck(settings, config);
  const configSkip = (name: CheckName, sections: Section[]): CheckResult | undefined => {
    const bad = sections.filter((s) => broken.has(s));
    if (!config || bad.length > 0) {
      const names = bad.flatMap((s) => loaded.badSettings.filter((n) => SECTION_SETTINGS[s].includes(n)));
      return skipped(name, "configuration", "FAIL", names.length > 0 ? names.join(", ") : undefined);
    }
    return undefined;
  };

  const lookbackHours = options.lookbackHours ?? config?.workspaceLookbackHours ?? DEFAULTS.workspaceLookbackHours;
  let credential: TokenCredential | undefined;
  const getCredential = (): TokenCredential => (credential ??= createAzureCredential(config!, env, { maxRetries: options.maxRetries ?? 1 }));

  // Azure authentication first: every other check that needs a token depends on it.
  const auth = configSkip("azure_authentication", ["identity"]);
  const tokens = new Map<string, TokenOutcome>();
  if (auth) {
    record(auth);
  } else {
    // The quick check asks only for what its checks use: the storage token.
    const scopes = neededScopes(config!, broken).filter(({ scope }) => mode === "full" || scope === STORAGE_SCOPE);
    const outcome =
      mode === "quick" && scopes.length === 0
        ? {
            name: "azure_authentication" as const,
            status: "PASS" as const,
            detail: "No Entra ID token is needed for the quick check: storage uses a connection string.",
            remediation: "",
          }
        : await azureAuthenticationCheck(scopes, getCredential, budget, tokens);
    record(outcome);
    for (const token of tokens.values()) if (token.ok) scrub.add(token.token);
  }
  const authFailedFor = (scope: string): boolean => {
    const token = tokens.get(scope);
    return resultOf("azure_authentication")?.status === "FAIL" && (token === undefined || !token.ok);
  };

  // One chain per source, all at once: a cold or unreachable warehouse spends its own time
  // (every step is bounded by the same budget), never another source's.
  const databricksChain = async (source: CheckedSource): Promise<void> => {
    const recordOwn = (result: CheckResult): CheckResult => record({ ...result, source: source.name });
    const skip = configSkip("warehouse_connectivity", ["databricks"]);
    if (skip || !source.config) {
      recordOwn(skip ?? skippedSource("warehouse_connectivity"));
    } else if (!source.config.databricks.accessToken && authFailedFor(source.config.databricks.scope)) {
      recordOwn(skipped("warehouse_connectivity", "azure_authentication", "FAIL"));
    } else {
      const { databricks } = source.config;
      const token = tokens.get(databricks.scope);
      const principal = !databricks.accessToken && token?.ok ? token.principal : undefined;
      await warehouseChecks(
        { ...source, config: source.config },
        getCredential,
        budget,
        { lookbackHours, nowMs: now(), broken, ...(principal ? { principal } : {}) },
        recordOwn,
      );
    }
    for (const [name, dependency] of [
      ["system_table_access", "warehouse_connectivity"],
      ["audit_table_columns", "system_table_access"],
      ["sql_text_visibility", "system_table_access"],
      ["workspace_filter", "system_table_access"],
    ] as const) {
      if (!resultOf(name, source.name)) recordOwn(skippedAfter(name, resultOf(dependency, source.name)!));
    }
  };

  const blobChain = async (): Promise<void> => {
    let containers: StorageContainers | undefined;
    const skip = configSkip("blob_container", ["storage"]);
    if (skip) {
      record(skip);
    } else if (!config!.storage) {
      record({
        name: "blob_container",
        status: "WARN",
        detail: "No storage configured: the export has nowhere to write its archive and state.",
        remediation:
          "Set EXPORT_STORAGE_ACCOUNT_URL to the blob endpoint (e.g. 'https://mystorage.blob.core.windows.net') and give the app's identity the Storage Blob Data Contributor role on the account or the container (or EXPORT_STORAGE_CONNECTION_STRING for local runs).",
      });
    } else if (config!.storage.kind === "accountUrl" && authFailedFor(STORAGE_SCOPE)) {
      record(skipped("blob_container", "azure_authentication", "FAIL"));
    } else {
      containers = createContainerClients(config!.storage, config!.storage.kind === "accountUrl" ? getCredential() : noCredential);
      record(
        await blobContainerCheck(containers.state, config!.storage.stateContainer, budget, { container: containers.archive, name: config!.storage.container }),
      );
    }
    const blob = resultOf("blob_container")!;
    const names = sources.map((source) => source.name);
    const scheduleSkip = broken.has("schedule") ? configSkip("export_freshness", ["schedule"]) : undefined;
    if (!containers || blob.status === "FAIL") {
      const blobSkip = (name: CheckName) => skipped(name, "blob_container", blob.status === "FAIL" ? "FAIL" : "WARN");
      for (const source of names) {
        record({ ...(scheduleSkip ?? blobSkip("export_freshness")), source });
        record({ ...blobSkip("log_analytics_lag"), source });
      }
    } else {
      for (const result of await exportStateChecks(
        new BlobExportStore(containers.archive, containers.state),
        config!,
        names,
        scheduleSkip !== undefined,
        now(),
        budget,
      ))
        record(result);
      if (scheduleSkip) for (const source of names) record({ ...scheduleSkip, source });
    }
    const blobUsable = containers && blob.status !== "FAIL";
    const reconcileSkip = configSkip("log_analytics_reconciliation", ["logsIngestion", "logAnalyticsQuery"]);
    const exportStore = containers && new BlobExportStore(containers.archive, containers.state);
    if (reconcileSkip) record(reconcileSkip);
    else if (!blobUsable) record(skipped("log_analytics_reconciliation", "blob_container", blob.status === "FAIL" ? "FAIL" : "WARN"));
    else if (mode === "quick") record(await lastReconciliationCheck(config!, exportStore!, now()));
    else if (config!.logAnalyticsQuery && authFailedFor(LOG_ANALYTICS_QUERY_SCOPE))
      record(skipped("log_analytics_reconciliation", "azure_authentication", "FAIL"));
    else
      record(
        await reconciliationCheck(config!, exportStore!, getCredential(), now(), budget, undefined, new BackfillStore(containers!.archive, containers!.state)),
      );
    record(
      blobUsable
        ? await detectionsStateCheck(containers!.state, settings, now())
        : skipped("detections_state", "blob_container", blob.status === "FAIL" ? "FAIL" : "WARN"),
    );
    record(blobUsable ? await backfillCheck(containers!, now()) : skipped("backfill", "blob_container", blob.status === "FAIL" ? "FAIL" : "WARN"));
  };

  const logsChain = async (): Promise<void> => {
    const skip = configSkip("logs_ingestion", ["logsIngestion"]);
    if (skip) record(skip);
    else if (!config!.logsIngestion) {
      record({
        name: "logs_ingestion",
        status: "PASS",
        detail:
          "Log Analytics forwarding is off (LOGS_INGESTION_ENDPOINT, LOGS_INGESTION_RULE_ID and LOGS_INGESTION_STREAM are not set); only the Blob archive is written.",
        remediation: "",
      });
    } else if (authFailedFor(LOGS_INGESTION_SCOPE)) record(skipped("logs_ingestion", "azure_authentication", "FAIL"));
    else record(await logsIngestionCheck(config!, getCredential(), budget));
  };

  const chains = mode === "full" ? [...sources.map(databricksChain), blobChain(), logsChain()] : [blobChain()];
  await Promise.all(chains.map((chain) => chain.catch(() => undefined)));

  // Anything a chain could not record (an unexpected throw) is still reported, never omitted.
  const reported = (name: CheckName, source?: string): CheckResult =>
    resultOf(name, source) ??
    record({
      name,
      status: "FAIL",
      detail: "The check did not complete.",
      remediation: "Run the check again; if it persists, look at the function's logs.",
      ...(source === undefined ? {} : { source }),
    });
  const checks = CHECK_NAMES.filter(reports).flatMap((name) =>
    PER_SOURCE_CHECKS.has(name) ? sources.map((source) => reported(name, source.name)) : [reported(name)],
  );
  const named = namesSources(sources.map((source) => source.name));
  return {
    status: worstStatus(checks.map((c) => c.status)),
    mode,
    checkedAt: new Date(startedMs).toISOString(),
    durationMs: Math.round(budget.elapsed()),
    checks: named ? checks.map((check) => labelled(check, sources)) : checks,
    sources: sources.map(({ name }) => ({ name, status: worstStatus(checks.filter((c) => c.source === name).map((c) => c.status)) })),
  };
}

/** A source whose own DATABRICKS_SOURCES entry is invalid: its checks are skipped, the others' run. */
function skippedSource(name: CheckName): CheckResult {
  return skipped(name, "configuration", "FAIL", "DATABRICKS_SOURCES");
}

/** Names the source in the detail, and its warehouse in the remediation, of a per-source result. */
function labelled(check: CheckResult, sources: readonly CheckedSource[]): CheckResult {
  if (check.source === undefined) return check;
  const databricks = sources.find((source) => source.name === check.source)?.config?.databricks;
  const warehouse = databricks ? ` (warehouse https://${databricks.serverHostname}${databricks.httpPath})` : "";
  return {
    ...check,
    detail: `source '${check.source}': ${check.detail}`,
    remediation: check.remediation ? `Source '${check.source}'${warehouse}: ${check.remediation}` : "",
  };
}
