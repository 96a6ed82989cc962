/**
 * The least CPU the sinks' required parts take per event, measured alone: what any export
 * through them must spend on top of reading, whatever the export itself does.
 *   - Log Analytics: the real Logs Ingestion client's `upload` of the events' records, with the
 *     export's level-1 gzip in its pipeline and a transport that answers 204 at once (no HTTPS).
 *     That is the client's serialization of every record to size the calls, its serialization
 *     of each call's body, and the gzip of that body.
 *   - The archive: the level-1 gzip of the same events' lines, ARCHIVE_BLOB_EVENTS to a blob.
 * The events are synthetic rows of the sandbox's kind, turned into lines and records by the
 * export's own code before the clock starts. Nothing of the export's own work is counted:
 * not building the records, not HTTPS, not its garbage.
 */
import { createHttpHeaders, type HttpClient } from "@azure/core-rest-pipeline";
import type { TokenCredential } from "@azure/identity";
import { LogsIngestionClient } from "@azure/monitor-ingestion";
import { eventFromRow } from "../shared/auditEvent";
import { prepareEvents } from "../shared/export/batching";
import { fastGzip } from "../shared/fastGzip";
import { useFastGzip } from "../shared/logsIngestion";
import { sentinelRecordFromLine } from "../shared/sentinelRecord";
import { syntheticRecords } from "../sandbox/sqlWarehouse/synthetic";

export interface SinksFloor {
  events: number;
  /** CPU seconds of the client's upload of the records (fewest of the repeats). */
  clientCpuSeconds: number;
  /** CPU seconds of the archive's gzip of the lines (fewest of the repeats). */
  archiveGzipCpuSeconds: number;
  /** Calls the client cut the records into. */
  calls: number;
}

const ARCHIVE_BLOB_EVENTS = 1_000;
const SEED = 20_261_205;

export async function measureSinksFloor(events: number, repeats: number): Promise<SinksFloor> {
  const rows = [...syntheticRecords(events, { seed: SEED })].map(({ eventTimeUs, row }) => ({ ...row, event_time_us: eventTimeUs }));
  const prepared = prepareEvents(rows, { redaction: [], ingestionOn: true }, eventFromRow);
  const records = prepared.map((event) => sentinelRecordFromLine(event.line) as unknown as Record<string, unknown>);
  const blobs: Buffer[] = [];
  for (let start = 0; start < prepared.length; start += ARCHIVE_BLOB_EVENTS)
    blobs.push(Buffer.concat(prepared.slice(start, start + ARCHIVE_BLOB_EVENTS).map((event) => event.line)));

  let calls = 0;
  const answerAtOnce: HttpClient = {
    sendRequest: (request) => {
      calls += 1;
      return Promise.resolve({ status: 204, headers: createHttpHeaders(), request });
    },
  };
  const credential: TokenCredential = {
    getToken: () => Promise.resolve({ token: "sinks-floor", expiresOnTimestamp: Date.now() + 3_600_000 }),
  };
  const client = new LogsIngestionClient("https://127.0.0.1", credential, { httpClient: answerAtOnce });
  if (!useFastGzip(client.pipeline)) throw new Error("the Logs Ingestion client's gzip policy was not found: the floor would not be the export's");

  let clientCpuSeconds = Infinity;
  let archiveGzipCpuSeconds = Infinity;
  for (let repeat = 0; repeat < repeats; repeat++) {
    calls = 0;
    clientCpuSeconds = Math.min(
      clientCpuSeconds,
      await cpuSecondsOf(() => client.upload("dcr-floor", "Custom-DatabricksAudit", records, { maxConcurrency: 1 })),
    );
    archiveGzipCpuSeconds = Math.min(archiveGzipCpuSeconds, await cpuSecondsOf(() => Promise.all(blobs.map((blob) => fastGzip(blob)))));
  }
  return { events: prepared.length, clientCpuSeconds, archiveGzipCpuSeconds, calls };
}

/** CPU of the whole process (every thread: gzip runs on libuv's pool) while `work` runs. */
async function cpuSecondsOf(work: () => Promise<unknown>): Promise<number> {
  const before = process.cpuUsage();
  await work();
  const used = process.cpuUsage(before);
  return (used.user + used.system) / 1e6;
}
