/**
 * Caps on the values of a Log Analytics record, so every record is valid by construction: a
 * field over 64 KB is truncated by the service (a truncated dynamic column is no longer JSON)
 * and a record over 1 MB is refused. Sizes are the UTF-8 bytes of a value's JSON, escapes
 * included: that is what the record weighs in a call, and a control character escapes to six
 * bytes. The blob archive keeps every value whole; a capped value says so (the marker, and the
 * annotation keys of a dynamic value). Pure.
 */

export const TRUNCATION_MARKER = "…[truncated by dbx-audit; the full value is in the blob archive]";
/** Added to a dynamic value (RequestParams, UserIdentity, IdentityMetadata) when any of its values was shortened: their keys, comma-separated. */
export const TRUNCATED_KEYS_PARAM = "dbxAuditTruncatedKeys";
/** Added to a dynamic value when keys had to be left out: their number (as text) ... */
export const OMITTED_KEY_COUNT_PARAM = "dbxAuditOmittedKeyCount";
/** ... and as many of their names as fit in a bounded list, comma-separated. */
export const OMITTED_KEYS_PARAM = "dbxAuditOmittedKeys";

const MARKER_BYTES = Buffer.byteLength(TRUNCATION_MARKER, "utf8");
/** A shortened value keeps at least this much of itself (JSON bytes, marker included) before keys are dropped instead. */
const MIN_SHORTENED_BYTES = MARKER_BYTES + 2 + 64;
/** At most this share of a dynamic value's cap goes to each list of key names. */
const KEY_LIST_SHARE = 1 / 16;
const MAX_KEY_LIST_BYTES = 1024;

/** The UTF-8 size of JSON.stringify(value). */
export function jsonBytes(value: unknown): number {
  return Buffer.byteLength(JSON.stringify(value) ?? "", "utf8");
}

/** The UTF-8 size of a string's JSON (quotes and escapes included). */
export function stringJsonBytes(value: string): number {
  return PLAIN_ASCII.test(value) ? value.length + 2 : jsonBytes(value);
}

/** Characters JSON.stringify writes as they are, one byte each in UTF-8. */
const PLAIN_ASCII = /^[\x20\x21\x23-\x5b\x5d-\x7e]*$/;

/** The string, or its start plus the marker, so that its JSON takes at most `limit` bytes. */
export function capText(value: string, limit: number): string;
export function capText(value: string | null, limit: number): string | null;
export function capText(value: string | null, limit: number): string | null {
  // A UTF-16 unit takes at most 6 bytes of JSON (\uXXXX): short strings need no measuring.
  if (value === null || value.length * 6 + 2 <= limit) return value;
  if (stringJsonBytes(value) <= limit) return value;
  return truncateJson(value, limit - 2 - MARKER_BYTES) + TRUNCATION_MARKER;
}

/**
 * The longest start of `value` whose JSON, without its quotes, takes at most `maxBytes` bytes
 * (never splitting a surrogate pair): one pass over the kept characters, as JSON.stringify
 * escapes them.
 */
export function truncateJson(value: string, maxBytes: number): string {
  let used = 0;
  let i = 0;
  for (; i < value.length; i++) {
    const c = value.charCodeAt(i);
    let cost: number;
    let units = 1;
    if (c >= 0x20 && c < 0x7f) cost = c === 0x22 || c === 0x5c ? 2 : 1;
    else if (c < 0x20) cost = c === 8 || c === 9 || c === 10 || c === 12 || c === 13 ? 2 : 6;
    else if (c < 0x800) cost = c === 0x7f ? 1 : 2;
    else if (c >= 0xd800 && c <= 0xdbff) {
      const next = value.charCodeAt(i + 1);
      if (next >= 0xdc00 && next <= 0xdfff) {
        cost = 4;
        units = 2;
      } else cost = 6; // a lone surrogate is written \udXXX
    } else if (c >= 0xdc00 && c <= 0xdfff) cost = 6;
    else cost = 3;
    if (used + cost > maxBytes) break;
    used += cost;
    i += units - 1;
  }
  return value.slice(0, i);
}

/**
 * A dynamic value (a JSON object) whose JSON takes at most `limit` bytes: the value itself
 * when it fits (the common case, checked without serializing when its values are short).
 * Otherwise, predictably: the longest values are shortened to one common length, the least
 * that makes the rest fit (strings keep their start and get the marker; a nested object or
 * list becomes the start of its JSON text); when even that is not enough (many small values),
 * values are shortened to a floor and keys are kept in their order while they fit, the others
 * left out. The value then names what changed: TRUNCATED_KEYS_PARAM lists the shortened keys,
 * OMITTED_KEY_COUNT_PARAM and OMITTED_KEYS_PARAM count and list the left-out ones; each list
 * is bounded (it ends in "…+N" when longer).
 */
export function capDynamic(value: Record<string, unknown> | null, limit: number): Record<string, unknown> | null {
  if (value === null || typeof value !== "object" || maxJsonBytes(value) <= limit) return value;
  // Each value is measured once, here; what the shortening needs comes from these sizes.
  const entries: Entry[] = [];
  let total = 1;
  for (const key of Object.keys(value)) {
    const v = value[key];
    if (v === undefined) continue; // JSON leaves it out
    const shortenable = typeof v === "string" || (v !== null && typeof v === "object");
    const entry: Entry = { key, keyBytes: stringJsonBytes(key) + 2, value: v, valueBytes: jsonBytes(v), shortenable, shortened: false };
    entries.push(entry);
    total += entry.keyBytes + entry.valueBytes;
  }
  return total <= limit ? value : shrink(entries, limit);
}

/** An upper bound of an object's JSON size, serializing only nested objects. */
function maxJsonBytes(value: Record<string, unknown>): number {
  let bytes = 2;
  for (const key in value) {
    const v = value[key];
    bytes += key.length * 6 + 4;
    if (typeof v === "string") bytes += v.length * 6 + 2;
    else if (v === null || v === undefined || typeof v === "boolean") bytes += 5;
    else if (typeof v === "number") bytes += 24;
    else bytes += jsonBytes(v);
  }
  return bytes;
}

interface Entry {
  key: string;
  /** `"key":` and the comma after the value. */
  keyBytes: number;
  value: unknown;
  valueBytes: number;
  shortenable: boolean;
  shortened: boolean;
}

function shrink(entries: Entry[], limit: number): Record<string, unknown> {
  const listBytes = Math.min(MAX_KEY_LIST_BYTES, Math.floor(limit * KEY_LIST_SHARE));
  // Room for the annotations: three keys, two bounded lists, a count.
  const reserved = 2 + 3 * 30 + 2 * listBytes + 16;
  const budget = limit - reserved;

  const length = Math.max(commonLength(entries, budget), MIN_SHORTENED_BYTES);
  for (const entry of entries) {
    if (!entry.shortenable || entry.valueBytes <= length) continue;
    const text = typeof entry.value === "string" ? entry.value : JSON.stringify(entry.value);
    const shortened = truncateJson(text, length - 2 - MARKER_BYTES) + TRUNCATION_MARKER;
    entry.value = shortened;
    entry.valueBytes = stringJsonBytes(shortened);
    entry.shortened = true;
  }

  const kept: Entry[] = [];
  const omitted: string[] = [];
  let used = 0;
  for (const entry of entries) {
    if (used + entry.keyBytes + entry.valueBytes <= budget) {
      kept.push(entry);
      used += entry.keyBytes + entry.valueBytes;
    } else omitted.push(entry.key);
  }

  // A null-prototype object: a key named "__proto__" stays an ordinary key.
  const out = Object.create(null) as Record<string, unknown>;
  for (const entry of kept) out[entry.key] = entry.value;
  const shortened = kept.filter((e) => e.shortened).map((e) => e.key);
  if (shortened.length > 0) out[TRUNCATED_KEYS_PARAM] = boundedKeyList(shortened, listBytes);
  if (omitted.length > 0) {
    out[OMITTED_KEY_COUNT_PARAM] = String(omitted.length);
    out[OMITTED_KEYS_PARAM] = boundedKeyList(omitted, listBytes);
  }
  return out;
}

/**
 * The largest value length L such that the entries fit in `budget` with every shortenable
 * value longer than L cut to L (water-filling over the sorted lengths); below 0 when even
 * cutting every value to nothing would not do.
 */
function commonLength(entries: readonly Entry[], budget: number): number {
  let fixed = 0;
  const lengths: number[] = [];
  for (const entry of entries) {
    fixed += entry.keyBytes;
    if (entry.shortenable) lengths.push(entry.valueBytes);
    else fixed += entry.valueBytes;
  }
  lengths.sort((a, b) => b - a);
  let rest = lengths.reduce((sum, n) => sum + n, 0);
  if (fixed + rest <= budget) return Number.POSITIVE_INFINITY;
  for (let k = 1; k <= lengths.length; k++) {
    rest -= lengths[k - 1]!;
    const length = Math.floor((budget - fixed - rest) / k);
    if (length >= (lengths[k] ?? 0)) return length;
  }
  return -1;
}

/** Keys joined with commas, as many as fit in `maxBytes` of JSON; "…+N" says how many more there are. */
function boundedKeyList(keys: readonly string[], maxBytes: number): string {
  const room = maxBytes - 2 - 16; // quotes, and the "…+N" suffix
  let text = "";
  let bytes = 0;
  let listed = 0;
  for (const key of keys) {
    const cost = stringJsonBytes(key) - 2 + (listed > 0 ? 1 : 0);
    if (bytes + cost > room) break;
    text += (listed > 0 ? "," : "") + key;
    bytes += cost;
    listed += 1;
  }
  return listed === keys.length ? text : `${text}${listed > 0 ? "," : ""}…+${keys.length - listed}`;
}
