import Ajv, { type ErrorObject } from "ajv";
import { parse as parseYaml } from "yaml";
import { BUILT_IN_DETECTIONS } from "./catalog";
import { expressionProblem } from "./sql";
import { GROUP_FIELDS, SEVERITIES, THRESHOLD_OPERATORS, WINDOW_MINUTES, type Detection, type GroupField, type Severity, type ThresholdOperator } from "./types";

/**
 * The overrides file (YAML or JSON): disable, retune or add detections without code.
 *
 *   detections:
 *     repeated_failed_login_attempts: { threshold: 3, severity: High }
 *     use_of_print_statements: { enabled: false }
 *     cluster_deleted_by_contractor:              # a new detection
 *       description: A contractor deleted a cluster.
 *       severity: Medium
 *       filter: "action_name = 'permanentDelete' AND user_identity.email LIKE '%@contractor.example'"
 *       operator: ">"
 *       threshold: 0
 *
 * Each entry is validated on its own against the JSON Schema below: a malformed entry is
 * reported (naming the entry and the field) and left out, a built-in keeps its defaults, and
 * every other detection runs.
 */

/** Window lengths as the file writes them (ISO-8601 durations). */
export const WINDOWS: Record<string, number> = Object.fromEntries(
  WINDOW_MINUTES.map((minutes) => [minutes === 1440 ? "P1D" : minutes % 60 === 0 ? `PT${minutes / 60}H` : `PT${minutes}M`, minutes]),
);

export function windowName(minutes: number): string {
  return Object.entries(WINDOWS).find(([, m]) => m === minutes)?.[0] ?? `PT${minutes}M`;
}

const TUNING = {
  enabled: { type: "boolean" },
  threshold: { type: "integer", minimum: 0, maximum: 1_000_000_000 },
  operator: { enum: [...THRESHOLD_OPERATORS] },
  window: { enum: Object.keys(WINDOWS) },
  severity: { enum: [...SEVERITIES] },
} as const;

const BUILT_IN_ENTRY_SCHEMA = { type: "object", additionalProperties: false, properties: TUNING } as const;

const CUSTOM_ENTRY_SCHEMA = {
  type: "object",
  additionalProperties: false,
  required: ["description", "severity", "filter", "operator", "threshold"],
  properties: {
    ...TUNING,
    description: { type: "string", minLength: 1, maxLength: 1000 },
    tactic: { type: "string", pattern: "^[A-Za-z]{1,64}$" },
    technique: { type: "string", pattern: "^T[0-9]{4}(\\.[0-9]{3})?$" },
    filter: { type: "string", minLength: 1, maxLength: 8000 },
    measure: { type: "string", minLength: 1, maxLength: 2000 },
    group_by: { type: "array", minItems: 1, uniqueItems: true, items: { enum: [...GROUP_FIELDS] } },
    principal: { type: "string", minLength: 1, maxLength: 500 },
  },
} as const;

/** The file's JSON Schema (docs/detections.md shows it; `dbx-audit detections --schema` prints it). */
export const OVERRIDES_SCHEMA = {
  $schema: "http://json-schema.org/draft-07/schema#",
  title: "Detections overrides",
  type: "object",
  additionalProperties: false,
  required: ["detections"],
  properties: {
    detections: {
      type: "object",
      propertyNames: { pattern: "^[a-z][a-z0-9_]{2,63}$" },
      additionalProperties: { oneOf: [BUILT_IN_ENTRY_SCHEMA, CUSTOM_ENTRY_SCHEMA] },
    },
  },
  definitions: { builtIn: BUILT_IN_ENTRY_SCHEMA, custom: CUSTOM_ENTRY_SCHEMA },
} as const;

const ajv = new Ajv({ allErrors: true, strict: false });
const validateBuiltIn = ajv.compile(BUILT_IN_ENTRY_SCHEMA);
const validateCustom = ajv.compile(CUSTOM_ENTRY_SCHEMA);
const validateTop = ajv.compile<unknown>({ ...OVERRIDES_SCHEMA, properties: { detections: { type: "object" } } });

export interface ResolvedCatalog {
  detections: Detection[];
  /** Each names the file, the entry and the field. */
  errors: string[];
}

/** The built-in catalog with the overrides file applied (no file: the catalog as shipped). */
export function resolveCatalog(file?: { name: string; text: string }): ResolvedCatalog {
  const detections = BUILT_IN_DETECTIONS.map((d) => ({ ...d }));
  if (!file) return { detections, errors: [] };
  const errors: string[] = [];
  let document: unknown;
  try {
    document = /\.json$/i.test(file.name) ? JSON.parse(file.text) : parseYaml(file.text);
  } catch (error) {
    return {
      detections,
      errors: [
        `${file.name}: not valid ${/\.json$/i.test(file.name) ? "JSON" : "YAML"} (${(error as Error).message.split("\n")[0]}); every detection runs as built in.`,
      ],
    };
  }
  if (!validateTop(document)) {
    // (validateTop's type guard is Ajv's: the entries are checked one by one below.)
    return { detections, errors: (validateTop.errors ?? []).map((e) => `${file.name}: ${describeAjvError(e, "the file")}`) };
  }
  const entries = (document as { detections: Record<string, unknown> }).detections;
  for (const [name, entry] of Object.entries(entries)) {
    const where = `${file.name}: detection '${name}'`;
    if (!/^[a-z][a-z0-9_]{2,63}$/.test(name)) {
      errors.push(`${where}: a name is 3-64 lower-case letters, digits and '_', starting with a letter.`);
      continue;
    }
    const builtIn = detections.find((d) => d.name === name);
    const validate = builtIn ? validateBuiltIn : validateCustom;
    if (!validate(entry)) {
      for (const e of validate.errors ?? []) errors.push(`${where}: ${describeAjvError(e, "the entry", builtIn !== undefined)}`);
      continue;
    }
    const fields = entry as OverrideEntry;
    if (builtIn) {
      Object.assign(builtIn, tuning(fields));
      continue;
    }
    const problems = (["filter", "measure", "principal"] as const).flatMap((field) => {
      const problem = fields[field] === undefined ? undefined : expressionProblem(fields[field]);
      return problem ? [`${where}: field '${field}' ${problem}.`] : [];
    });
    if (problems.length > 0) {
      errors.push(...problems);
      continue;
    }
    detections.push({
      name,
      description: fields.description!,
      severity: fields.severity!,
      tactic: fields.tactic ?? "",
      technique: fields.technique ?? "",
      filter: fields.filter!,
      ...(fields.measure ? { measure: fields.measure } : {}),
      ...(fields.principal ? { principal: fields.principal } : {}),
      operator: fields.operator!,
      threshold: fields.threshold!,
      windowMinutes: fields.window ? WINDOWS[fields.window]! : 60,
      groupBy: fields.group_by ?? ["email"],
      enabled: fields.enabled ?? true,
      origin: "custom",
    });
  }
  return { detections, errors };
}

interface OverrideEntry {
  enabled?: boolean;
  threshold?: number;
  operator?: ThresholdOperator;
  window?: string;
  severity?: Severity;
  description?: string;
  tactic?: string;
  technique?: string;
  filter?: string;
  measure?: string;
  group_by?: GroupField[];
  principal?: string;
}

function tuning(fields: OverrideEntry): Partial<Detection> {
  return {
    ...(fields.enabled !== undefined ? { enabled: fields.enabled } : {}),
    ...(fields.threshold !== undefined ? { threshold: fields.threshold } : {}),
    ...(fields.operator !== undefined ? { operator: fields.operator } : {}),
    ...(fields.window !== undefined ? { windowMinutes: WINDOWS[fields.window]! } : {}),
    ...(fields.severity !== undefined ? { severity: fields.severity } : {}),
  };
}

function describeAjvError(error: ErrorObject, whole: string, builtIn = false): string {
  const path = error.instancePath.replace(/^\//, "").split("/").filter(Boolean);
  const field = path.length > 0 ? `field '${path.join(".")}'` : whole;
  switch (error.keyword) {
    case "additionalProperties": {
      const extra = (error.params as { additionalProperty: string }).additionalProperty;
      return builtIn
        ? `field '${extra}' cannot be changed on a built-in detection (only enabled, threshold, operator, window, severity); add a detection under a new name instead.`
        : `field '${extra}' is not known (allowed: ${Object.keys(CUSTOM_ENTRY_SCHEMA.properties).join(", ")}).`;
    }
    case "required":
      return `field '${(error.params as { missingProperty: string }).missingProperty}' is required for a new detection.`;
    case "enum":
      return `${field} must be one of ${(error.params as { allowedValues: unknown[] }).allowedValues.map((v) => JSON.stringify(v)).join(", ")}.`;
    default:
      return `${field} ${error.message ?? "is invalid"}.`;
  }
}
