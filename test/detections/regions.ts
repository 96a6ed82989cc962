import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { ContainerClient } from "@azure/storage-blob";
import { startSandboxStack, type SandboxStack } from "../../sandbox/stack";
import type { AlertLine } from "../../shared/detections/alerts";
import { BUILT_IN_DETECTIONS } from "../../shared/detections/catalog";
import { auditRow, isoMicros, type AuditRow } from "../support/auditRows";
import { containerFor } from "../support/exportHarness";

/** Two regions for the detections' tests: the local stack with two SQL warehouse stand-ins (region1, region2). */
export interface TwoRegions {
  stack: SandboxStack;
  close(): Promise<void>;
}

export async function startTwoRegions(): Promise<TwoRegions> {
  const dir = mkdtempSync(join(tmpdir(), "dbx-audit-regions-"));
  const files = ["region1.jsonl", "region2.jsonl"].map((name) => {
    const file = join(dir, name);
    writeFileSync(file, "");
    return file;
  });
  const stack = await startSandboxStack({ eventsFiles: files });
  process.env.IDENTITY_ENDPOINT = stack.contract.env.IDENTITY_ENDPOINT;
  process.env.IDENTITY_HEADER = stack.contract.env.IDENTITY_HEADER;
  return {
    stack,
    close: async () => {
      await stack.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** DATABRICKS_SOURCES for the two stand-ins, each source's fields changed as given (e.g. a wrong httpPath: that warehouse is down). */
export function sourcesSetting(stack: SandboxStack, changes: Record<string, Record<string, string>> = {}): string {
  return JSON.stringify(
    stack.contract.databricksSources.map(({ name, serverHostname, httpPath }) => ({ name, serverHostname, httpPath, ...(changes[name] ?? {}) })),
  );
}

/** An overrides file in the container that leaves only the named detections enabled; its setting. */
export async function onlyDetections(stack: SandboxStack, container: string, names: readonly string[]): Promise<Record<string, string>> {
  const client = containerFor(stack, container);
  await client.createIfNotExists();
  const text = JSON.stringify({
    detections: Object.fromEntries(BUILT_IN_DETECTIONS.filter((d) => !names.includes(d.name)).map((d) => [d.name, { enabled: false }])),
  });
  await client.getBlockBlobClient("only.json").upload(text, Buffer.byteLength(text));
  return { DETECTIONS_CONFIG: "only.json" };
}

export async function blobAlerts(container: ContainerClient): Promise<AlertLine[]> {
  const alerts: AlertLine[] = [];
  for await (const blob of container.listBlobsFlat({ prefix: "alerts/" })) {
    const text = (await container.getBlobClient(blob.name).downloadToBuffer()).toString("utf8");
    for (const line of text.split("\n").filter(Boolean)) alerts.push(JSON.parse(line) as AlertLine);
  }
  return alerts;
}

/** `n` failed logins by `email` from `startMs`, a minute apart; `accountLevel`: workspace "0", as every region's warehouse holds them. */
export function failedLogins(email: string, startMs: number, n: number, fields: AuditRow = {}): AuditRow[] {
  return Array.from({ length: n }, (_, i) =>
    auditRow(isoMicros((startMs + i * 60_000) * 1000), {
      service_name: "accounts",
      action_name: "login",
      response: { status_code: 401, error_message: null, result: null },
      user_identity: { email, subject_name: null },
      ...fields,
    }),
  );
}

export const ACCOUNT_LEVEL: AuditRow = { workspace_id: "0", audit_level: "ACCOUNT_LEVEL" };

/** One event by `email` in each workspace, from `startMs`, ten minutes apart. */
export function activeIn(email: string, workspaces: readonly string[], startMs: number): AuditRow[] {
  return workspaces.map((workspace, i) =>
    auditRow(isoMicros((startMs + i * 600_000) * 1000), { workspace_id: workspace, user_identity: { email, subject_name: null } }),
  );
}
