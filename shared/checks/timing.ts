/** Deadlines for the checks: each network step has its own timeout, and all of them share one budget. */

export type Outcome<T> = { kind: "done"; value: T } | { kind: "failed"; error: unknown } | { kind: "timeout" };

/**
 * Runs work with a deadline. On timeout the work is left to finish on its own (its late
 * result handed to `onLate`, e.g. to close a connection) and never throws unhandled.
 */
export async function timed<T>(work: () => Promise<T>, ms: number, onLate?: (value: T) => void): Promise<Outcome<T>> {
  let timer: NodeJS.Timeout | undefined;
  let timedOut = false;
  const running = Promise.resolve().then(work);
  const deadline = new Promise<Outcome<T>>((resolve) => {
    timer = setTimeout(
      () => {
        timedOut = true;
        resolve({ kind: "timeout" });
      },
      Math.max(0, ms),
    );
  });
  running.then(
    (value) => {
      if (timedOut) onLate?.(value);
    },
    () => undefined,
  );
  try {
    return await Promise.race([
      running.then(
        (value): Outcome<T> => ({ kind: "done", value }),
        (error: unknown): Outcome<T> => ({ kind: "failed", error }),
      ),
      deadline,
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/** The run's time budget, on the process's monotonic clock. */
export class Budget {
  private readonly started = performance.now();
  /** Kept back at the end for closing connections and answering. */
  private readonly reserveMs: number;

  constructor(private readonly totalMs: number) {
    this.reserveMs = Math.min(2_000, totalMs / 10);
  }

  elapsed(): number {
    return performance.now() - this.started;
  }

  leftMs(): number {
    return this.totalMs - this.elapsed();
  }

  /** Time for one step: its own cap, or what is left of the budget, whichever is less. */
  stepMs(capMs: number): number {
    return Math.max(0, Math.floor(Math.min(capMs, this.totalMs - this.reserveMs - this.elapsed())));
  }
}

export function seconds(ms: number): string {
  return `${Math.round(ms / 100) / 10} s`;
}
