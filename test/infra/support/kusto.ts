// KQL parsed and analysed offline with @kusto/language-service-next (the Kusto.Language library that
// Azure Data Explorer's and Log Analytics' editors use, compiled to JavaScript): queries are checked
// against the tables' real schemas, from infra/tables.json, so an unknown column, a misspelt operator
// or a type error fails a test here instead of a rule failing to save in Sentinel.
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { join } from "node:path";

interface KustoList<T> {
  Count: number;
  getItem(index: number): T;
}
interface KustoDiagnostic {
  Severity: string;
  Message: string;
  Start: number;
}
interface KustoColumn {
  Name: string;
  Type: { Name: string };
}
interface KustoCode {
  GetDiagnostics(): KustoList<KustoDiagnostic>;
  ResultType: { Columns?: KustoList<KustoColumn> } | null;
}
interface KustoLanguage {
  Symbols: {
    ScalarTypes: Record<string, unknown>;
    ColumnSymbol: new (name: string, type: unknown) => unknown;
    TableSymbol: { $ctor4: new (name: string, columns: unknown[]) => unknown };
    DatabaseSymbol: new (name: string, tables: unknown[]) => unknown;
    ClusterSymbol: new (name: string, databases: unknown[]) => unknown;
  };
  GlobalState: { Default: { WithCluster(cluster: unknown): { WithDatabase(db: unknown): unknown } } };
  KustoCode: { ParseAndAnalyze(text: string, globals: unknown): KustoCode };
}

let language: KustoLanguage | undefined;
const load = createRequire(__filename);

function kusto(): KustoLanguage {
  if (!language) {
    const scope = globalThis as unknown as { Bridge?: unknown; Kusto?: { Language: KustoLanguage } };
    // The library is a Bridge.NET build: its runtime goes on the global object first.
    scope.Bridge ??= load("@kusto/language-service-next/bridge.js") as unknown;
    load("@kusto/language-service-next/Kusto.Language.Bridge.js");
    language = scope.Kusto!.Language;
  }
  return language;
}

export interface TableColumn {
  name: string;
  type: string;
  description?: string;
}
export interface TableDefinition {
  stream: string;
  description: string;
  columns: TableColumn[];
}

export function readTables(repo: string): Record<string, TableDefinition> {
  return (JSON.parse(readFileSync(join(repo, "infra", "tables.json"), "utf8")) as { tables: Record<string, TableDefinition> }).tables;
}

/** The table API's type names (tables.json) as Kusto's scalar types. */
const SCALAR_TYPES: Record<string, string> = {
  string: "String",
  int: "Int",
  long: "Long",
  real: "Real",
  boolean: "Bool",
  datetime: "DateTime",
  dynamic: "Dynamic",
  guid: "Guid",
  timespan: "TimeSpan",
};

export type KustoGlobals = unknown;

/**
 * Columns Log Analytics adds to every table besides those a table declares (Type is the table's
 * name, _ItemId the record's own id): a workspace function may read them, so the parser tests ask
 * for them. The rules' and workbook's checks leave them out and so keep to the declared columns.
 */
export const STANDARD_COLUMNS: TableColumn[] = [
  { name: "Type", type: "string" },
  { name: "TenantId", type: "string" },
  { name: "_ResourceId", type: "string" },
  { name: "_ItemId", type: "string" },
];

export function globalsFor(tables: Record<string, TableDefinition>, options: { standardColumns?: boolean } = {}): KustoGlobals {
  const { Symbols, GlobalState } = kusto();
  const symbols = Object.entries(tables).map(
    ([name, table]) =>
      new Symbols.TableSymbol.$ctor4(
        name,
        [...table.columns, ...(options.standardColumns ? STANDARD_COLUMNS : [])].map((column) => {
          const scalar = SCALAR_TYPES[column.type.toLowerCase()];
          if (!scalar) throw new Error(`${name}.${column.name}: no Kusto type for ${column.type}`);
          return new Symbols.ColumnSymbol(column.name, Symbols.ScalarTypes[scalar]);
        }),
      ),
  );
  const database = new Symbols.DatabaseSymbol("workspace", symbols);
  return GlobalState.Default.WithCluster(new Symbols.ClusterSymbol("loganalytics", [database])).WithDatabase(database);
}

export interface Analysis {
  /** Error diagnostics, each with the text around where it starts. */
  errors: string[];
  /** The result's columns (name and Kusto type), when the query returns a table. */
  columns: Map<string, string>;
}

export function analyse(query: string, globals: KustoGlobals): Analysis {
  const code = kusto().KustoCode.ParseAndAnalyze(query, globals);
  const diagnostics = code.GetDiagnostics();
  const errors: string[] = [];
  for (let i = 0; i < diagnostics.Count; i++) {
    const diagnostic = diagnostics.getItem(i);
    if (diagnostic.Severity === "Error") errors.push(`${diagnostic.Message} (at "${query.slice(diagnostic.Start, diagnostic.Start + 30)}")`);
  }
  const columns = new Map<string, string>();
  const resultColumns = code.ResultType?.Columns;
  for (let i = 0; resultColumns && i < resultColumns.Count; i++) {
    const column = resultColumns.getItem(i);
    columns.set(column.Name, column.Type.Name);
  }
  return { errors, columns };
}
