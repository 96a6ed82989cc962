import { ConcurrentRunError, LockLostError, describeError } from "../errors";
import { StateConflictError, type ExportLog, type ExportStore } from "./ports";
import { initialState, type ExportState } from "./state";

interface QueuedSave {
  mutate: (state: ExportState) => void;
  lock: "extend" | "release";
  resolve: () => void;
  reject: (error: unknown) => void;
}

/**
 * The export state held under a lock. Every change is a conditional write (ETag) that also
 * extends the lock; changes asked for while a write is in flight go out together in the next
 * one. A write that comes back 412 is either this run's own earlier write that the storage SDK
 * retried after it had in fact succeeded (the state names its writer and write number), which
 * is taken as done, or another run's: then the lock is lost, `signal` aborts, every later
 * `ensureHeld()` throws, and the run must stop sending at once.
 */
export class LockedState {
  state!: ExportState;
  private etag: string | null = null;
  private writes = 0;
  private queued: QueuedSave[] = [];
  private writing = false;
  private lost: LockLostError | undefined;
  private heldUntilMs = 0;
  /** Set while a 412 is being looked into: nothing may be sent until it is known whose write it was. */
  private verifying: Promise<unknown> | undefined;
  private readonly aborter = new AbortController();
  private heartbeat: NodeJS.Timeout | undefined;

  constructor(
    private readonly store: ExportStore,
    private readonly runId: string,
    private readonly lockTtlMs: number,
    private readonly now: () => number,
    private readonly log: ExportLog,
  ) {}

  /** Aborted when the lock is lost. */
  get signal(): AbortSignal {
    return this.aborter.signal;
  }

  /** Claims the lock, or throws ConcurrentRunError when another live run holds it (this run then did nothing). */
  async acquire(): Promise<void> {
    const stored = await this.store.readState();
    const now = this.now();
    const base = stored?.state ?? initialState();
    if (base.lock && base.lock.expiresAtMs > now) {
      throw new ConcurrentRunError(
        `Another export run (${base.lock.runId}) holds the lock until ${new Date(base.lock.expiresAtMs).toISOString()}; this run did nothing. If no run is active, the lock expires by itself.`,
      );
    }
    if (base.lock)
      this.log.warn(
        `Taking over the export lock of run ${base.lock.runId}, which expired without releasing it (that run probably died); its unfinished batches, if any, are finished first.`,
      );
    this.writes += 1;
    this.state = {
      ...base,
      lock: { runId: this.runId, expiresAtMs: now + this.lockTtlMs },
      writer: { runId: this.runId, write: this.writes },
      lastRunAt: new Date(now).toISOString(),
    };
    try {
      this.etag = await this.store.writeState(this.state, stored?.etag ?? null);
      this.heldUntilMs = now + this.lockTtlMs;
    } catch (error) {
      if (error instanceof StateConflictError && !(await this.wasOwnWrite())) {
        throw new ConcurrentRunError("Another export run started at the same moment and won the state lock (HTTP 412/409); this run did nothing.");
      }
      if (!(error instanceof StateConflictError)) throw error;
      this.heldUntilMs = now + this.lockTtlMs;
    }
    this.heartbeat = setInterval(
      () =>
        void this.save(() => undefined).catch((error: unknown) => {
          if (!this.lost) this.log.warn(`The export lock's heartbeat could not write the state: ${describeError(error)}`);
        }),
      Math.max(1000, this.lockTtlMs / 3),
    );
    this.heartbeat.unref();
  }

  /** Throws LockLostError when the lock was lost, or when by this run's own clock it may have expired (another run may hold it now). */
  ensureHeld(): void {
    if (this.lost) throw this.lost;
    if (this.now() >= this.heldUntilMs) {
      this.loseLock(
        `This run could not extend its lock before it expired at ${new Date(this.heldUntilMs).toISOString()} (state writes failing or the process stalled); another run may hold it now.`,
      );
      throw this.lost!;
    }
  }

  /** ensureHeld(), after waiting for any 412 being looked into: call before anything leaves the process. */
  async confirmHeld(): Promise<void> {
    if (this.verifying) await this.verifying;
    this.ensureHeld();
  }

  get isLost(): boolean {
    return this.lost !== undefined;
  }

  /** Applies a change to the state and writes it; resolves when the write that carried it succeeded. */
  save(mutate: (state: ExportState) => void, lock: "extend" | "release" = "extend"): Promise<void> {
    if (this.lost) return Promise.reject(this.lost);
    return new Promise<void>((resolve, reject) => {
      this.queued.push({ mutate, lock, resolve, reject });
      if (!this.writing) void this.writeQueued();
    });
  }

  /** Stops the heartbeat and writes the run's outcome with the lock released (not when the lock was lost: the state is another run's then). */
  async release(outcome: (state: ExportState) => void): Promise<void> {
    clearInterval(this.heartbeat);
    if (this.lost || this.etag === null) return;
    await this.save(outcome, "release");
  }

  stop(): void {
    clearInterval(this.heartbeat);
  }

  private async writeQueued(): Promise<void> {
    this.writing = true;
    while (this.queued.length > 0) {
      const group = this.queued.splice(0);
      if (this.lost) {
        for (const { reject } of group) reject(this.lost);
        continue;
      }
      for (const { mutate } of group) mutate(this.state);
      const release = group.some((s) => s.lock === "release");
      const expiresAtMs = this.now() + this.lockTtlMs;
      this.writes += 1;
      this.state.lock = release ? null : { runId: this.runId, expiresAtMs };
      this.state.writer = { runId: this.runId, write: this.writes };
      try {
        try {
          this.etag = await this.store.writeState(this.state, this.etag);
        } catch (error) {
          if (!(error instanceof StateConflictError)) throw error;
          const verifying = this.wasOwnWrite();
          this.verifying = verifying;
          const own = await verifying.finally(() => (this.verifying = undefined));
          if (!own) throw error;
        }
        this.heldUntilMs = release ? 0 : expiresAtMs;
        for (const { resolve } of group) resolve();
      } catch (error) {
        if (error instanceof StateConflictError) {
          this.verifying = undefined;
          this.loseLock("The export state was changed by another run while this one held the lock (HTTP 412: the lock must have expired and been taken over).");
        }
        for (const { reject } of group) reject(this.lost ?? error);
      }
    }
    this.writing = false;
  }

  /** After a 412: true when the stored state is this run's own latest write (the SDK retried a write that had succeeded); adopts its ETag. */
  private async wasOwnWrite(): Promise<boolean> {
    const stored = await this.store.readState().catch(() => null);
    const writer = stored?.state.writer;
    if (!stored || writer?.runId !== this.runId || writer.write !== this.writes) return false;
    this.etag = stored.etag;
    return true;
  }

  private loseLock(reason: string): void {
    if (this.lost) return;
    this.lost = new LockLostError(
      `${reason} This run stopped at once and sent nothing more; it failed so that the next run (or the one that took over) finishes its work exactly once.`,
    );
    clearInterval(this.heartbeat);
    this.aborter.abort(this.lost);
  }
}
