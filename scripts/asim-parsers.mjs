// The generated parts of the ASIM parsers (sentinel/parsers/*.kql) and of docs/asim.md, from the one
// mapping table, sentinel/parsers/DatabricksAsimMapping.json. Each generated part sits between a
// BEGIN and an END marker line; the BEGIN line names what goes there, so a parser asks only for the
// tables it reads. scripts/sentinel-content.mjs (npm run sentinel) rewrites them, and `--check` fails
// when one is stale, as it does for the analytic rules.
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";

export const MAPPING_FILE = "DatabricksAsimMapping.json";

export function readMapping(dir) {
  return JSON.parse(readFileSync(join(dir, MAPPING_FILE), "utf8"));
}

/** A KQL string literal: double quotes, with backslashes and quotes escaped. */
export function kqlString(value) {
  return `"${String(value).replaceAll("\\", "\\\\").replaceAll('"', '\\"')}"`;
}

function datatable(name, columns, rows) {
  const header = `let ${name} = datatable(${columns.map(([column, type]) => `${column}:${type}`).join(", ")})[`;
  const body = rows.map((row) => `    ${columns.map(([column, type]) => (type === "int" ? String(row[column]) : kqlString(row[column]))).join(", ")}`);
  return [header, body.join(",\n"), "];"].join("\n");
}

/** The named KQL `let` statements the parsers can ask for, each made from the mapping. */
export function kqlParts(mapping) {
  const result = mapping.eventResult;
  return {
    DatabricksAuditEventActions: () =>
      datatable(
        "DatabricksAuditEventActions",
        [
          ["ServiceName", "string"],
          ["ActionName", "string"],
          ["MappedEventType", "string"],
          ["MappedObjectType", "string"],
        ],
        mapping.auditEventActions.map((a) => ({ ServiceName: a.service, ActionName: a.action, MappedEventType: a.eventType, MappedObjectType: a.objectType })),
      ),
    DatabricksAuthenticationActions: () =>
      datatable(
        "DatabricksAuthenticationActions",
        [
          ["ServiceName", "string"],
          ["ActionName", "string"],
          ["EventType", "string"],
          ["LogonMethod", "string"],
          ["LogonProtocol", "string"],
          ["UnauthorizedDetails", "string"],
        ],
        mapping.authenticationActions.map((a) => ({
          ServiceName: a.service,
          ActionName: a.action,
          EventType: a.eventType,
          LogonMethod: a.logonMethod,
          LogonProtocol: a.logonProtocol,
          UnauthorizedDetails: a.unauthorizedDetails ?? "",
        })),
      ),
    DatabricksActionPrefixes: () =>
      datatable(
        "DatabricksActionPrefixes",
        [
          ["ActionPrefix", "string"],
          ["PrefixEventType", "string"],
        ],
        mapping.actionPrefixes.map((p) => ({ ActionPrefix: p.prefix, PrefixEventType: p.eventType })),
      ),
    DatabricksFailureDetails: () =>
      datatable(
        "DatabricksFailureDetails",
        [
          ["ResponseStatusCode", "int"],
          ["AuditEventResultDetails", "string"],
          ["AuthenticationEventResultDetails", "string"],
        ],
        mapping.failureDetails.map((f) => ({
          ResponseStatusCode: f.statusCode,
          AuditEventResultDetails: f.auditEventResultDetails,
          AuthenticationEventResultDetails: f.authenticationEventResultDetails,
        })),
      ),
    DatabricksEventResult: () =>
      `let DatabricksEventResult = (status:int) { case(isnull(status), ${kqlString(result.noStatusCode)}, status < ${Number(result.successBelow)}, "Success", "Failure") };`,
  };
}

const markdownCell = (value) => String(value === "*" ? "any" : value).replaceAll("|", "\\|");

function markdownTable(headers, rows) {
  return [`| ${headers.join(" | ")} |`, `| ${headers.map(() => "---").join(" | ")} |`, ...rows.map((row) => `| ${row.map(markdownCell).join(" | ")} |`)].join(
    "\n",
  );
}

/** The named Markdown parts of docs/asim.md. */
export function docsParts(mapping) {
  const result = mapping.eventResult;
  return {
    auditEventActions: () =>
      markdownTable(
        ["Service", "Action", "EventType", "ObjectType"],
        mapping.auditEventActions.map((a) => [a.service, a.action, a.eventType, a.objectType]),
      ),
    authenticationActions: () =>
      markdownTable(
        ["Service", "Action", "EventType", "LogonMethod", "LogonProtocol", "EventResultDetails of a 401"],
        mapping.authenticationActions.map((a) => [
          a.service,
          a.action,
          a.eventType,
          a.logonMethod,
          a.logonProtocol || "-",
          a.unauthorizedDetails ?? "by status code",
        ]),
      ),
    actionPrefixes: () =>
      markdownTable(
        ["Action starts with", "EventType"],
        mapping.actionPrefixes.map((p) => [p.prefix, p.eventType]),
      ),
    eventResult: () =>
      [
        `- no status code: \`${result.noStatusCode}\``,
        `- a status code below ${result.successBelow}: \`Success\``,
        "- any other: `Failure`, with EventResultDetails by code:",
        "",
        markdownTable(
          ["Status code", "Audit Event EventResultDetails", "Authentication EventResultDetails"],
          [
            ...mapping.failureDetails.map((f) => [f.statusCode, f.auditEventResultDetails, f.authenticationEventResultDetails]),
            ["any other", "Other", "Other"],
          ],
        ),
      ].join("\n"),
  };
}

const KQL_MARKERS = { begin: /^\/\/ BEGIN generated from DatabricksAsimMapping\.json: (.+)$/, end: "// END generated" };
const DOCS_MARKERS = { begin: /^<!-- BEGIN generated from DatabricksAsimMapping\.json: (.+) -->$/, end: "<!-- END generated -->" };

/** `text` with every generated part rewritten; throws on a marker without its end or an unknown part. */
export function renderParts(text, parts, markers, where) {
  const lines = text.split("\n");
  const out = [];
  for (let i = 0; i < lines.length; i++) {
    const begin = markers.begin.exec(lines[i]);
    out.push(lines[i]);
    if (!begin) continue;
    const end = lines.indexOf(markers.end, i + 1);
    if (end < 0) throw new Error(`${where}:${i + 1}: no "${markers.end}" after this marker`);
    const names = begin[1].split(",").map((name) => name.trim());
    for (const name of names) {
      const part = parts[name];
      if (!part) throw new Error(`${where}:${i + 1}: no generated part named ${name} (known: ${Object.keys(parts).join(", ")})`);
      out.push(part());
    }
    out.push(markers.end);
    i = end;
  }
  return out.join("\n");
}

/** Every file with generated parts, and its text as it should be: [{ path, text }]. */
export function renderAsimFiles(root) {
  const dir = join(root, "sentinel", "parsers");
  const mapping = readMapping(dir);
  const files = readdirSync(dir)
    .filter((name) => name.endsWith(".kql"))
    .sort()
    .map((name) => {
      const path = join(dir, name);
      return { path, text: renderParts(readFileSync(path, "utf8"), kqlParts(mapping), KQL_MARKERS, path) };
    });
  const docs = join(root, "docs", "asim.md");
  files.push({ path: docs, text: renderParts(readFileSync(docs, "utf8"), docsParts(mapping), DOCS_MARKERS, docs) });
  return files;
}
