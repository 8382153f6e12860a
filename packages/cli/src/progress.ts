/**
 * A one-line progress bar on a terminal: bar, percentage, events, rate and ETA, redrawn at
 * most every `intervalMs`. On anything but a TTY it prints nothing at all.
 */

export interface ProgressStream {
  readonly isTTY?: boolean;
  readonly columns?: number;
  write(text: string): unknown;
}

export interface ProgressState {
  readonly label: string;
  /** Done so far in [0, 1]; undefined when the total is unknown. */
  readonly fraction: number | undefined;
  /** Events handled so far. */
  readonly events: number;
  readonly elapsedMs: number;
}

const BAR_WIDTH = 24;
export const DEFAULT_PROGRESS_INTERVAL_MS = 100;

/** The text of one progress line (no control characters). */
export function renderProgress(state: ProgressState): string {
  const parts = [state.label];
  const fraction =
    state.fraction === undefined ? undefined : Math.min(1, Math.max(0, state.fraction));
  if (fraction !== undefined) {
    const filled = Math.round(fraction * BAR_WIDTH);
    parts.push(`[${"#".repeat(filled)}${"-".repeat(BAR_WIDTH - filled)}]`);
    parts.push(
      `${Math.floor(fraction * 100)
        .toString()
        .padStart(3)}%`,
    );
  }
  parts.push(`${state.events.toLocaleString("en-US")} events`);
  const seconds = state.elapsedMs / 1000;
  if (seconds > 0) parts.push(`${Math.round(state.events / seconds).toLocaleString("en-US")}/s`);
  if (fraction !== undefined && fraction > 0 && fraction < 1 && seconds > 0) {
    parts.push(`ETA ${formatDuration((seconds * (1 - fraction)) / fraction)}`);
  }
  return parts.join("  ");
}

/** 75 -> "1:15", 3725 -> "1:02:05". */
export function formatDuration(seconds: number): string {
  const total = Math.max(0, Math.round(seconds));
  const h = Math.floor(total / 3600);
  const m = Math.floor((total % 3600) / 60);
  const s = total % 60;
  const ss = s.toString().padStart(2, "0");
  return h > 0 ? `${h}:${m.toString().padStart(2, "0")}:${ss}` : `${m}:${ss}`;
}

export class Progress {
  readonly #stream: ProgressStream;
  readonly #label: string;
  readonly #now: () => number;
  readonly #intervalMs: number;
  readonly #enabled: boolean;
  readonly #start: number;
  #lastDraw = Number.NEGATIVE_INFINITY;
  #fraction: number | undefined;
  #events = 0;
  #drawn = false;

  constructor(
    stream: ProgressStream,
    label: string,
    options: { now?: () => number; intervalMs?: number } = {},
  ) {
    this.#stream = stream;
    this.#label = label;
    this.#now = options.now ?? Date.now;
    this.#intervalMs = options.intervalMs ?? DEFAULT_PROGRESS_INTERVAL_MS;
    this.#enabled = stream.isTTY === true;
    this.#start = this.#now();
  }

  get enabled(): boolean {
    return this.#enabled;
  }

  update(fraction: number | undefined, events: number): void {
    this.#fraction = fraction;
    this.#events = events;
    if (!this.#enabled) return;
    const now = this.#now();
    if (now - this.#lastDraw < this.#intervalMs) return;
    this.#lastDraw = now;
    this.#draw(now);
  }

  /** Draws the final state and ends the line (complete: shown as 100%). */
  finish(complete: boolean): void {
    if (!this.#enabled) return;
    if (complete && this.#fraction !== undefined) this.#fraction = 1;
    this.#draw(this.#now());
    this.#stream.write("\n");
  }

  #draw(now: number): void {
    let text = renderProgress({
      label: this.#label,
      fraction: this.#fraction,
      events: this.#events,
      elapsedMs: now - this.#start,
    });
    const columns = this.#stream.columns;
    if (columns !== undefined && columns > 1 && text.length >= columns)
      text = text.slice(0, columns - 1);
    // carriage return, the line, then erase whatever an earlier longer line left
    this.#stream.write(`\r${text}\x1b[K`);
    this.#drawn = true;
  }

  /** True once something was drawn. */
  get drawn(): boolean {
    return this.#drawn;
  }
}
