/**
 * Rows in a form that crosses a thread boundary cheaply. `postMessage` copies with V8's
 * structured clone, which spends most of its time rebuilding objects property by property
 * on the receiving thread. So a chunk travels as its column names once, one flat list of
 * values (row after row, nested structs and maps flattened into it) and a list of small
 * integers that says how the values nest. Dates, Maps, Buffers and primitives travel as
 * they are; a key named "__proto__" stays an ordinary key. Lossless for everything the
 * driver returns. Pure.
 */
export type EncodedRows =
  | { columns: string[]; count: number; values: unknown[]; shape: Int32Array }
  /** A chunk whose rows do not all have the same columns travels as it is. */
  | { columns: null; rows: Record<string, unknown>[] };

// Shape codes: a value as it is; an object of n entries (keys and values follow); a list of n items.
const VALUE = 0;
const objectOf = (n: number): number => n + 1;
const listOf = (n: number): number => -(n + 1);

export function encodeRows(rows: Record<string, unknown>[]): EncodedRows {
  const columns = rows.length > 0 ? Object.keys(rows[0]!) : [];
  const values: unknown[] = [];
  const shape: number[] = [];
  const encode = (value: unknown): void => {
    if (value !== null && typeof value === "object") {
      if (Array.isArray(value)) {
        shape.push(listOf(value.length));
        for (const item of value) encode(item);
        return;
      }
      if (isPlainObject(value)) {
        const keys = Object.keys(value);
        shape.push(objectOf(keys.length));
        for (const key of keys) {
          values.push(key);
          encode((value as Record<string, unknown>)[key]);
        }
        return;
      }
    }
    shape.push(VALUE);
    values.push(value); // primitives, Date, Map, Buffer, typed arrays: structured clone keeps them
  };
  for (const row of rows) {
    if (!hasColumns(row, columns)) return { columns: null, rows };
    for (const column of columns) encode(row[column]);
  }
  return { columns, count: rows.length, values, shape: Int32Array.from(shape) };
}

export function decodeRows(encoded: EncodedRows): Record<string, unknown>[] {
  if (encoded.columns === null) return encoded.rows;
  const { columns, count, values, shape } = encoded;
  let v = 0;
  let s = 0;
  const decode = (): unknown => {
    const code = shape[s++]!;
    if (code === VALUE) return values[v++];
    if (code > 0) {
      const out: Record<string, unknown> = {};
      for (let i = 0; i < code - 1; i++) setOwn(out, values[v++] as string, decode());
      return out;
    }
    const out: unknown[] = [];
    for (let i = 0; i < -code - 1; i++) out.push(decode());
    return out;
  };
  const rows = new Array<Record<string, unknown>>(count);
  for (let r = 0; r < count; r++) {
    const row: Record<string, unknown> = {};
    for (const column of columns) setOwn(row, column, decode());
    rows[r] = row;
  }
  return rows;
}

function setOwn(target: Record<string, unknown>, key: string, value: unknown): void {
  if (key === "__proto__") Object.defineProperty(target, key, { value, enumerable: true, writable: true, configurable: true });
  else target[key] = value;
}

function isPlainObject(value: object): boolean {
  const prototype = Object.getPrototypeOf(value) as unknown;
  return prototype === Object.prototype || prototype === null;
}

function hasColumns(row: Record<string, unknown>, columns: readonly string[]): boolean {
  const keys = Object.keys(row);
  if (keys.length !== columns.length) return false;
  for (let i = 0; i < keys.length; i++) if (keys[i] !== columns[i]) return false;
  return true;
}
