import { describe, expect, it } from "vitest";
import { decodeRows, encodeRows } from "../../shared/rowTransfer";

/** What the receiving thread sees: the encoded chunk after postMessage's structured clone. */
const overTheWire = (rows: Record<string, unknown>[]): Record<string, unknown>[] => decodeRows(structuredClone(encodeRows(rows)));

function driverRow(n: number): Record<string, unknown> {
  return {
    account_id: "acc",
    workspace_id: String(1000 + n),
    event_time: new Date(Date.UTC(2026, 11, 1, 0, 0, n)),
    event_time_us: 1_796_083_200_000_001 + n,
    user_identity: { email: `user${n}@example.com`, subject_name: null },
    request_params: { clusterId: `c-${n}`, empty: "", nothing: null },
    response: { status_code: 200, error_message: null, result: n % 2 ? null : "ok" },
    version: null,
    event_id: `e-${n}`,
  };
}

describe("row transfer between threads", () => {
  it("gives back the same rows, column order included", () => {
    const rows = Array.from({ length: 50 }, (_, n) => driverRow(n));
    const received = overTheWire(rows);
    expect(received).toEqual(rows);
    expect(received.map((row) => Object.keys(row))).toEqual(rows.map((row) => Object.keys(row)));
    expect(received[3]!.event_time).toBeInstanceOf(Date);
  });

  it("keeps nested structs, lists, Maps, bytes, empty objects and a __proto__ key as they were", () => {
    const params = JSON.parse('{"__proto__":"not a prototype","k":"v"}') as Record<string, unknown>;
    const rows = [
      {
        nested: { inner: { deep: [1, { a: "b" }, [], null] }, empty: {} },
        list: ["x", ["y", ["z"]]],
        map: new Map([["k", "v"]]),
        bytes: new Uint8Array([97, 98, 99]), // a Buffer arrives as a Uint8Array, as with any postMessage
        request_params: params,
        bigint: 12n,
      },
    ];
    const [received] = overTheWire(rows);
    expect(received).toEqual(rows[0]);
    const receivedParams = received!.request_params as Record<string, unknown>;
    expect(Object.getPrototypeOf(receivedParams)).toBe(Object.prototype);
    expect(Object.keys(receivedParams)).toEqual(["__proto__", "k"]);
    expect(receivedParams.__proto__).toBe("not a prototype");
  });

  it("sends rows whose columns differ as they are", () => {
    const rows = [{ a: 1, b: 2 }, { b: 2, a: 1 }, { a: 1 }];
    const encoded = encodeRows(rows);
    expect(encoded.columns).toBeNull();
    expect(overTheWire(rows)).toEqual(rows);
  });

  it("handles an empty chunk and rows without columns", () => {
    expect(overTheWire([])).toEqual([]);
    expect(overTheWire([{}, {}])).toEqual([{}, {}]);
  });
});
