import { endianness } from "node:os";
import * as arrow from "apache-arrow";
import {
  DuckDBTypeId,
  type DuckDBDataChunk,
  type DuckDBListVector,
  type DuckDBStructVector,
  type DuckDBType,
  type DuckDBValue,
  type DuckDBVector,
} from "@duckdb/node-api";

/**
 * DuckDB result chunks -> what a Databricks SQL warehouse sends through Thrift: the Hive column
 * schema (TTableSchema), an Arrow IPC schema and Arrow IPC record batches (ARROW_BASED_SET), or
 * Thrift columns (COLUMN_BASED_SET) for a client that cannot read Arrow.
 *
 * Columns are converted straight into Arrow buffers, column by column, a chunk range at a time:
 * no per-row objects, no JSON. Types follow what Databricks sends with native Arrow types:
 * STRING -> Utf8, TIMESTAMP -> Timestamp(us, UTC), DATE -> Date32, INT -> Int32, BIGINT -> Int64,
 * DECIMAL -> Decimal128, STRUCT -> Struct, MAP -> Map(entries<key, value>), ARRAY -> List.
 */

/** TCLIService TTypeId values (the Hive type ids in TTableSchema). */
export const HiveType = {
  BOOLEAN: 0,
  TINYINT: 1,
  SMALLINT: 2,
  INT: 3,
  BIGINT: 4,
  FLOAT: 5,
  DOUBLE: 6,
  STRING: 7,
  TIMESTAMP: 8,
  BINARY: 9,
  ARRAY: 10,
  MAP: 11,
  STRUCT: 12,
  DECIMAL: 15,
  NULL: 16,
  DATE: 17,
  INTERVAL_DAY_TIME: 21,
} as const;

/** What the client asked for in ExecuteStatement's useArrowNativeTypes. */
export interface NativeTypes {
  timestampAsArrow: boolean;
  decimalAsArrow: boolean;
  complexTypesAsArrow: boolean;
}

export const ALL_NATIVE: NativeTypes = { timestampAsArrow: true, decimalAsArrow: true, complexTypesAsArrow: true };

export interface ResultColumn {
  name: string;
  type: DuckDBType;
}

/** A plain-object TColumnDesc (the generated Thrift classes accept plain objects). */
export interface HiveColumnDesc {
  columnName: string;
  position: number;
  comment: string;
  typeDesc: { types: { primitiveEntry: { type: number; typeQualifiers?: { qualifiers: Record<string, { i32Value: number }> } } }[] };
}

// ---------------------------------------------------------------------------------------------
// Growable buffers

class Validity {
  bits = new Uint8Array(64);
  length = 0;
  nullCount = 0;

  push(valid: boolean): void {
    const i = this.length++;
    if (i >> 3 >= this.bits.length) {
      const next = new Uint8Array(this.bits.length * 2);
      next.set(this.bits);
      this.bits = next;
    }
    if (valid) this.bits[i >> 3]! |= 1 << (i & 7);
    else this.nullCount++;
  }

  take(): { nullBitmap: Uint8Array | undefined; nullCount: number; length: number } {
    const out = { nullBitmap: this.nullCount > 0 ? this.bits.slice(0, (this.length + 7) >> 3) : undefined, nullCount: this.nullCount, length: this.length };
    this.bits = new Uint8Array(64);
    this.length = 0;
    this.nullCount = 0;
    return out;
  }
}

type TypedArray = Int8Array | Int16Array | Int32Array | BigInt64Array | Float32Array | Float64Array | Uint32Array;
type TypedArrayCtor<T extends TypedArray> = { new (length: number): T };

class Growable<T extends TypedArray> {
  data: T;
  length = 0;
  constructor(private readonly ctor: TypedArrayCtor<T>) {
    this.data = new ctor(256);
  }
  ensure(extra: number): void {
    if (this.length + extra <= this.data.length) return;
    let size = this.data.length * 2;
    while (size < this.length + extra) size *= 2;
    const next = new this.ctor(size);
    (next as unknown as { set(a: T): void }).set(this.data);
    this.data = next;
  }
  take(): T {
    const out = this.data.slice(0, this.length) as T;
    this.data = new this.ctor(256);
    this.length = 0;
    return out;
  }
}

// ---------------------------------------------------------------------------------------------
// Fast reads from DuckDB vectors
//
// The public vector API (getItem) allocates a value per item and, for every string longer than
// 12 bytes, makes one native call to copy it out: ~1.5 us per string, most of the cost of a
// result. The vectors' own buffers (validity words, fixed-width items, 16-byte string_t slots)
// are read directly instead, and the out-of-line bytes of a vector's strings are fetched in a
// few native calls, one per run of adjacent string bytes (DuckDB lays a vector's strings out one
// after another). Each run is exactly the union of touching string ranges, so nothing outside
// the strings is ever read. Anything not shaped as expected falls back to getItem.

// eslint-disable-next-line @typescript-eslint/no-require-imports
const duckBindings = require("@duckdb/node-bindings") as { get_data_from_pointer(buffer: ArrayBuffer, pointerOffset: number, byteCount: number): Uint8Array };
const LITTLE_ENDIAN = endianness() === "LE";
const POINTER = new DataView(new ArrayBuffer(8));
const TWO_32 = 4294967296;

type ValidFn = (index: number) => boolean;
const ALL_VALID: ValidFn = () => true;

/** A fast validity test for a vector, or undefined if its internals are not as expected. */
function rawValidity(vector: DuckDBVector): ValidFn | undefined {
  if (!LITTLE_ENDIAN) return undefined;
  const v = (vector as unknown as { validity?: { data?: unknown; offset?: unknown } }).validity;
  if (!v || typeof v.offset !== "number" || !("data" in v)) return undefined;
  if (v.data === null) return ALL_VALID;
  if (!(v.data instanceof BigUint64Array)) return undefined;
  const bytes = new Uint8Array(v.data.buffer, v.data.byteOffset, v.data.byteLength);
  const offset = v.offset;
  return (i) => {
    const bit = offset + i;
    return (bytes[bit >> 3]! & (1 << (bit & 7))) !== 0;
  };
}

/** The fixed-width items array of a vector, when it is a typed array of the expected kind. */
function rawItems<T extends TypedArray>(vector: DuckDBVector, kind: { new (...args: never[]): T }): T | undefined {
  const items = (vector as unknown as { items?: unknown }).items;
  return items instanceof kind ? items : undefined;
}

/** Sink for string bytes: `src[from, from + length)`. */
interface ByteSink {
  reserve(totalBytes: number): void;
  put(src: Uint8Array, from: number, length: number): void;
  nullValue(): void;
}

let pointerRuns: { start: number; end: number; bytes?: Uint8Array }[] = [];

/** Reads VARCHAR/BLOB items [start, end) of a string vector into `sink`; false if the vector is not a raw string vector. */
function readStrings(vector: DuckDBVector, start: number, end: number, sink: ByteSink): boolean {
  const dv = (vector as unknown as { dataView?: unknown }).dataView;
  const valid = rawValidity(vector);
  if (!(dv instanceof DataView) || !valid || !LITTLE_ENDIAN) return false;
  const n = end - start;
  const lengths = new Int32Array(n);
  const pointers = new Float64Array(n);
  const longs: number[] = [];
  let sorted = true;
  let previous = -1;
  let total = 0;
  for (let k = 0; k < n; k++) {
    const i = start + k;
    if (!valid(i)) {
      lengths[k] = -1;
      continue;
    }
    const slot = i * 16;
    const length = dv.getUint32(slot, true);
    lengths[k] = length;
    total += length;
    if (length > 12) {
      const p = dv.getUint32(slot + 8, true) + dv.getUint32(slot + 12, true) * TWO_32;
      pointers[k] = p;
      if (p < previous) sorted = false;
      previous = p;
      longs.push(k);
    }
  }
  if (!sorted) longs.sort((a, b) => pointers[a]! - pointers[b]!);
  // Runs of touching or overlapping byte ranges.
  const runOf = new Int32Array(n);
  pointerRuns = [];
  for (const k of longs) {
    const p = pointers[k]!;
    const e = p + lengths[k]!;
    const last = pointerRuns[pointerRuns.length - 1];
    if (last && p <= last.end) {
      if (e > last.end) last.end = e;
    } else {
      pointerRuns.push({ start: p, end: e });
    }
    runOf[k] = pointerRuns.length - 1;
  }
  for (const run of pointerRuns) {
    POINTER.setUint32(0, run.start % TWO_32, true);
    POINTER.setUint32(4, Math.floor(run.start / TWO_32), true);
    run.bytes = duckBindings.get_data_from_pointer(POINTER.buffer, 0, run.end - run.start);
  }
  const inline = new Uint8Array(dv.buffer, dv.byteOffset, dv.byteLength);
  sink.reserve(total);
  for (let k = 0; k < n; k++) {
    const length = lengths[k]!;
    if (length < 0) sink.nullValue();
    else if (length <= 12) sink.put(inline, (start + k) * 16 + 4, length);
    else {
      const run = pointerRuns[runOf[k]!]!;
      sink.put(run.bytes!, pointers[k]! - run.start, length);
    }
  }
  pointerRuns = [];
  return true;
}

// ---------------------------------------------------------------------------------------------
// Encoders: one per column (and per nested child)

interface Encoder {
  readonly arrowType: arrow.DataType;
  readonly hiveType: number;
  readonly qualifiers?: Record<string, { i32Value: number }>;
  /** Appends rows [start, end) of the vector. */
  append(vector: DuckDBVector, start: number, end: number): void;
  /** Appends one null (for children of a null parent, none needed: DuckDB keeps children aligned). */
  finish(): arrow.Data;
  /** Approximate bytes buffered. */
  bytes(): number;
}

class Utf8Encoder implements Encoder, ByteSink {
  readonly arrowType = new arrow.Utf8();
  private readonly validity = new Validity();
  private offsets = new Growable(Int32Array);
  private data = Buffer.allocUnsafe(1024);
  private used = 0;

  /** `toText` given: the column is not VARCHAR and is sent as text. */
  constructor(
    readonly hiveType: number = HiveType.STRING,
    private readonly toText?: (value: DuckDBValue) => string,
  ) {
    this.offsets.data[0] = 0;
    this.offsets.length = 1;
  }

  reserve(totalBytes: number): void {
    this.grow(totalBytes);
  }

  put(src: Uint8Array, from: number, length: number): void {
    const data = this.data;
    let at = this.used;
    if (length < 48) {
      for (let j = 0; j < length; j++) data[at++] = src[from + j]!;
    } else {
      data.set(src.subarray(from, from + length), at);
      at += length;
    }
    this.used = at;
    this.validity.push(true);
    this.offsets.data[this.offsets.length++] = at;
  }

  nullValue(): void {
    this.validity.push(false);
    this.offsets.data[this.offsets.length++] = this.used;
  }

  append(vector: DuckDBVector, start: number, end: number): void {
    this.offsets.ensure(end - start);
    if (!this.toText && vector.type.typeId === DuckDBTypeId.VARCHAR && readStrings(vector, start, end, this)) return;
    const toText = this.toText ?? defaultText;
    for (let i = start; i < end; i++) {
      const v = vector.getItem(i);
      if (v === null) {
        this.validity.push(false);
      } else {
        this.validity.push(true);
        this.write(typeof v === "string" ? v : toText(v));
      }
      this.offsets.data[this.offsets.length++] = this.used;
    }
  }

  private grow(extra: number): void {
    if (this.used + extra <= this.data.length) return;
    let size = this.data.length * 2;
    while (size < this.used + extra) size *= 2;
    const next = Buffer.allocUnsafe(size);
    this.data.copy(next, 0, 0, this.used);
    this.data = next;
  }

  private write(text: string): void {
    this.grow(text.length * 3);
    this.used += this.data.write(text, this.used, "utf8");
  }

  finish(): arrow.Data {
    const { nullBitmap, nullCount, length } = this.validity.take();
    const valueOffsets = this.offsets.take();
    const data = new Uint8Array(this.data.subarray(0, this.used));
    this.data = Buffer.allocUnsafe(1024);
    this.used = 0;
    this.offsets.data[0] = 0;
    this.offsets.length = 1;
    return arrow.makeData({ type: this.arrowType, length, nullCount, nullBitmap, valueOffsets, data });
  }

  bytes(): number {
    return this.used + this.offsets.length * 4;
  }
}

class BinaryEncoder implements Encoder {
  readonly arrowType = new arrow.Binary();
  readonly hiveType = HiveType.BINARY;
  private readonly validity = new Validity();
  private offsets = new Growable(Int32Array);
  private parts: Uint8Array[] = [];
  private used = 0;

  constructor() {
    this.offsets.data[0] = 0;
    this.offsets.length = 1;
  }

  append(vector: DuckDBVector, start: number, end: number): void {
    this.offsets.ensure(end - start);
    for (let i = start; i < end; i++) {
      const v = vector.getItem(i) as { bytes: Uint8Array } | null;
      this.validity.push(v !== null);
      if (v !== null) {
        this.parts.push(v.bytes.slice());
        this.used += v.bytes.length;
      }
      this.offsets.data[this.offsets.length++] = this.used;
    }
  }

  finish(): arrow.Data {
    const { nullBitmap, nullCount, length } = this.validity.take();
    const valueOffsets = this.offsets.take();
    const data = new Uint8Array(this.used);
    let at = 0;
    for (const p of this.parts) {
      data.set(p, at);
      at += p.length;
    }
    this.parts = [];
    this.used = 0;
    this.offsets.data[0] = 0;
    this.offsets.length = 1;
    return arrow.makeData({ type: this.arrowType, length, nullCount, nullBitmap, valueOffsets, data });
  }

  bytes(): number {
    return this.used;
  }
}

class BoolEncoder implements Encoder {
  readonly arrowType = new arrow.Bool();
  readonly hiveType = HiveType.BOOLEAN;
  private readonly validity = new Validity();
  private readonly values = new Validity();

  append(vector: DuckDBVector, start: number, end: number): void {
    for (let i = start; i < end; i++) {
      const v = vector.getItem(i);
      this.validity.push(v !== null);
      this.values.push(v === true);
    }
  }

  finish(): arrow.Data {
    const { nullBitmap, nullCount, length } = this.validity.take();
    const bits = this.values.take();
    const data = bits.nullBitmap ?? new Uint8Array((length + 7) >> 3).fill(0xff);
    return arrow.makeData({ type: this.arrowType, length, nullCount, nullBitmap, data });
  }

  bytes(): number {
    return this.validity.length / 4;
  }
}

/** Fixed-width values: each DuckDB value converted by `convert` into the typed array. */
class FixedEncoder<T extends TypedArray, V extends number | bigint> implements Encoder {
  private readonly validity = new Validity();
  private readonly values: Growable<T>;

  /** `sameLayout`: DuckDB vectors of these type ids hold items exactly as Arrow wants them (bulk copy). */
  constructor(
    readonly arrowType: arrow.DataType,
    readonly hiveType: number,
    private readonly ctor: TypedArrayCtor<T>,
    private readonly convert: (value: DuckDBValue) => V,
    private readonly zero: V,
    private readonly sameLayout: readonly DuckDBTypeId[] = [],
  ) {
    this.values = new Growable(ctor);
  }

  append(vector: DuckDBVector, start: number, end: number): void {
    this.values.ensure(end - start);
    if (this.sameLayout.includes(vector.type.typeId)) {
      const items = rawItems(vector, this.ctor as unknown as { new (...args: never[]): T });
      const valid = rawValidity(vector);
      if (items && valid) {
        (this.values.data as unknown as { set(a: T, at: number): void }).set(items.subarray(start, end) as T, this.values.length);
        this.values.length += end - start;
        for (let i = start; i < end; i++) this.validity.push(valid(i));
        return;
      }
    }
    const data = this.values.data as unknown as V[];
    let at = this.values.length;
    for (let i = start; i < end; i++) {
      const v = vector.getItem(i);
      if (v === null) {
        this.validity.push(false);
        data[at++] = this.zero;
      } else {
        this.validity.push(true);
        data[at++] = this.convert(v);
      }
    }
    this.values.length = at;
  }

  finish(): arrow.Data {
    const { nullBitmap, nullCount, length } = this.validity.take();
    const data = this.values.take();
    return arrow.makeData({ type: this.arrowType as arrow.Int, length, nullCount, nullBitmap, data: data });
  }

  bytes(): number {
    return this.values.length * this.values.data.BYTES_PER_ELEMENT;
  }
}

class Decimal128Encoder implements Encoder {
  readonly hiveType = HiveType.DECIMAL;
  readonly arrowType: arrow.Decimal;
  readonly qualifiers: Record<string, { i32Value: number }>;
  private readonly validity = new Validity();
  private readonly words = new Growable(Uint32Array);

  constructor(precision: number, scale: number) {
    this.arrowType = new arrow.Decimal(scale, precision, 128);
    this.qualifiers = { precision: { i32Value: precision }, scale: { i32Value: scale } };
  }

  append(vector: DuckDBVector, start: number, end: number): void {
    this.words.ensure((end - start) * 4);
    const w = this.words.data;
    for (let i = start; i < end; i++) {
      const v = vector.getItem(i) as { value: bigint } | null;
      this.validity.push(v !== null);
      let x = BigInt.asUintN(128, v === null ? 0n : v.value);
      for (let k = 0; k < 4; k++) {
        w[this.words.length++] = Number(x & 0xffffffffn);
        x >>= 32n;
      }
    }
  }

  finish(): arrow.Data {
    const { nullBitmap, nullCount, length } = this.validity.take();
    return arrow.makeData({ type: this.arrowType, length, nullCount, nullBitmap, data: this.words.take() });
  }

  bytes(): number {
    return this.words.length * 4;
  }
}

class StructEncoder implements Encoder {
  readonly hiveType = HiveType.STRUCT;
  readonly arrowType: arrow.Struct;
  private readonly validity = new Validity();

  constructor(
    names: readonly string[],
    private readonly children: Encoder[],
    nullable: boolean[] = names.map(() => true),
  ) {
    this.arrowType = new arrow.Struct(names.map((n, i) => new arrow.Field(n, children[i]!.arrowType, nullable[i])));
  }

  append(vector: DuckDBVector, start: number, end: number): void {
    const struct = vector as DuckDBStructVector;
    const valid = rawValidity(struct) ?? ((i: number) => struct.isItemValid(i));
    for (let i = start; i < end; i++) this.validity.push(valid(i));
    for (let c = 0; c < this.children.length; c++) this.children[c]!.append(struct.entryVectorAt(c), start, end);
  }

  finish(): arrow.Data {
    const { nullBitmap, nullCount, length } = this.validity.take();
    const children = this.children.map((c) => c.finish());
    return arrow.makeData({ type: this.arrowType, length, nullCount, nullBitmap, children });
  }

  bytes(): number {
    return this.children.reduce((s, c) => s + c.bytes(), this.validity.length / 8);
  }
}

/** LIST and MAP (a MAP is a list of struct<key, value>, in DuckDB and in Arrow alike). */
class ListEncoder implements Encoder {
  readonly hiveType: number;
  readonly arrowType: arrow.List | arrow.Map_;
  private readonly validity = new Validity();
  private readonly offsets = new Growable(Int32Array);
  private childLength = 0;

  constructor(
    private readonly child: Encoder,
    private readonly isMap: boolean,
  ) {
    this.hiveType = isMap ? HiveType.MAP : HiveType.ARRAY;
    this.arrowType = isMap
      ? new arrow.Map_(new arrow.Field("entries", child.arrowType as arrow.Struct<{ key: arrow.DataType; value: arrow.DataType }>, false), false)
      : new arrow.List(new arrow.Field("element", child.arrowType, true));
    this.offsets.data[0] = 0;
    this.offsets.length = 1;
  }

  append(vector: DuckDBVector, start: number, end: number): void {
    const list: DuckDBListVector = this.isMap ? (vector as unknown as { listVector: DuckDBListVector }).listVector : (vector as DuckDBListVector);
    const childVector = list.childVector;
    const isValid = rawValidity(list) ?? ((i: number) => list.getEntryLength(i) > 0 || list.getItemVector(i) !== null);
    this.offsets.ensure(end - start);
    // Child ranges of consecutive rows are usually adjacent: append them as one range.
    let pendingStart = -1;
    let pendingEnd = -1;
    for (let i = start; i < end; i++) {
      const length = list.getEntryLength(i);
      const valid = isValid(i);
      this.validity.push(valid);
      if (valid && length > 0) {
        const offset = list.getEntryOffset(i);
        if (offset !== pendingEnd) {
          if (pendingEnd > pendingStart) this.child.append(childVector, pendingStart, pendingEnd);
          pendingStart = offset;
        }
        pendingEnd = offset + length;
        this.childLength += length;
      }
      this.offsets.data[this.offsets.length++] = this.childLength;
    }
    if (pendingEnd > pendingStart) this.child.append(childVector, pendingStart, pendingEnd);
  }

  finish(): arrow.Data {
    const { nullBitmap, nullCount, length } = this.validity.take();
    const valueOffsets = this.offsets.take();
    this.offsets.data[0] = 0;
    this.offsets.length = 1;
    this.childLength = 0;
    const child = this.child.finish();
    return arrow.makeData({ type: this.arrowType as arrow.List, length, nullCount, nullBitmap, valueOffsets, child });
  }

  bytes(): number {
    return this.child.bytes() + this.offsets.length * 4;
  }
}

// ---------------------------------------------------------------------------------------------
// Value formatting (for columns sent as strings)

const MICROS_PER_DAY = 86_400_000_000n;

/** Spark's string form of a timestamp: `2024-05-01 12:00:00.123456` (fraction trimmed). */
export function sparkTimestampText(micros: bigint): string {
  let days = micros / MICROS_PER_DAY;
  let rest = micros % MICROS_PER_DAY;
  if (rest < 0n) {
    rest += MICROS_PER_DAY;
    days -= 1n;
  }
  const date = new Date(Number(days) * 86_400_000).toISOString().slice(0, 10);
  const secs = Number(rest / 1_000_000n);
  const frac = Number(rest % 1_000_000n);
  const hh = String(Math.floor(secs / 3600)).padStart(2, "0");
  const mm = String(Math.floor((secs % 3600) / 60)).padStart(2, "0");
  const ss = String(secs % 60).padStart(2, "0");
  const fraction = frac === 0 ? "" : `.${String(frac).padStart(6, "0").replace(/0+$/, "")}`;
  return `${date} ${hh}:${mm}:${ss}${fraction}`;
}

function timestampMicros(value: DuckDBValue): bigint {
  const v = value as { micros?: bigint; millis?: bigint; seconds?: bigint; nanos?: bigint };
  if (v.micros !== undefined) return v.micros;
  if (v.millis !== undefined) return v.millis * 1000n;
  if (v.seconds !== undefined) return v.seconds * 1_000_000n;
  if (v.nanos !== undefined) return v.nanos / 1000n;
  throw new Error(`not a timestamp value: ${String(value)}`);
}

/** A JSON-ready form of any DuckDB value (for complex types sent as JSON strings). */
export function jsonValue(value: DuckDBValue, type: DuckDBType): unknown {
  if (value === null) return null;
  switch (type.typeId) {
    case DuckDBTypeId.STRUCT: {
      const st = type;
      const entries = (value as { entries: Record<string, DuckDBValue> }).entries;
      const out: Record<string, unknown> = {};
      st.entryNames.forEach((name, i) => (out[name] = jsonValue(entries[name] ?? null, st.entryTypes[i]!)));
      return out;
    }
    case DuckDBTypeId.MAP: {
      const mt = type;
      const out: Record<string, unknown> = {};
      for (const e of (value as { entries: { key: DuckDBValue; value: DuckDBValue }[] }).entries) {
        out[String(jsonValue(e.key, mt.keyType))] = jsonValue(e.value, mt.valueType);
      }
      return out;
    }
    case DuckDBTypeId.LIST:
    case DuckDBTypeId.ARRAY: {
      const vt = (type as unknown as { valueType: DuckDBType }).valueType;
      return (value as { items: readonly DuckDBValue[] }).items.map((item) => jsonValue(item, vt));
    }
    case DuckDBTypeId.TIMESTAMP:
    case DuckDBTypeId.TIMESTAMP_TZ:
    case DuckDBTypeId.TIMESTAMP_S:
    case DuckDBTypeId.TIMESTAMP_MS:
    case DuckDBTypeId.TIMESTAMP_NS:
      return sparkTimestampText(timestampMicros(value));
    case DuckDBTypeId.DATE:
      return new Date((value as { days: number }).days * 86_400_000).toISOString().slice(0, 10);
    case DuckDBTypeId.DECIMAL:
      return Number(String(value));
    default:
      if (typeof value === "bigint") return Number.isSafeInteger(Number(value)) ? Number(value) : value.toString();
      if (typeof value === "number" || typeof value === "boolean" || typeof value === "string") return value;
      return String(value);
  }
}

function defaultText(value: DuckDBValue): string {
  // VARCHAR values are strings already; everything else (UUID, ENUM, TIME, ...) by its text form.
  return typeof value === "string" ? value : String(value);
}

// ---------------------------------------------------------------------------------------------
// Type mapping

function int64Of(value: DuckDBValue): bigint {
  return typeof value === "bigint" ? BigInt.asIntN(64, value) : BigInt(value as number);
}

function encoderFor(type: DuckDBType, native: NativeTypes): Encoder {
  switch (type.typeId) {
    case DuckDBTypeId.BOOLEAN:
      return new BoolEncoder();
    case DuckDBTypeId.TINYINT:
      return new FixedEncoder(new arrow.Int8(), HiveType.TINYINT, Int8Array, (v) => v as number, 0, [DuckDBTypeId.TINYINT]);
    case DuckDBTypeId.SMALLINT:
    case DuckDBTypeId.UTINYINT:
      return new FixedEncoder(new arrow.Int16(), HiveType.SMALLINT, Int16Array, (v) => v as number, 0, [DuckDBTypeId.SMALLINT]);
    case DuckDBTypeId.INTEGER:
    case DuckDBTypeId.USMALLINT:
      return new FixedEncoder(new arrow.Int32(), HiveType.INT, Int32Array, (v) => v as number, 0, [DuckDBTypeId.INTEGER]);
    case DuckDBTypeId.BIGINT:
    case DuckDBTypeId.UINTEGER:
    case DuckDBTypeId.UBIGINT:
    case DuckDBTypeId.HUGEINT:
    case DuckDBTypeId.UHUGEINT:
      // Spark has no wider integer than BIGINT (DuckDB's sum(BIGINT) is a HUGEINT).
      return new FixedEncoder(new arrow.Int64(), HiveType.BIGINT, BigInt64Array, int64Of, 0n, [DuckDBTypeId.BIGINT]);
    case DuckDBTypeId.FLOAT:
      return new FixedEncoder(new arrow.Float32(), HiveType.FLOAT, Float32Array, (v) => v as number, 0, [DuckDBTypeId.FLOAT]);
    case DuckDBTypeId.DOUBLE:
      return new FixedEncoder(new arrow.Float64(), HiveType.DOUBLE, Float64Array, (v) => v as number, 0, [DuckDBTypeId.DOUBLE]);
    case DuckDBTypeId.DECIMAL: {
      const d = type;
      if (!native.decimalAsArrow) return new Utf8Encoder(HiveType.DECIMAL);
      return new Decimal128Encoder(d.width, d.scale);
    }
    case DuckDBTypeId.DATE:
      return new FixedEncoder(new arrow.DateDay(), HiveType.DATE, Int32Array, (v) => (v as { days: number }).days, 0, [DuckDBTypeId.DATE]);
    case DuckDBTypeId.TIMESTAMP:
    case DuckDBTypeId.TIMESTAMP_TZ:
    case DuckDBTypeId.TIMESTAMP_S:
    case DuckDBTypeId.TIMESTAMP_MS:
    case DuckDBTypeId.TIMESTAMP_NS:
      if (!native.timestampAsArrow) return new Utf8Encoder(HiveType.TIMESTAMP, (v) => sparkTimestampText(timestampMicros(v)));
      return new FixedEncoder(new arrow.TimestampMicrosecond("Etc/UTC"), HiveType.TIMESTAMP, BigInt64Array, timestampMicros, 0n, [
        DuckDBTypeId.TIMESTAMP,
        DuckDBTypeId.TIMESTAMP_TZ,
      ]);
    case DuckDBTypeId.BLOB:
      return new BinaryEncoder();
    case DuckDBTypeId.STRUCT: {
      if (!native.complexTypesAsArrow) return new Utf8Encoder(HiveType.STRUCT, (v) => JSON.stringify(jsonValue(v, type)));
      const st = type;
      return new StructEncoder(
        st.entryNames,
        st.entryTypes.map((t) => encoderFor(t, native)),
      );
    }
    case DuckDBTypeId.MAP: {
      if (!native.complexTypesAsArrow) return new Utf8Encoder(HiveType.MAP, (v) => JSON.stringify(jsonValue(v, type)));
      const mt = type;
      const entries = new StructEncoder(["key", "value"], [encoderFor(mt.keyType, native), encoderFor(mt.valueType, native)], [false, true]);
      return new ListEncoder(entries, true);
    }
    case DuckDBTypeId.LIST: {
      if (!native.complexTypesAsArrow) return new Utf8Encoder(HiveType.ARRAY, (v) => JSON.stringify(jsonValue(v, type)));
      return new ListEncoder(encoderFor((type as unknown as { valueType: DuckDBType }).valueType, native), false);
    }
    case DuckDBTypeId.ARRAY:
      return new Utf8Encoder(HiveType.ARRAY, (v) => JSON.stringify(jsonValue(v, type)));
    case DuckDBTypeId.INTERVAL:
      return new Utf8Encoder(HiveType.INTERVAL_DAY_TIME);
    default:
      // VARCHAR, UUID, ENUM, TIME, BIT, ...: their text form.
      return new Utf8Encoder(HiveType.STRING);
  }
}

// ---------------------------------------------------------------------------------------------
// The result encoder

/** Encodes one statement's result: schema once, then a record batch per FetchResults. */
export class ArrowResultEncoder {
  private readonly encoders: Encoder[];
  private readonly schema: arrow.Schema;
  private readonly schemaBytes: Buffer;
  private rows = 0;

  constructor(
    readonly columns: readonly ResultColumn[],
    native: NativeTypes = ALL_NATIVE,
  ) {
    this.encoders = columns.map((c) => encoderFor(c.type, native));
    this.schema = new arrow.Schema(columns.map((c, i) => new arrow.Field(c.name, this.encoders[i]!.arrowType, true)));
    const writer = new arrow.RecordBatchStreamWriter();
    writer.reset(undefined, this.schema);
    this.schemaBytes = Buffer.from(writer.toUint8Array(true));
  }

  /** TTableSchema.columns for GetResultSetMetadata. */
  hiveColumns(): HiveColumnDesc[] {
    return this.columns.map((c, i) => {
      const e = this.encoders[i]!;
      const entry: HiveColumnDesc["typeDesc"]["types"][number]["primitiveEntry"] = { type: e.hiveType };
      if (e.qualifiers) entry.typeQualifiers = { qualifiers: e.qualifiers };
      return { columnName: c.name, position: i + 1, comment: "", typeDesc: { types: [{ primitiveEntry: entry }] } };
    });
  }

  /** The Arrow IPC schema message (TGetResultSetMetadataResp.arrowSchema). */
  arrowSchema(): Buffer {
    return this.schemaBytes;
  }

  /** Buffers rows [start, end) of a DuckDB chunk (vectors as returned by `vectorsOf`). */
  append(vectors: readonly DuckDBVector[], start: number, end: number): void {
    for (let c = 0; c < this.encoders.length; c++) this.encoders[c]!.append(vectors[c]!, start, end);
    this.rows += end - start;
  }

  bufferedRows(): number {
    return this.rows;
  }

  bufferedBytes(): number {
    return this.encoders.reduce((s, e) => s + e.bytes(), 0);
  }

  /** The buffered rows as one Arrow IPC record batch message (without the schema), and resets. */
  takeBatch(): { batch: Buffer; rowCount: number } {
    const rowCount = this.rows;
    const children = this.encoders.map((e) => e.finish());
    this.rows = 0;
    const data = arrow.makeData({ type: new arrow.Struct(this.schema.fields), length: rowCount, nullCount: 0, children });
    const recordBatch = new arrow.RecordBatch(this.schema, data);
    const bytes = arrow.RecordBatchStreamWriter.writeAll([recordBatch]).toUint8Array(true);
    const prefix = this.schemaBytes.length;
    const eos = hasEndOfStream(bytes) ? 8 : 0;
    return { batch: Buffer.from(bytes.buffer, bytes.byteOffset + prefix, bytes.length - prefix - eos), rowCount };
  }
}

function hasEndOfStream(bytes: Uint8Array): boolean {
  const n = bytes.length;
  return (
    n >= 8 &&
    bytes[n - 8] === 0xff &&
    bytes[n - 7] === 0xff &&
    bytes[n - 6] === 0xff &&
    bytes[n - 5] === 0xff &&
    bytes[n - 4] === 0 &&
    bytes[n - 3] === 0 &&
    bytes[n - 2] === 0 &&
    bytes[n - 1] === 0
  );
}

export function vectorsOf(chunk: DuckDBDataChunk): DuckDBVector[] {
  const out: DuckDBVector[] = [];
  for (let c = 0; c < chunk.columnCount; c++) out.push(chunk.getColumnVector(c));
  return out;
}

// ---------------------------------------------------------------------------------------------
// Column-based results (a client with canReadArrowResult = false)

/** A plain-object TColumn. */
export type ThriftColumn =
  | { boolVal: { values: boolean[]; nulls: Buffer } }
  | { byteVal: { values: number[]; nulls: Buffer } }
  | { i16Val: { values: number[]; nulls: Buffer } }
  | { i32Val: { values: number[]; nulls: Buffer } }
  | { i64Val: { values: number[]; nulls: Buffer } }
  | { doubleVal: { values: number[]; nulls: Buffer } }
  | { stringVal: { values: string[]; nulls: Buffer } };

type ColumnKind = "bool" | "byte" | "i16" | "i32" | "i64" | "double" | "string";

function columnKind(type: DuckDBType): ColumnKind {
  switch (type.typeId) {
    case DuckDBTypeId.BOOLEAN:
      return "bool";
    case DuckDBTypeId.TINYINT:
      return "byte";
    case DuckDBTypeId.SMALLINT:
    case DuckDBTypeId.UTINYINT:
      return "i16";
    case DuckDBTypeId.INTEGER:
    case DuckDBTypeId.USMALLINT:
      return "i32";
    case DuckDBTypeId.BIGINT:
    case DuckDBTypeId.UINTEGER:
    case DuckDBTypeId.UBIGINT:
    case DuckDBTypeId.HUGEINT:
    case DuckDBTypeId.UHUGEINT:
      return "i64";
    case DuckDBTypeId.FLOAT:
    case DuckDBTypeId.DOUBLE:
      return "double";
    default:
      return "string";
  }
}

/** Buffers rows as Thrift columns (every non-numeric type as its Spark string form; complex types as JSON). */
export class ColumnResultEncoder {
  private values: unknown[][];
  private nulls: Validity[];
  private readonly kinds: ColumnKind[];

  constructor(readonly columns: readonly ResultColumn[]) {
    this.kinds = columns.map((c) => columnKind(c.type));
    this.values = columns.map(() => []);
    this.nulls = columns.map(() => new Validity());
  }

  append(vectors: readonly DuckDBVector[], start: number, end: number): void {
    this.columns.forEach((col, c) => {
      const vector = vectors[c]!;
      const kind = this.kinds[c]!;
      const out = this.values[c]!;
      const nulls = this.nulls[c]!;
      for (let i = start; i < end; i++) {
        const v = vector.getItem(i);
        nulls.push(v === null); // a set bit means null in TColumn
        if (kind === "string") {
          if (v === null) out.push("");
          else if (typeof v === "string") out.push(v);
          else {
            const j = jsonValue(v, col.type);
            out.push(typeof j === "string" ? j : JSON.stringify(j));
          }
        } else if (kind === "bool") out.push(v === true);
        else out.push(v === null ? 0 : Number(v));
      }
    });
  }

  take(): ThriftColumn[] {
    const out = this.columns.map((_, c): ThriftColumn => {
      const bits = this.nulls[c]!;
      const nulls = Buffer.from(bits.bits.slice(0, (bits.length + 7) >> 3));
      const values = this.values[c]!;
      switch (this.kinds[c]!) {
        case "bool":
          return { boolVal: { values: values as boolean[], nulls } };
        case "byte":
          return { byteVal: { values: values as number[], nulls } };
        case "i16":
          return { i16Val: { values: values as number[], nulls } };
        case "i32":
          return { i32Val: { values: values as number[], nulls } };
        case "i64":
          return { i64Val: { values: values as number[], nulls } };
        case "double":
          return { doubleVal: { values: values as number[], nulls } };
        default:
          return { stringVal: { values: values as string[], nulls } };
      }
    });
    this.values = this.columns.map(() => []);
    this.nulls = this.columns.map(() => new Validity());
    return out;
  }

  /** The Hive schema for column-based results: complex types and timestamps travel as strings but keep their type ids. */
  hiveColumns(): HiveColumnDesc[] {
    const strings = new ArrowResultEncoder(this.columns, { timestampAsArrow: false, decimalAsArrow: false, complexTypesAsArrow: false });
    return strings.hiveColumns();
  }
}
