import { BlobServiceClient } from "@azure/storage-blob";
import { expect } from "vitest";
import { DEVSTORE_KEY } from "../../sandbox/azurite";
import type { SandboxContract } from "../../sandbox/stack";
import { DETECTIONS_STATE_BLOB, initialDetectionsState } from "../../shared/detections/state";

/** A detections state whose every detection evaluated up to `untilMs`. */
export async function writeDetectionsState(storage: SandboxContract["storage"], untilMs: number): Promise<void> {
  const state = initialDetectionsState();
  state.detections.repeated_failed_login_attempts = { evaluatedUntil: new Date(untilMs).toISOString() };
  const blob = BlobServiceClient.fromConnectionString(storage.connectionString).getContainerClient(storage.container).getBlockBlobClient(DETECTIONS_STATE_BLOB);
  const body = JSON.stringify(state);
  await blob.upload(body, body.length);
}

/** No token, key, connection string, identity header, JWT or stack trace of the sandbox in `text`. */
export function expectNoSecrets(contract: SandboxContract, text: string): void {
  for (const secret of [
    contract.databricks.token,
    contract.databricks.noGrantToken,
    DEVSTORE_KEY,
    contract.env.IDENTITY_HEADER!,
    contract.storage.connectionString,
  ]) {
    expect(text).not.toContain(secret);
  }
  expect(text).not.toMatch(/eyJ[\w-]+\.[\w-]+/); // no JWT
  expect(text).not.toMatch(/\n\s+at /); // no stack trace
}

/**
 * Settings put in process.env for a file's duration, as the Functions host gives them to the app:
 * `set` remembers each variable's value before its first change, `restore` puts them all back.
 */
export function processEnvOverrides(): { set: (values: Record<string, string | undefined>) => void; restore: () => void } {
  const saved: Record<string, string | undefined> = {};
  const put = (name: string, value: string | undefined): void => {
    if (value === undefined) delete process.env[name];
    else process.env[name] = value;
  };
  return {
    set: (values) => {
      for (const [name, value] of Object.entries(values)) {
        if (!(name in saved)) saved[name] = process.env[name];
        put(name, value);
      }
    },
    restore: () => {
      for (const [name, value] of Object.entries(saved)) put(name, value);
    },
  };
}

/** What a quick check reports, in order: written out here, so a check that joins or leaves the quick set shows. */
export const QUICK_REPORT_ORDER = [
  "configuration",
  "azure_authentication",
  "blob_container",
  "export_freshness",
  "log_analytics_lag",
  "log_analytics_reconciliation",
  "detections_state",
  "backfill",
];
