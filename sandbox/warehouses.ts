import { startSqlWarehouse, type SqlWarehouse, type SqlWarehouseOptions } from "./sqlWarehouse/server";

/**
 * The sandbox's SQL warehouse stand-ins: one per region (one per `--events` file), each on a
 * port, httpPath and admin URL of its own, all answering the same two tokens.
 */
export interface WarehouseGroup {
  /** In flag order; never empty. */
  warehouses: SqlWarehouse[];
  /** Stops every warehouse; resolves when all are gone. */
  close(): Promise<void>;
}

/**
 * A region's name in the contract and in DATABRICKS_SOURCES: `region1`, `region2`, ... in flag
 * order. Not derived from the file name, so it is always a valid setting value and stays the
 * same when a file is renamed.
 */
export function regionName(index: number): string {
  return `region${index + 1}`;
}

/** Starts `count` warehouses at once on free ports; if one fails, stops the ones that started. */
export async function startWarehouses(count: number, options: Omit<SqlWarehouseOptions, "port">): Promise<WarehouseGroup> {
  if (!Number.isInteger(count) || count < 1) throw new RangeError(`the sandbox needs at least one warehouse, got ${count}`);
  const started = await Promise.allSettled(Array.from({ length: count }, () => startSqlWarehouse({ ...options, port: 0 })));
  const warehouses = started.flatMap((r) => (r.status === "fulfilled" ? [r.value] : []));
  const close = async (): Promise<void> => {
    const results = await Promise.allSettled(warehouses.map((w) => w.close()));
    const errors = results.flatMap((r) => (r.status === "rejected" ? [r.reason as unknown] : []));
    if (errors.length > 0) throw new AggregateError(errors, "sandbox: some warehouses did not stop cleanly");
  };
  const failed = started.find((r): r is PromiseRejectedResult => r.status === "rejected");
  if (failed) {
    await close().catch(() => undefined);
    throw failed.reason;
  }
  return { warehouses, close };
}
