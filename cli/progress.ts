import { SingleBar, Presets } from "cli-progress";

export interface Progress {
  update(positionUs: number, events: number): void;
  stop(): void;
}

/** A progress bar over a time window, on standard error, only when it is a terminal. */
export function progressBar(enabled: boolean, startUs: number, endUs: number): Progress {
  if (!enabled || !process.stderr.isTTY || endUs <= startUs) return { update: () => undefined, stop: () => undefined };
  const bar = new SingleBar(
    { stream: process.stderr, format: "exporting [{bar}] {percentage}% | {events} events | at {at}", hideCursor: true, clearOnComplete: false },
    Presets.shades_classic,
  );
  bar.start(1000, 0, { events: 0, at: "" });
  return {
    update(positionUs, events) {
      const done = Math.min(1000, Math.max(0, Math.round(((positionUs - startUs) / (endUs - startUs)) * 1000)));
      bar.update(done, { events, at: new Date(Math.floor(positionUs / 1000)).toISOString().slice(0, 19) + "Z" });
    },
    stop() {
      bar.stop();
    },
  };
}
