/** A setting or argument that is missing or invalid. Carries every problem found, not just the first. */
export class ConfigError extends Error {
  override readonly name = "ConfigError";
  constructor(readonly problems: readonly string[]) {
    super(
      problems.length === 1
        ? `Invalid configuration: ${problems[0]}`
        : `Invalid configuration (${problems.length} problems):\n${problems.map((p) => `  - ${p}`).join("\n")}`,
    );
  }
}

/** Another run holds the export lock: this run did nothing, by design. */
export class ConcurrentRunError extends Error {
  override readonly name = "ConcurrentRunError";
}

/** A run lost its lock mid-way (another run took over, or the lock expired): it stopped at once and must fail. */
export class LockLostError extends Error {
  override readonly name = "LockLostError";
}

/** Some events were not delivered to a sink; progress up to the failure is saved. `summary` is the run's, when it got that far. */
export class DeliveryError extends Error {
  override readonly name = "DeliveryError";
  constructor(
    message: string,
    readonly summary?: unknown,
  ) {
    super(message);
  }
}

/** The HTTP status an Azure SDK or driver error carries, if any. */
export function statusOf(error: unknown): number | undefined {
  const status = (error as { statusCode?: unknown } | undefined)?.statusCode;
  return typeof status === "number" ? status : undefined;
}

export function ensureError(value: unknown): Error {
  if (value instanceof Error) return value;
  return new Error(typeof value === "string" ? value : JSON.stringify(value));
}

/** A one-line description of an error that never includes request bodies or headers. */
export function describeError(value: unknown): string {
  const error = ensureError(value);
  const withCode = error as Error & { statusCode?: unknown; code?: unknown; sqlState?: unknown; response?: { sqlState?: unknown } };
  const parts = [error.message.split("\n")[0] ?? error.name];
  if (typeof withCode.statusCode === "number") parts.push(`HTTP ${withCode.statusCode}`);
  const sqlState = withCode.sqlState ?? withCode.response?.sqlState;
  if (typeof sqlState === "string" && sqlState) parts.push(`SQLSTATE ${sqlState}`);
  if (typeof withCode.code === "string" && !error.message.includes(withCode.code)) parts.push(withCode.code);
  return redactSecrets(parts.join(" | "));
}

const SECRET_PATTERNS: [RegExp, string][] = [
  [/(AccountKey=)[^;\s]+/gi, "$1***"],
  [/(SharedAccessSignature=)[^;\s]+/gi, "$1***"],
  [/([?&]sig=)[^&\s]+/gi, "$1***"],
  [/\bdapi[0-9a-f]{32}(-\d+)?\b/gi, "dapi***"],
  [/\beyJ[\w-]+\.[\w-]+\.[\w-]*/g, "***"],
  [/(Bearer\s+)\S+/gi, "$1***"],
];

/** Masks anything shaped like a key, SAS, PAT or JWT: a last line of defence for log text. */
export function redactSecrets(text: string): string {
  return SECRET_PATTERNS.reduce((out, [pattern, replacement]) => out.replace(pattern, replacement), text);
}
