// The evidence trace: startTrace() installs the native and Java hooks and reports what it could
// and could not hook (hook-status); events then stream as send() messages (see events.ts) until
// stopTrace(), whose answer comes after every event emitted before it (same channel, in order).
// Loading the agent installs nothing: the same bundle serves the identity and Cloud Messaging RPCs.
import Java from "frida-java-bridge";

import {
  configure, emit, emitStatus, errorTotal, eventCount, markMissing, Missing, SCHEMA_VERSION, statusSnapshot,
} from "./events.js";
import { installJava, JavaOptions, javaTargets, uninstallJava } from "./java.js";
import { installNative, NetOptions, uninstallNative } from "./net.js";

export interface TraceOptions extends NetOptions, JavaOptions {
  maxCapture?: number;     // bytes kept per payload (the length is always reported)
  java?: boolean;          // the Java hooks (default true; need Java.available)
  javaTimeoutMs?: number;  // how long to wait for Java.perform before answering
}

export interface TraceStarted {
  hooked: string[];
  missing: Missing[];
  java: boolean;
  schema: number;
}

let running = false;

export async function startTrace(options: TraceOptions = {}): Promise<TraceStarted> {
  if (running) {
    return { ...statusSnapshot(), java: Java.available, schema: SCHEMA_VERSION };
  }
  running = true;
  configure(options);
  emit("agent-start", {
    process: processName(), arch: Process.arch, platform: Process.platform, frida: Frida.version,
    runtime: Script.runtime, java: Java.available, options,
  });
  installNative(options, (module) => emitStatus(Java.available, `hooked ${module} when it loaded`));
  if (options.java !== false) {
    let timer: ReturnType<typeof setTimeout> | null = null;
    const timeout = new Promise<string>((resolve) => {
      timer = setTimeout(() => resolve("timeout"), options.javaTimeoutMs ?? 10000);
    });
    const done = installJava(options).then(() => "done");
    const outcome = await Promise.race([done, timeout]);
    if (timer !== null) {
      clearTimeout(timer);
    }
    if (outcome === "timeout") {
      // Java.perform did not run yet (the VM is not ready): its hooks land later, with a new status
      for (const target of javaTargets(options)) {
        markMissing(target, "pending: Java.perform has not run yet (the app's class loader is not ready)");
      }
      done.then(() => emitStatus(Java.available, "Java hooks installed late"));
      emitStatus(Java.available, "Java hooks pending (Java.perform has not run yet)");
      return { ...statusSnapshot(), java: Java.available, schema: SCHEMA_VERSION };
    }
  }
  emitStatus(Java.available, "trace started");
  return { ...statusSnapshot(), java: Java.available, schema: SCHEMA_VERSION };
}

export function stopTrace(): { events: number; errors: number } {
  if (running) {
    running = false;
    uninstallNative();
    uninstallJava();
    emit("agent-stop", { events: eventCount() + 1, errors: errorTotal() });
  }
  return { events: eventCount(), errors: errorTotal() };
}

function processName(): string {
  try {
    return Process.mainModule.name;
  } catch (e) {
    return "";
  }
}
