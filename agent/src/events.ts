// The agent's one event schema (typed on the host by hostctl/events.py; bump SCHEMA_VERSION with
// any change there). Every event is one send(message, data): the JSON message carries the fields,
// and the binary payloads travel as `data` -- the captured bytes of each payload concatenated in
// the order of `parts`, never stringified -- so a megabyte of ciphertext costs a megabyte.
//
// Common fields: v, kind, seq (1.. per loaded agent: a hole means a lost event), t (agent wall
// clock, ms since the epoch), pid, tid. parts: [{name, length, size}] where length is how many
// bytes the call handled and size how many were captured (cut at maxCapture).

export const SCHEMA_VERSION = 2;

export interface Part {
  name: string;
  length: number;
  size: number;
}

/** A payload to send: its name, the number of bytes the call handled, the captured bytes. */
export type Payload = [name: string, length: number, bytes: ArrayBuffer | null];

export interface Endpoint {
  ip?: string;
  port?: number;
  path?: string;
}

let seq = 0;
let errorCount = 0;
let maxCapture = 256 * 1024;
const errorsBy = new Map<string, number>();
const ERRORS_PER_SITE = 5;

export function configure(options: { maxCapture?: number }): void {
  if (options.maxCapture !== undefined && options.maxCapture >= 0) {
    maxCapture = Math.floor(options.maxCapture);
  }
}

export function captureLimit(): number {
  return maxCapture;
}

export function eventCount(): number {
  return seq;
}

export function errorTotal(): number {
  return errorCount;
}

export function emit(kind: string, fields: Record<string, unknown>, payloads: Payload[] = []): void {
  seq += 1;
  const message: Record<string, unknown> = {
    v: SCHEMA_VERSION, kind, seq, t: Date.now(), pid: Process.id, tid: Process.getCurrentThreadId(),
    ...fields,
  };
  if (payloads.length === 0) {
    send(message);
    return;
  }
  const parts: Part[] = [];
  let total = 0;
  for (const [name, length, bytes] of payloads) {
    const size = bytes === null ? 0 : bytes.byteLength;
    parts.push({ name, length, size });
    total += size;
  }
  message.parts = parts;
  if (payloads.length === 1) {
    send(message, payloads[0][2] ?? new ArrayBuffer(0));
    return;
  }
  const data = new Uint8Array(total);
  let offset = 0;
  for (const [, , bytes] of payloads) {
    if (bytes !== null) {
      data.set(new Uint8Array(bytes), offset);
      offset += bytes.byteLength;
    }
  }
  send(message, data.buffer);
}

/** The first `length` bytes at `address`, cut at the capture limit; null if unreadable. */
export function readNative(address: NativePointer, length: number): ArrayBuffer | null {
  if (length <= 0 || address.isNull()) {
    return length <= 0 ? new ArrayBuffer(0) : null;
  }
  try {
    return address.readByteArray(Math.min(length, maxCapture));
  } catch (e) {
    return null;
  }
}

/**
 * A hook that failed (a bad pointer, a Java exception in our own reading code) is reported,
 * a few times per site, and never propagates into the app.
 */
export function reportError(where: string, error: unknown): void {
  errorCount += 1;
  const n = (errorsBy.get(where) ?? 0) + 1;
  errorsBy.set(where, n);
  if (n > ERRORS_PER_SITE) {
    return;
  }
  const text = error instanceof Error ? `${error.message}` : `${error}`;
  try {
    emit("agent-error", { where, error: text, repeats_suppressed: n === ERRORS_PER_SITE });
  } catch (e) {
    // nothing left to report with
  }
}

// --- hook status ------------------------------------------------------------------------------
// Targets: "native:<module>!<symbol>", "native:<symbol>" (not in any loaded module yet),
// "java:<class>[.<method>]". One hook-status event lists them all (it is cumulative: the last one
// received is the agent's whole state).

export interface Missing {
  target: string;
  reason: string;
}

const hooked = new Set<string>();
const missing = new Map<string, string>();

export function markHooked(target: string): void {
  hooked.add(target);
  missing.delete(target);
}

export function markMissing(target: string, reason: string): void {
  if (!hooked.has(target)) {
    missing.set(target, reason);
  }
}

export function clearMissing(target: string): void {
  missing.delete(target);
}

export function isHooked(target: string): boolean {
  return hooked.has(target);
}

export function statusSnapshot(): { hooked: string[]; missing: Missing[] } {
  return {
    hooked: [...hooked].sort(),
    missing: [...missing.entries()].sort().map(([target, reason]) => ({ target, reason })),
  };
}

export function emitStatus(java: boolean, reason: string): void {
  emit("hook-status", { ...statusSnapshot(), java, reason });
}
