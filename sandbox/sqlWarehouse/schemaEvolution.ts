import {
  BIGINT,
  BOOLEAN,
  DOUBLE,
  DuckDBListType,
  DuckDBStructType,
  DuckDBTypeId,
  VARCHAR,
  listValue,
  mapValue,
  structValue,
  type DuckDBType,
  type DuckDBValue,
} from "@duckdb/node-api";

/**
 * The audit table's schema as it grows. Databricks adds columns to system.access.audit and
 * fields to its structs over time; rows carrying such columns or fields (`--events` files,
 * `POST {adminUrl}/events`) add them to the stand-in's table the way Databricks' table would
 * have them: a new top-level column, or a new field at the end of a struct, NULL for every row
 * written before. `SELECT *`, `DESCRIBE` and schema probes then show them.
 *
 * A new column's or field's type comes from its first non-null JSON value, as Databricks
 * types what its services log: a string is STRING (VARCHAR), an integer BIGINT, another
 * number DOUBLE, a boolean BOOLEAN, an object a STRUCT of its fields (typed the same way, a
 * null field as STRING), an array an ARRAY of its first non-null element's type (STRING when
 * it has none). Structs rather than a JSON string: Databricks' audit schema is structs
 * (user_identity, response, identity_metadata), and the Arrow encoder sends DuckDB STRUCT and
 * LIST as Arrow Struct and List, which the driver returns as objects and arrays, just as a
 * warehouse sends new struct columns. Maps are never inferred (an object is a struct). A null
 * adds nothing (there is no type to infer; the column appears with the first value that has
 * one); an empty object is refused (nor is there a type). A later value of another type is
 * refused, naming the row and the column or field.
 */

/** A row that failed validation; `message` names the column and the problem. */
export class AuditRowError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "AuditRowError";
  }
}

export interface TableColumn {
  name: string;
  duckType: DuckDBType;
}

/** A column (path of one name) or a struct field (the path to it) to add, with its type. */
export interface SchemaChange {
  path: readonly string[];
  duckType: DuckDBType;
}

export class TableSchema {
  private constructor(
    readonly columns: readonly TableColumn[],
    /** Whether the schema still is the one it started as. */
    readonly original: boolean,
  ) {}

  static of(columns: readonly TableColumn[]): TableSchema {
    return new TableSchema(columns, true);
  }

  column(name: string): TableColumn | undefined {
    return this.columns.find((c) => c.name === name);
  }

  /**
   * The schema with what the row brings that it lacks (new columns, new struct fields, down
   * any depth of structs), and those changes; the same schema and none when the row brings
   * nothing new.
   */
  evolvedFor(row: Record<string, unknown>): { schema: TableSchema; changes: SchemaChange[] } {
    let columns: TableColumn[] | undefined;
    const changes: SchemaChange[] = [];
    for (const key of Object.keys(row)) {
      const value = row[key];
      const current = (columns ?? this.columns).find((c) => c.name === key);
      if (!current) {
        sameNameCheck(
          (columns ?? this.columns).map((c) => c.name),
          key,
          `column '${key}'`,
        );
        const duckType = inferType(value, key);
        if (!duckType) continue;
        columns ??= [...this.columns];
        columns.push({ name: key, duckType });
        changes.push({ path: [key], duckType });
        continue;
      }
      if (current.duckType.typeId !== DuckDBTypeId.STRUCT || !isObject(value)) continue;
      const evolved = evolveStruct(current.duckType, value, [key], changes);
      if (evolved !== current.duckType) {
        columns ??= [...this.columns];
        columns[columns.indexOf(current)] = { name: key, duckType: evolved };
      }
    }
    return columns ? { schema: new TableSchema(columns, false), changes } : { schema: this, changes };
  }
}

function evolveStruct(type: DuckDBStructType, value: Record<string, unknown>, path: string[], changes: SchemaChange[]): DuckDBStructType {
  let names: string[] | undefined;
  let types: DuckDBType[] | undefined;
  for (const field of Object.keys(value)) {
    const index = (names ?? type.entryNames).indexOf(field);
    if (index < 0) {
      sameNameCheck(names ?? type.entryNames, field, `field '${[...path, field].join(".")}'`);
      const duckType = inferType(value[field], [...path, field].join("."));
      if (!duckType) continue;
      names ??= [...type.entryNames];
      types ??= [...type.entryTypes];
      names.push(field);
      types.push(duckType);
      changes.push({ path: [...path, field], duckType });
      continue;
    }
    const fieldType = (types ?? type.entryTypes)[index]!;
    const fieldValue = value[field];
    if (fieldType.typeId !== DuckDBTypeId.STRUCT || !isObject(fieldValue)) continue;
    const evolved = evolveStruct(fieldType, fieldValue, [...path, field], changes);
    if (evolved !== fieldType) {
      names ??= [...type.entryNames];
      types ??= [...type.entryTypes];
      types[index] = evolved;
    }
  }
  return names && types ? new DuckDBStructType(names, types) : type;
}

/** DuckDB, like Databricks, compares names without case: `Email` beside `email` cannot be added. */
function sameNameCheck(existing: readonly string[], name: string, what: string): void {
  const clash = existing.find((n) => n.toLowerCase() === name.toLowerCase());
  if (clash !== undefined) throw new AuditRowError(`${what} differs from the existing '${clash}' only in case`);
}

function isObject(value: unknown): value is Record<string, unknown> {
  return value !== null && typeof value === "object" && !Array.isArray(value);
}

/** The type a new column or field gets from its first value (see the module comment); undefined when there is nothing to infer. */
export function inferType(value: unknown, where: string): DuckDBType | undefined {
  if (value === null || value === undefined) return undefined;
  switch (typeof value) {
    case "string":
      return VARCHAR;
    case "boolean":
      return BOOLEAN;
    case "number":
      return Number.isSafeInteger(value) ? BIGINT : DOUBLE;
    case "object":
      break;
    default:
      throw new AuditRowError(`${where}: cannot store ${typeof value}`);
  }
  if (Array.isArray(value)) {
    const first: unknown = (value as unknown[]).find((item) => item !== null && item !== undefined);
    return new DuckDBListType(first === undefined ? VARCHAR : (inferType(first, `${where}[]`) ?? VARCHAR));
  }
  const fields = Object.keys(value);
  if (fields.length === 0) throw new AuditRowError(`${where}: an empty object has no type to infer; give it a field`);
  const types = fields.map((field, i) => {
    if (fields.slice(0, i).some((f) => f.toLowerCase() === field.toLowerCase())) {
      throw new AuditRowError(`${where}.${field}: differs from another field only in case`);
    }
    return inferType((value as Record<string, unknown>)[field], `${where}.${field}`) ?? VARCHAR;
  });
  return new DuckDBStructType(fields, types);
}

/**
 * Rows checked and converted for the table, all or none: first the schema grows with every
 * column and struct field the rows bring (so every row is converted against the same, final
 * schema, earlier rows' new columns NULL), then each row is converted (normalizeAuditRow).
 * Pure: the caller runs the changes' DDL before appending. A bad row throws AuditRowError
 * naming it (`positionOf`, 1-based).
 */
export function rowsForSchema<Row>(
  inputs: readonly unknown[],
  start: TableSchema,
  positionOf: (index: number) => string,
  convert: (input: unknown, schema: TableSchema) => Row,
): { schema: TableSchema; changes: SchemaChange[]; values: Row[] } {
  let schema = start;
  const changes: SchemaChange[] = [];
  const at = <T>(index: number, work: () => T): T => {
    try {
      return work();
    } catch (error) {
      if (error instanceof AuditRowError) throw new AuditRowError(`${positionOf(index + 1)}: ${error.message}`);
      throw error;
    }
  };
  inputs.forEach((input, index) => {
    if (input === null || typeof input !== "object" || Array.isArray(input)) return; // the conversion says what is wrong
    const evolved = at(index, () => schema.evolvedFor(input as Record<string, unknown>));
    schema = evolved.schema;
    changes.push(...evolved.changes);
  });
  const values = inputs.map((input, index) => at(index, () => convert(input, schema)));
  return { schema, changes, values };
}

/** A JSON value as a DuckDB value of the column's or field's type; throws naming `where` when it is not of that type. */
export function duckValueOf(value: unknown, type: DuckDBType, where: string): DuckDBValue {
  if (value === null || value === undefined) return null;
  const refuse = (expected: string): never => {
    throw new AuditRowError(`${where}: expected ${expected} or null (the column is ${type.toString()}), got ${describeValue(value)}`);
  };
  switch (type.typeId) {
    case DuckDBTypeId.VARCHAR:
      return typeof value === "string" ? value : refuse("a string");
    case DuckDBTypeId.BOOLEAN:
      return typeof value === "boolean" ? value : refuse("a boolean");
    case DuckDBTypeId.BIGINT:
      return typeof value === "number" && Number.isSafeInteger(value) ? BigInt(value) : refuse("an integer");
    case DuckDBTypeId.INTEGER:
      return typeof value === "number" && Number.isInteger(value) && Math.abs(value) <= 2147483647 ? value : refuse("an int");
    case DuckDBTypeId.DOUBLE:
      return typeof value === "number" ? value : refuse("a number");
    case DuckDBTypeId.LIST: {
      if (!Array.isArray(value)) return refuse("an array");
      return listValue(value.map((item, i) => duckValueOf(item, type.valueType, `${where}[${i}]`)));
    }
    case DuckDBTypeId.STRUCT: {
      if (!isObject(value)) return refuse("an object");
      for (const field of Object.keys(value)) {
        if (type.entryNames.includes(field) || value[field] === null || value[field] === undefined) continue;
        throw new AuditRowError(`${where}: unknown field '${field}' (expected ${type.entryNames.join(", ")})`);
      }
      const out: Record<string, DuckDBValue> = {};
      type.entryNames.forEach((field, i) => (out[field] = duckValueOf(value[field], type.entryTypes[i]!, `${where}.${field}`)));
      return structValue(out);
    }
    case DuckDBTypeId.MAP: {
      if (!isObject(value)) return refuse("an object");
      return mapValue(Object.entries(value).map(([key, item]) => ({ key, value: duckValueOf(item, type.valueType, `${where}.${key}`) })));
    }
    default:
      throw new AuditRowError(`${where}: the stand-in cannot load values of type ${type.toString()}`);
  }
}

function describeValue(v: unknown): string {
  if (Array.isArray(v)) return "an array";
  const text = typeof v === "object" ? "an object" : `${typeof v} ${JSON.stringify(v)}`;
  return text.length > 60 ? `${text.slice(0, 57)}...` : text;
}

/** The type as Databricks' DESCRIBE TABLE prints it. */
export function sparkTypeOf(type: DuckDBType): string {
  switch (type.typeId) {
    case DuckDBTypeId.VARCHAR:
      return "string";
    case DuckDBTypeId.BIGINT:
      return "bigint";
    case DuckDBTypeId.INTEGER:
      return "int";
    case DuckDBTypeId.DOUBLE:
      return "double";
    case DuckDBTypeId.BOOLEAN:
      return "boolean";
    case DuckDBTypeId.TIMESTAMP:
      return "timestamp";
    case DuckDBTypeId.DATE:
      return "date";
    case DuckDBTypeId.LIST:
      return `array<${sparkTypeOf(type.valueType)}>`;
    case DuckDBTypeId.MAP:
      return `map<${sparkTypeOf(type.keyType)},${sparkTypeOf(type.valueType)}>`;
    case DuckDBTypeId.STRUCT:
      return `struct<${type.entryNames.map((name, i) => `${name}:${sparkTypeOf(type.entryTypes[i]!)}`).join(",")}>`;
    default:
      return type.toString().toLowerCase();
  }
}

/** The DDL of a change: `ALTER TABLE t ADD COLUMN "col" T`, or `... ADD COLUMN "col"."field" T` for a struct field (DuckDB >= 1.3). */
export function alterStatement(table: string, change: SchemaChange): string {
  return `ALTER TABLE ${table} ADD COLUMN ${change.path.map(quoteIdent).join(".")} ${change.duckType.toString()}`;
}

function quoteIdent(name: string): string {
  return `"${name.replace(/"/g, '""')}"`;
}
