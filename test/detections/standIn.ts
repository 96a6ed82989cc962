import { afterAll, beforeAll } from "vitest";
import type { SandboxStack } from "../../sandbox/stack";
import { Warehouse } from "../../shared/databricks";
import type { AuditRow } from "../support/auditRows";
import { startStack, warehouseSettings } from "../support/exportHarness";

/**
 * A test file's SQL warehouse stand-in holding `rows`, with a driver session on it: started before
 * the file's tests, closed after them. `ready` runs once the rows are in (e.g. to evaluate once).
 */
export function warehouseWithRows(rows: readonly AuditRow[], ready?: (warehouse: Warehouse) => Promise<void>): () => Warehouse {
  let stack: SandboxStack | undefined;
  let warehouse: Warehouse | undefined;
  beforeAll(async () => {
    stack = await startStack();
    await stack.warehouse.appendRows([...rows]);
    warehouse = await Warehouse.connect(warehouseSettings(stack.contract.databricks), undefined);
    await ready?.(warehouse);
  });
  afterAll(async () => {
    await warehouse?.close();
    await stack?.close();
  });
  return () => {
    if (!warehouse) throw new Error("the warehouse stand-in is not started yet");
    return warehouse;
  };
}
