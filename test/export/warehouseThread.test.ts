import type { AccessToken, TokenCredential } from "@azure/identity";
import type { Worker } from "node:worker_threads";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { SandboxStack } from "../../sandbox/stack";
import { DATABRICKS_DEFAULT_SCOPE, type DatabricksSettings } from "../../shared/config";
import { Warehouse, isWarehouseError, warehouseErrorKind } from "../../shared/databricks";
import { ThreadedWarehouse } from "../../shared/databricksThread";
import type { PreparedEvent, Preparation } from "../../shared/export/batching";
import { lineText } from "../../shared/sentinelRecord";
import { auditRow, isoMicros } from "../support/auditRows";
import { ALL_ROWS, hostOf, identityCredential, startStack } from "../support/exportHarness";

/** The export's reader thread: the same rows as the driver on the main thread, its errors, stopping early, tokens from the main thread. */
let stack: SandboxStack;
let databricks: DatabricksSettings;
const T0 = Date.parse("2026-09-01T00:00:00Z");
const ROWS = 120;

beforeAll(async () => {
  stack = await startStack();
  databricks = { ...hostOf(stack), httpPath: stack.contract.databricks.httpPath, scope: DATABRICKS_DEFAULT_SCOPE };
  const rows = Array.from({ length: ROWS }, (_, i) =>
    auditRow(isoMicros((T0 + i * 1000) * 1000 + (i % 7)), {
      request_params: i % 3 === 0 ? { big: "é€😀".repeat(5_000) } : { i: String(i) },
      ...(i % 5 === 0 ? { user_identity: null, response: null } : {}),
    }),
  );
  await stack.warehouse.appendRows(rows);
});

afterAll(async () => {
  await stack?.close();
});

const withPat = (): DatabricksSettings => ({ ...databricks, accessToken: stack.contract.databricks.token });

const PREPARATION: Preparation = { redaction: [{ key: "i", action: "mask" }], ingestionOn: true };

async function scanAll(source: { scan: Warehouse["scan"] }): Promise<PreparedEvent[]> {
  const events: PreparedEvent[] = [];
  for await (const chunk of source.scan({
    filter: ALL_ROWS,
    after: { timeUs: T0 * 1000, eventId: "" },
    toUs: (T0 + ROWS * 1000) * 1000,
    preparation: PREPARATION,
  }))
    events.push(...chunk);
  return events;
}

describe("the warehouse reader thread", () => {
  it("reads exactly what the driver reads on the main thread, in chunks", async () => {
    const direct = await Warehouse.connect(withPat(), undefined, { fetchRows: 25 });
    const threaded = await ThreadedWarehouse.connect(withPat(), undefined, { fetchRows: 25 });
    try {
      const expected = await scanAll(direct);
      const got = await scanAll(threaded);
      expect(got.length).toBe(ROWS);
      expect(got).toEqual(expected);
      expect(got.filter((e) => lineText(e.line).includes(`"big":"${"é€😀".repeat(5_000)}"`))).toHaveLength(ROWS / 3);
      // Prepared on the thread as the export asked: redacted, with the record sizes.
      expect(got.filter((e) => lineText(e.line).includes('"i":"[REDACTED]"'))).toHaveLength(ROWS - ROWS / 3);
      expect(got.every((e) => e.recordBytes > 0)).toBe(true);
      expect(await threaded.countByHour(ALL_ROWS, T0 * 1000, (T0 + 3600_000) * 1000)).toEqual(
        await direct.countByHour(ALL_ROWS, T0 * 1000, (T0 + 3600_000) * 1000),
      );
    } finally {
      await direct.close();
      await threaded.close();
    }
  });

  it("hands a fetched chunk over in slices of handoffRows, in order, none lost", async () => {
    const direct = await Warehouse.connect(withPat(), undefined, { fetchRows: 50 });
    const threaded = await ThreadedWarehouse.connect(withPat(), undefined, { fetchRows: 50, handoffRows: 20 });
    try {
      const sizes: number[] = [];
      const got: PreparedEvent[] = [];
      for await (const chunk of threaded.scan({
        filter: ALL_ROWS,
        after: { timeUs: T0 * 1000, eventId: "" },
        toUs: (T0 + ROWS * 1000) * 1000,
        preparation: PREPARATION,
      })) {
        sizes.push(chunk.length);
        got.push(...chunk);
      }
      // 120 rows fetched as 50 + 50 + 20, each chunk cut into slices of at most 20.
      expect(sizes).toEqual([20, 20, 10, 20, 20, 10, 20]);
      expect(got).toEqual(await scanAll(direct));
    } finally {
      await direct.close();
      await threaded.close();
    }
  });

  it("stops the query when the reader stops early, and goes on serving the next one", async () => {
    const threaded = await ThreadedWarehouse.connect(withPat(), undefined, { fetchRows: 10 });
    try {
      let chunks = 0;
      for await (const chunk of threaded.scan({
        filter: ALL_ROWS,
        after: { timeUs: 0, eventId: "" },
        toUs: (T0 + ROWS * 1000) * 1000,
        preparation: PREPARATION,
      })) {
        expect(chunk.length).toBeGreaterThan(0);
        chunks += 1;
        if (chunks === 2) break;
      }
      expect(chunks).toBe(2);
      expect((await scanAll(threaded)).length).toBe(ROWS);
    } finally {
      await threaded.close();
    }
  });

  it("fails the read, rather than waiting forever, when the reader thread dies; close() still returns", async () => {
    const threaded = await ThreadedWarehouse.connect(withPat(), undefined, { fetchRows: 10 });
    const scan = threaded.scan({ filter: ALL_ROWS, after: { timeUs: 0, eventId: "" }, toUs: (T0 + ROWS * 1000) * 1000, preparation: PREPARATION });
    const reading = scan[Symbol.asyncIterator]();
    expect((await reading.next()).done).toBe(false);
    // The thread ending on its own (out of memory, say): reached through the private field on purpose.
    await (threaded as unknown as { worker: Worker }).worker.terminate();
    const drain = async (): Promise<void> => {
      while (!(await reading.next()).done);
    };
    await expect(drain()).rejects.toThrow(/reader thread stopped/);
    await threaded.close();
  });

  it("hands the driver's SQL errors over with what classifies them", async () => {
    const threaded = await ThreadedWarehouse.connect(withPat(), undefined);
    try {
      const failing = async () => {
        for await (const chunk of threaded.rows({ sql: "SELECT * FROM system.access.no_such_table", params: {} })) void chunk;
      };
      const error = await failing().then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(error).toBeInstanceOf(Error);
      expect(isWarehouseError(error)).toBe(true);
      expect(warehouseErrorKind(error)).toBe("sql");
      expect((error as { response?: { sqlState?: string } }).response?.sqlState).toMatch(/^42/);
    } finally {
      await threaded.close();
    }
  });

  it("fails to connect with a wrong token as an authentication error", async () => {
    const error = await ThreadedWarehouse.connect({ ...databricks, accessToken: "dapi-wrong" }, undefined, { retryMaxAttempts: 1 }).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(isWarehouseError(error)).toBe(true);
    expect(warehouseErrorKind(error)).toBe("auth");
  });

  it("gets Entra ID tokens from the main thread's credential (the managed identity)", async () => {
    const scopes: string[] = [];
    const counting: TokenCredential = {
      getToken: async (scope): Promise<AccessToken | null> => {
        scopes.push(String(scope));
        return identityCredential().getToken(scope);
      },
    };
    const threaded = await ThreadedWarehouse.connect(databricks, counting);
    try {
      expect((await scanAll(threaded)).length).toBe(ROWS);
      expect(scopes.length).toBeGreaterThan(0);
      expect(new Set(scopes)).toEqual(new Set([DATABRICKS_DEFAULT_SCOPE]));
    } finally {
      await threaded.close();
    }

    const refusing: TokenCredential = {
      getToken: () => Promise.reject(new Error("ManagedIdentityCredential: no identity assigned")),
    };
    const error = await ThreadedWarehouse.connect(databricks, refusing, { retryMaxAttempts: 1 }).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(String((error as Error).message)).toContain("no identity assigned");
  });
});
