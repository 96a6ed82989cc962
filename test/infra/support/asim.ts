// The ASIM side of the parser tests: the ASIM tester's field list (asimTesterFields.csv, with its
// source in asimTesterFields.source.json) and the mapping table of sentinel/parsers applied in
// TypeScript the way the parsers' KQL applies it, so sample rows can be classified in a unit test.
import { readFileSync } from "node:fs";
import { join } from "node:path";

export type AsimSchema = "AuditEvent" | "Authentication";

export interface AsimField {
  name: string;
  type: string;
  /** Mandatory, Recommended, Optional, Conditional, Alias or Related. */
  fieldClass: string;
  schema: AsimSchema;
  /** The values the field may take, when the tester enumerates them. */
  values: string[];
  /** Alias: the field it stands for. Conditional: the field that makes it required. */
  refersTo: string;
}

export const ASIM_SOURCE = JSON.parse(readFileSync(join(__dirname, "asimTesterFields.source.json"), "utf8")) as {
  repository: string;
  path: string;
  commit: string;
};

export function asimFields(schema: AsimSchema): AsimField[] {
  const [header, ...lines] = readFileSync(join(__dirname, "asimTesterFields.csv"), "utf8").trim().split("\n");
  if (header !== "ColumnName,ColumnType,Class,Schema,LogicalType,ListOfValues,Aliased") throw new Error(`unexpected header: ${header}`);
  return lines
    .map((line) => line.split(","))
    .map(([name, type, fieldClass, rowSchema, , values, refersTo]) => ({
      name: name!,
      type: type!,
      fieldClass: fieldClass!,
      schema: rowSchema as AsimSchema,
      values: values ? values.split("|") : [],
      refersTo: refersTo ?? "",
    }))
    .filter((field) => field.schema === schema);
}

export interface AsimMapping {
  auditEventActions: { service: string; action: string; eventType: string; objectType: string }[];
  authenticationActions: { service: string; action: string; eventType: string; logonMethod: string; logonProtocol: string; unauthorizedDetails?: string }[];
  actionPrefixes: { prefix: string; eventType: string }[];
  eventResult: { successBelow: number; noStatusCode: string };
  failureDetails: { statusCode: number; auditEventResultDetails: string; authenticationEventResultDetails: string }[];
}

export function readAsimMapping(repo: string): AsimMapping {
  return JSON.parse(readFileSync(join(repo, "sentinel", "parsers", "DatabricksAsimMapping.json"), "utf8")) as AsimMapping;
}

export type Classification =
  | { schema: "Authentication"; eventType: string; logonMethod: string }
  | { schema: "AuditEvent"; eventType: string; objectType: string; mappedBy: "service and action" | "action" | "prefix" | "none" };

/** Which parser takes a row and what EventType (and ObjectType) it gives, in the KQL's order of lookups. */
export function classify(mapping: AsimMapping, service: string, action: string): Classification {
  const login = mapping.authenticationActions.find((a) => a.service === service && a.action === action);
  if (login) return { schema: "Authentication", eventType: login.eventType, logonMethod: login.logonMethod };
  const exact = mapping.auditEventActions.find((a) => a.service === service && a.action === action);
  if (exact) return { schema: "AuditEvent", eventType: exact.eventType, objectType: exact.objectType, mappedBy: "service and action" };
  const anyService = mapping.auditEventActions.find((a) => a.service === "*" && a.action === action);
  if (anyService) return { schema: "AuditEvent", eventType: anyService.eventType, objectType: anyService.objectType, mappedBy: "action" };
  const prefix = /^([a-z]+)/.exec(action)?.[1];
  const byPrefix = mapping.actionPrefixes.find((p) => p.prefix === prefix);
  if (byPrefix) return { schema: "AuditEvent", eventType: byPrefix.eventType, objectType: "Other", mappedBy: "prefix" };
  return { schema: "AuditEvent", eventType: "Other", objectType: "Other", mappedBy: "none" };
}

/**
 * EventResult and EventResultDetails of a status code, as DatabricksEventResult and
 * DatabricksFailureDetails give them; for Authentication, a 401 of an action that names its
 * unauthorizedDetails gives those.
 */
export function result(mapping: AsimMapping, schema: AsimSchema, status: number | null, action = ""): { eventResult: string; details: string } {
  const eventResult = status === null ? mapping.eventResult.noStatusCode : status < mapping.eventResult.successBelow ? "Success" : "Failure";
  if (eventResult !== "Failure") return { eventResult, details: "" };
  const own = mapping.authenticationActions.find((a) => a.action === action)?.unauthorizedDetails;
  if (schema === "Authentication" && status === 401 && own) return { eventResult, details: own };
  const failure = mapping.failureDetails.find((f) => f.statusCode === status);
  const details = failure ? (schema === "AuditEvent" ? failure.auditEventResultDetails : failure.authenticationEventResultDetails) : "Other";
  return { eventResult, details };
}
