import { ConcurrentRunError, ConfigError, describeError } from "../shared/errors";
import { explainWarehouseError } from "../shared/remediation";
import { isWarehouseError } from "../shared/databricks";

/**
 * Exit codes: 1 failure, 2 invalid settings or arguments, 3 another run holds the export lock,
 * 4 `dbx-audit reconcile` found a difference (rows missing from Log Analytics, duplicated, or unknown to the archive).
 */
export const EXIT = { failure: 1, usage: 2, concurrentRun: 3, differences: 4 } as const;

export function fail(error: unknown): void {
  if (error instanceof ConfigError) {
    process.stderr.write(`${error.message}\nNothing was read or written.\n`);
    process.exitCode = EXIT.usage;
  } else if (error instanceof ConcurrentRunError) {
    process.stderr.write(`${error.message}\n`);
    process.exitCode = EXIT.concurrentRun;
  } else {
    process.stderr.write(`Error: ${isWarehouseError(error) ? explainWarehouseError(error) : describeError(error)}\n`);
    process.exitCode = EXIT.failure;
  }
}
