// Java hooks, where the process has an Android runtime (Java.available): identifier reads through
// TelephonyManager / SubscriptionManager / SubscriptionInfo, javax.crypto.Cipher (algorithm, key,
// IV, what went in and what came out), SmsManager sends, the MIUI Messaging MX classes
// (com.xiaomi.mms.transaction.Mx*), and Conscrypt's NativeCrypto TLS calls (whose BoringSSL is
// linked statically since Android 7, out of reach of the native SSL_* hooks).
//
// Every class and method is looked up before it is hooked: what this release lacks is reported
// in the hook status, never thrown into the app. A hook calls the original first and reports
// after it; an exception of the original propagates unchanged, one of our reading code becomes
// an agent-error event.
import Java from "frida-java-bridge";

import { conscryptStatus } from "./keylog.js";

import { captureLimit, clearMissing, emit, markHooked, markMissing, Payload, reportError } from "./events.js";
import { enterFamily, leaveFamily, socketInfo } from "./net.js";

export interface JavaOptions {
  telephony?: boolean;
  cipher?: boolean;
  sms?: boolean;
  mx?: boolean;
  conscrypt?: boolean;
  stackDepth?: number;
}

const TM = "android.telephony.TelephonyManager";
const SUBM = "android.telephony.SubscriptionManager";
const SUBI = "android.telephony.SubscriptionInfo";
const CIPHER = "javax.crypto.Cipher";
const SMS = "android.telephony.SmsManager";
const MX_PREFIX = "com.xiaomi.mms.transaction.Mx";
const MX_KNOWN = ["MxActivateService", "MxMessageService", "MxResendService"].map((n) => MX_PREFIX.slice(0, -2) + n);
const CONSCRYPT = ["com.android.org.conscrypt.NativeCrypto", "org.conscrypt.NativeCrypto"];

// [class, method, identifier]: the reads that hand an app a device or subscriber identifier
const IDENTIFIER_READS: [string, string, string][] = [
  [TM, "getDeviceId", "imei"], [TM, "getImei", "imei"], [TM, "getMeid", "meid"],
  [TM, "getSubscriberId", "imsi"], [TM, "getSimSerialNumber", "iccid"],
  [TM, "getLine1Number", "msisdn"], [TM, "getMsisdn", "msisdn"], [TM, "getVoiceMailNumber", "voicemail"],
  [TM, "getGroupIdLevel1", "gid1"],
  [SUBM, "getActiveSubscriptionInfo", "subscription"],
  [SUBM, "getActiveSubscriptionInfoForSimSlotIndex", "subscription"],
  [SUBM, "getActiveSubscriptionInfoList", "subscriptions"], [SUBM, "getPhoneNumber", "msisdn"],
  [SUBI, "getIccId", "iccid"], [SUBI, "getNumber", "msisdn"],
];

const CIPHER_MODES: Record<number, string> = { 1: "encrypt", 2: "decrypt", 3: "wrap", 4: "unwrap" };
const cipherModes = new Map<number, string>();     // identity hash -> mode of its last init
const MODES_KEPT = 4096;
const TEXT_LIMIT = 4096;

/** The hook-status targets of each group, for a process without Java. */
export function javaTargets(options: JavaOptions): string[] {
  const out: string[] = [];
  if (options.telephony !== false) {
    out.push(`java:${TM}`, `java:${SUBM}`, `java:${SUBI}`);
  }
  if (options.cipher !== false) {
    out.push(`java:${CIPHER}`);
  }
  if (options.sms !== false) {
    out.push(`java:${SMS}`);
  }
  if (options.mx !== false) {
    out.push(`java:${MX_PREFIX}*`);
  }
  if (options.conscrypt !== false) {
    out.push(...CONSCRYPT.map((c) => `java:${c}`));
  }
  return out;
}

// --- helpers -----------------------------------------------------------------------------------
const replaced: any[] = [];
let cancelled = false;
let stackDepth = 8;
let throwable: any = null;
let system: any = null;
let loaders: any[] | null = null;

function findClass(name: string): any | null {
  try {
    return Java.use(name);
  } catch (e) {
    // not visible to the default loader: try the app's and the others
  }
  if (loaders === null) {
    try {
      loaders = Java.enumerateClassLoadersSync();
    } catch (e) {
      loaders = [];
    }
  }
  for (const loader of loaders) {
    try {
      return Java.ClassFactory.get(loader).use(name);
    } catch (e) {
      // not in this one
    }
  }
  return null;
}

function javaStack(skipPrefix: string): { caller: string | null; stack: string[] } {
  throwable ??= Java.use("java.lang.Throwable");
  const frames = throwable.$new().getStackTrace();
  const stack: string[] = [];
  let caller: string | null = null;
  for (let i = 0; i < frames.length && stack.length < stackDepth; i++) {
    const text = `${frames[i]}`;
    stack.push(text);
    // frames may name their module first ("java.base/javax.crypto.Cipher.init(...)")
    if (caller === null && !text.replace(/^[^(]*\//, "").startsWith(skipPrefix)) {
      caller = text;
    }
  }
  return { caller, stack };
}

function objectId(obj: any): number | null {
  try {
    system ??= Java.use("java.lang.System");
    return system.identityHashCode(obj);
  } catch (e) {
    return null;
  }
}

function truncate(text: string): string {
  return text.length > TEXT_LIMIT ? text.slice(0, TEXT_LIMIT) + "..." : text;
}

/** Bytes of a Java byte[] (a slice), cut at the capture limit; one JNI call, not one per byte. */
function javaBytes(array: any, offset = 0, length?: number): ArrayBuffer | null {
  if (array === null || array === undefined) {
    return null;
  }
  const n = Math.max(0, Math.min(length ?? array.length - offset, array.length - offset, captureLimit()));
  if (n === 0) {
    return new ArrayBuffer(0);
  }
  try {
    return array.withElements((p: NativePointer) => p.add(offset).readByteArray(n));
  } catch (e) {
    const out = new Uint8Array(n);
    for (let i = 0; i < n; i++) {
      out[i] = array[offset + i] & 0xff;
    }
    return out.buffer;
  }
}

function bytesPayload(name: string, array: any, offset = 0, length?: number): Payload[] {
  if (array === null || array === undefined) {
    return [];
  }
  const n = Math.max(0, Math.min(length ?? array.length - offset, array.length - offset));
  return [[name, n, javaBytes(array, offset, n)]];
}

/** The runtime class of an object (a wrapper's $className is its runtime class; interface-typed
 * wrappers have no getClass()). */
function className(obj: any): string | null {
  if (obj === null || obj === undefined) {
    return null;
  }
  try {
    if (typeof obj.$className === "string") {
      return obj.$className;
    }
    return `${Java.cast(obj, Java.use("java.lang.Object")).getClass().getName()}`;
  } catch (e) {
    return null;
  }
}

/** A value as JSON: primitives as they are, byte[] as a payload reference, others by toString. */
function render(value: any, type: string, name: string, blobs: Payload[]): unknown {
  if (value === null || value === undefined) {
    return null;
  }
  if (type === "[B") {
    blobs.push(...bytesPayload(name, value));
    return { bytes: name, length: value.length };
  }
  const t = typeof value;
  if (t === "string" || t === "number" || t === "boolean") {
    return t === "string" ? truncate(value) : value;
  }
  try {
    if (className(value) === "android.content.Intent") {
      return truncate(`${Java.cast(value, Java.use("android.content.Intent")).toUri(0)}`);
    }
    return truncate(`${value}`);
  } catch (e) {
    return `<${type}>`;
  }
}

type After = (self: any, args: any[], ret: any, overload: any, before: any) => void;
type Before = (self: any, args: any[], overload: any) => any;

/**
 * Replace every overload of `cls.method` with one that calls the original and then `after`.
 * With a `family`, only the outermost of nested calls on a thread is reported (getDeviceId()
 * calling getDeviceId(slot) is one read). Returns the number of overloads hooked.
 */
function hookMethod(cls: any, name: string, method: string, after: After,
                    options: { family?: string; before?: Before } = {}): number {
  const wrapper = cls[method];
  if (wrapper === undefined || wrapper === null || wrapper.overloads === undefined) {
    return 0;
  }
  let count = 0;
  for (const overload of wrapper.overloads) {
    try {
      overload.implementation = function (this: any, ...args: any[]) {
        const tid = Process.getCurrentThreadId();
        const outer = options.family === undefined || enterFamily(options.family, tid);
        let state: any = undefined;
        try {
          if (outer && options.before !== undefined) {
            try {
              state = options.before(this, args, overload);
            } catch (e) {
              reportError(`${name}.${method} (before)`, e);
            }
          }
          const ret = overload.apply(this, args);
          if (outer) {
            try {
              after(this, args, ret, overload, state);
            } catch (e) {
              reportError(`${name}.${method}`, e);
            }
          }
          return ret;
        } finally {
          if (options.family !== undefined) {
            leaveFamily(options.family, tid);
          }
        }
      };
      replaced.push(overload);
      count++;
    } catch (e) {
      reportError(`hook ${name}.${method}`, e);
    }
  }
  return count;
}

function declaredMethodNames(cls: any): string[] {
  const names = new Set<string>();
  const methods = cls.class.getDeclaredMethods();
  for (let i = 0; i < methods.length; i++) {
    names.add(`${methods[i].getName()}`);
  }
  return [...names].sort();
}

function argTypes(overload: any): string[] {
  return overload.argumentTypes.map((t: any) => `${t.className}`);
}

// --- identifier reads ----------------------------------------------------------------------------
function hookTelephony(sdk: number): void {
  const classes = new Map<string, any | null>();
  for (const [name, method, identifier] of IDENTIFIER_READS) {
    if (!classes.has(name)) {
      classes.set(name, findClass(name));
      if (classes.get(name) === null) {
        markMissing(`java:${name}`, `class not found (SDK ${sdk})`);
      }
    }
    const cls = classes.get(name);
    if (cls === null) {
      continue;
    }
    const short = name.slice(name.lastIndexOf(".") + 1);
    const n = hookMethod(cls, name, method, (self, args, ret, overload) => {
      const blobs: Payload[] = [];
      const types = argTypes(overload);
      const where = javaStack(`${name}.${method}(`);
      emit("identifier-read", {
        api: `${short}.${method}`, class_name: name, method, identifier,
        args: args.map((a, i) => render(a, types[i], `arg${i}`, blobs)),
        value: render(ret, `${overload.returnType.className}`, "value", blobs),
        caller: where.caller, stack: where.stack,
      }, blobs);
    }, { family: "java-ident" });
    if (n > 0) {
      markHooked(`java:${name}.${method}`);
    } else {
      markMissing(`java:${name}.${method}`, `no such method on SDK ${sdk}`);
    }
  }
}

// --- javax.crypto.Cipher -------------------------------------------------------------------------
/** A ByteBuffer as java.nio.Buffer: position()/limit() are Buffer's (ByteBuffer's covariant
 * overrides since Java 9 hide the getters from its wrapper). */
function asBuffer(buffer: any): any {
  return Java.cast(buffer, Java.use("java.nio.Buffer"));
}

function byteBufferSlice(buffer: any, from: number, to: number): any {
  const copy = buffer.duplicate();
  asBuffer(copy).limit(to);
  asBuffer(copy).position(from);
  const out = Java.array("byte", new Array(to - from).fill(0));
  copy.get.overload("[B").call(copy, out);
  return out;
}

/** What went into and came out of an update/doFinal overload, from its signature. */
function cipherIo(types: string[], args: any[], ret: any, before: any): { input: Payload[]; output: Payload[] } {
  const sig = types.join(",");
  const produced = (array: any, offset: number): Payload[] =>
    typeof ret === "number" ? bytesPayload("output", array, offset, ret) : [];
  switch (sig) {
    case "":
      return { input: [], output: bytesPayload("output", ret) };
    case "[B":
      return { input: bytesPayload("input", args[0]), output: bytesPayload("output", ret) };
    case "[B,int":                                 // doFinal(output, outputOffset)
      return { input: [], output: produced(args[0], args[1]) };
    case "[B,int,int":
      return { input: bytesPayload("input", args[0], args[1], args[2]), output: bytesPayload("output", ret) };
    case "[B,int,int,[B":
      return { input: bytesPayload("input", args[0], args[1], args[2]), output: produced(args[3], 0) };
    case "[B,int,int,[B,int":
      return { input: bytesPayload("input", args[0], args[1], args[2]), output: produced(args[3], args[4]) };
    case "java.nio.ByteBuffer,java.nio.ByteBuffer": {
      const input = before?.input ?? null;
      const output = before !== undefined && before !== null
        ? byteBufferSlice(args[1], before.outPosition, asBuffer(args[1]).position()) : null;
      return { input: bytesPayload("input", input), output: bytesPayload("output", output) };
    }
    default:
      return { input: [], output: [] };
  }
}

function captureByteBuffers(self: any, args: any[], overload: any): any {
  if (argTypes(overload).join(",") !== "java.nio.ByteBuffer,java.nio.ByteBuffer") {
    return null;
  }
  const input = asBuffer(args[0]);
  return {
    input: byteBufferSlice(args[0], input.position(), input.limit()),
    outPosition: asBuffer(args[1]).position(),
  };
}

function hookCipher(sdk: number): void {
  const cls = findClass(CIPHER);
  if (cls === null) {
    markMissing(`java:${CIPHER}`, `class not found (SDK ${sdk})`);
    return;
  }
  const n = hookMethod(cls, CIPHER, "init", (self, args, _ret, overload) => {
    const types = argTypes(overload);
    const opmode: number = args[0];
    let key: any = null;
    let keyClass: string | null = null;
    if (args[1] !== null) {
      const k = types[1] === "java.security.cert.Certificate" ? args[1].getPublicKey() : args[1];
      keyClass = className(k);
      key = k.getEncoded();         // null for keys that never leave a keystore
    }
    let iv: any = null;
    try {
      iv = self.getIV();            // the IV in force, generated or given
    } catch (e) {
      iv = null;
    }
    const where = javaStack(`${CIPHER}.init(`);
    const id = objectId(self);
    const mode = CIPHER_MODES[opmode] ?? `${opmode}`;
    if (id !== null) {
      if (cipherModes.size >= MODES_KEPT) {
        cipherModes.clear();
      }
      cipherModes.set(id, mode);
    }
    emit("cipher", {
      op: "init", api: `Cipher.init(${types.join(", ")})`, algorithm: `${self.getAlgorithm()}`,
      mode, cipher_id: id, key_class: keyClass,
      caller: where.caller, stack: where.stack,
    }, [...bytesPayload("key", key), ...bytesPayload("iv", iv)]);
  }, { family: "java-cipher" });
  for (const method of ["update", "doFinal"]) {
    const m = hookMethod(cls, CIPHER, method, (self, args, ret, overload, before) => {
      const types = argTypes(overload);
      const io = cipherIo(types, args, ret, before);
      const where = javaStack(`${CIPHER}.${method}(`);
      const id = objectId(self);
      emit("cipher", {
        op: method === "update" ? "update" : "final", api: `Cipher.${method}(${types.join(", ")})`,
        algorithm: `${self.getAlgorithm()}`, mode: id !== null ? cipherModes.get(id) ?? null : null,
        cipher_id: id, key_class: null,
        caller: where.caller, stack: where.stack,
      }, [...io.input, ...io.output]);
    }, { family: "java-cipher", before: captureByteBuffers });
    if (m === 0) {
      markMissing(`java:${CIPHER}.${method}`, "no such method");
    }
  }
  if (n > 0) {
    markHooked(`java:${CIPHER}`);
  } else {
    markMissing(`java:${CIPHER}.init`, "no such method");
  }
}

// --- SmsManager ----------------------------------------------------------------------------------
function listStrings(list: any): string[] {
  const out: string[] = [];
  const n: number = list.size();
  for (let i = 0; i < n; i++) {
    out.push(`${list.get(i)}`);
  }
  return out;
}

function hookSms(sdk: number): void {
  const cls = findClass(SMS);
  if (cls === null) {
    markMissing(`java:${SMS}`, `class not found (SDK ${sdk})`);
    return;
  }
  const methods = declaredMethodNames(cls).filter((m) => m.startsWith("send"));
  for (const method of methods) {
    const n = hookMethod(cls, SMS, method, (_self, args, _ret, overload) => {
      const types = argTypes(overload);
      const blobs: Payload[] = [];
      let text: string | null = null;
      let parts: string[] | null = null;
      for (let i = 2; i < types.length && text === null && parts === null && blobs.length === 0; i++) {
        if (types[i] === "java.lang.String" && args[i] !== null) {
          text = `${args[i]}`;
        } else if ((types[i] === "java.util.ArrayList" || types[i] === "java.util.List") && args[i] !== null) {
          parts = listStrings(args[i]);
          text = parts.join("");
        } else if (types[i] === "[B") {
          blobs.push(...bytesPayload("data", args[i]));
        }
      }
      const where = javaStack(`${SMS}.${method}(`);
      emit("sms-send", {
        api: `SmsManager.${method}`,
        destination: types[0] === "java.lang.String" ? args[0] : null,
        service_center: types[1] === "java.lang.String" ? args[1] : null,
        text, text_parts: parts === null ? null : parts.length,
        caller: where.caller, stack: where.stack,
      }, blobs);
    }, { family: "java-sms" });
    if (n > 0) {
      markHooked(`java:${SMS}.${method}`);
    }
  }
  if (methods.length === 0) {
    markMissing(`java:${SMS}.send*`, "no send methods declared");
  }
}

// --- MIUI MX classes -----------------------------------------------------------------------------
function hookMx(): void {
  const names = new Set(MX_KNOWN);
  try {
    for (const c of Java.enumerateLoadedClassesSync()) {
      if (c.startsWith(MX_PREFIX)) {
        names.add(c);
      }
    }
  } catch (e) {
    reportError("enumerateLoadedClasses", e);
  }
  for (const name of [...names].sort()) {
    const cls = findClass(name);
    if (cls === null) {
      markMissing(`java:${name}`, "class not found in this process (not MIUI Messaging, or renamed)");
      continue;
    }
    let count = 0;
    for (const method of declaredMethodNames(cls)) {
      if (method.includes("$")) {
        continue;            // compiler-made accessors: their callers are hooked already
      }
      count += hookMethod(cls, name, method, (_self, args, ret, overload) => {
        const types = argTypes(overload);
        const blobs: Payload[] = [];
        const where = javaStack(`${name}.${method}(`);
        emit("mx-call", {
          class_name: name, method,
          args: args.map((a, i) => render(a, types[i], `arg${i}`, blobs)),
          ret: render(ret, `${overload.returnType.className}`, "ret", blobs),
          caller: where.caller,
        }, blobs);
      });
    }
    if (count > 0) {
      markHooked(`java:${name}`);
    } else {
      markMissing(`java:${name}`, "no hookable methods");
    }
  }
}

// --- Conscrypt ---------------------------------------------------------------------------------
function fdNumber(fd: any): number {
  try {
    return fd.getInt$();            // Android's libcore
  } catch (e) {
    try {
      return fd.descriptor.value;   // Android's field
    } catch (e2) {
      return fd.fd.value;           // a JDK's field
    }
  }
}

/** Where the plaintext is in a NativeCrypto read/write signature: a byte[] with offset and
 * length, or (the *_direct variants) a native address and a length. */
function conscryptData(types: string[], args: any[], count: number): Payload[] {
  const b = types.indexOf("[B");
  if (b >= 0 && types[b + 1] === "int" && types[b + 2] === "int") {
    return bytesPayload("data", args[b], args[b + 1], Math.min(count, args[b + 2]));
  }
  for (let i = types.length - 2; i > 0; i--) {
    if (types[i] === "long" && types[i + 1] === "int") {
      const address = ptr(`${args[i]}`);
      const n = Math.min(count, args[i + 1]);
      return [["data", n, address.readByteArray(Math.min(n, captureLimit()))]];
    }
  }
  return [];
}

function hookConscrypt(): void {
  for (const name of CONSCRYPT) {
    const cls = findClass(name);
    if (cls === null) {
      markMissing(`java:${name}`, "class not found");
      continue;
    }
    let count = 0;
    const methods = ["SSL_write", "SSL_read", "ENGINE_SSL_write_heap", "ENGINE_SSL_read_heap",
                     "ENGINE_SSL_write_direct", "ENGINE_SSL_read_direct"];
    for (const method of methods) {
      const out = method.includes("write");
      const n = hookMethod(cls, name, method, (_self, args, ret, overload) => {
        const types = argTypes(overload);
        let length: number;
        if (typeof ret === "number") {
          length = ret;
        } else {
          const b = types.indexOf("[B");
          length = b >= 0 ? args[b + 2] : 0;
        }
        if (length <= 0) {
          return;
        }
        const f = types.indexOf("java.io.FileDescriptor");
        const fd = f >= 0 && args[f] !== null ? fdNumber(args[f]) : -1;
        const info = socketInfo(fd);
        const l = types.indexOf("long");
        emit("ssl", {
          fn: `NativeCrypto.${method}`, direction: out ? "out" : "in", module: `java:${name}`,
          ssl: l >= 0 ? `0x${BigInt(`${args[l]}`).toString(16)}` : null, fd,
          socket_type: info.socket_type, local: info.local, peer: info.peer, sni: null, length,
        }, conscryptData(types, args, length));
      }, { family: out ? "ssl-out" : "ssl-in" });
      if (n > 0) {
        count += n;
        markHooked(`java:${name}.${method}`);
      }
    }
    if (count === 0) {
      markMissing(`java:${name}`, "none of its SSL read/write methods found");
    }
  }
}

// --- install / uninstall -----------------------------------------------------------------------
function step(target: string, fn: () => void): void {
  try {
    fn();
  } catch (e) {
    markMissing(target, `hooking failed: ${e}`);
  }
}

/** Install the Java hooks; resolves when done (or at once, with them all missing, without Java). */
export function installJava(options: JavaOptions): Promise<boolean> {
  if (!Java.available) {
    for (const target of javaTargets(options)) {
      markMissing(target, "no Java runtime in this process (Java.available is false)");
    }
    return Promise.resolve(false);
  }
  stackDepth = options.stackDepth ?? stackDepth;
  cancelled = false;
  return new Promise((resolve) => {
    Java.perform(() => {
      if (cancelled) {           // the trace stopped before the VM was ready: hook nothing
        resolve(false);
        return;
      }
      for (const target of javaTargets(options)) {
        clearMissing(target);      // "pending" entries; what is really missing is marked below
      }
      let sdk = 0;
      try {
        sdk = Java.use("android.os.Build$VERSION").SDK_INT.value;
      } catch (e) {
        sdk = 0;
      }
      if (options.telephony !== false) {
        step(`java:${TM}`, () => hookTelephony(sdk));
      }
      if (options.cipher !== false) {
        step(`java:${CIPHER}`, () => hookCipher(sdk));
      }
      if (options.sms !== false) {
        step(`java:${SMS}`, () => hookSms(sdk));
      }
      if (options.mx !== false) {
        step(`java:${MX_PREFIX}*`, hookMx);
      }
      if (options.conscrypt !== false) {
        step(`java:${CONSCRYPT[0]}`, hookConscrypt);
        step("java:com.android.org.conscrypt (TLS secrets)", conscryptStatus);
      }
      resolve(true);
    });
  });
}

export function uninstallJava(): void {
  cancelled = true;
  if (!Java.available || replaced.length === 0) {
    return;
  }
  Java.performNow(() => {
    for (const overload of replaced.splice(0)) {
      try {
        overload.implementation = null;
      } catch (e) {
        reportError("unhook", e);
      }
    }
  });
}
