// TLS secrets, one `tls-secret` event per line of the NSS key log format, so the host can decrypt
// the capture of the same connections (hostctl trace writes them to sslkeylog.txt).
//
// OpenSSL >= 1.1.1 and BoringSSL: a key-log callback on every SSL_CTX (SSL_CTX_set_keylog_callback:
// the library calls it with one NSS line per secret, CLIENT_RANDOM for TLS 1.2, the handshake and
// traffic secrets and EXPORTER_SECRET for TLS 1.3; OpenSSL ssl/ssl_lib.c ssl_log_secret, BoringSSL
// ssl/ssl_lib.cc ssl_log_secret). The callback is read from the SSL's SSL_CTX when a secret is
// logged, so it is put on each SSL_CTX when it is made (SSL_CTX_new), when an SSL is made from one
// made before the trace (SSL_new), and before a handshake (SSL_do_handshake/SSL_connect/
// SSL_accept). An application's own callback is never lost: SSL_CTX_set_keylog_callback is
// intercepted, the app's function is remembered per SSL_CTX and ours is installed in its place,
// then ours calls the app's with the same line (CPython's ssl keylog_filename, curl's
// SSLKEYLOGFILE keep working). stopTrace() puts the app's callbacks back, so no SSL_CTX points
// into an unloaded agent: to know the SSL_CTXs it changed are still there to be written to, the
// agent holds a reference on each (SSL_CTX_up_ref; SSL_CTX_free is also what SSL_free calls to
// drop the SSL's reference, so it cannot tell a context freed), at most MAX_CTXS at once: the
// oldest is given back (its callback restored, our reference dropped) and gets ours again the
// next time an SSL is made from it or shakes hands.
//
// OpenSSL 1.1.0 (no key-log callback): after a handshake, SSL_get_client_random and
// SSL_SESSION_get_master_key give the CLIENT_RANDOM line. OpenSSL 1.0.x (Android 4.4's 1.0.1e) has
// neither: its secrets are reported as not extracted in the hook status (reading the master key
// out of SSL_SESSION by struct offsets differs per build and is not attempted).
//
// Conscrypt: on Android 7-9 it uses the system libssl.so (BoringSSL, which exports the callback
// setter), so the native hooks cover it; from Android 10 its BoringSSL is linked statically into
// libjavacrypto.so and exports nothing: the hook status says so (see conscryptStatus()).
import {
  clearMissing, emit, markHooked, markMissing, reportError,
} from "./events.js";
import { socketInfo } from "./net.js";

interface KeylogLib {
  name: string;
  setCb: NativeFunction<void, [NativePointerValue, NativePointerValue]>;
  getCb: NativeFunction<NativePointer, [NativePointerValue]>;
  getCtx: NativeFunction<NativePointer, [NativePointerValue]> | null;
  getFd: NativeFunction<number, [NativePointerValue]> | null;
  servername: NativeFunction<NativePointer, [NativePointerValue, number]> | null;
  callback: NativeCallback<"void", ["pointer", "pointer"]>;
  upRef: NativeFunction<number, [NativePointerValue]>;
  ctxFree: NativeFunction<void, [NativePointerValue]>;
  // SSL_CTX -> the application's own callback (NULL: none), for every SSL_CTX we installed ours on
  // (and hold a reference to), oldest first
  ctxs: Map<string, NativePointer>;
}

const MAX_CTXS = 64;

const libs: KeylogLib[] = [];
const appFns = new Map<string, NativeFunction<void, [NativePointerValue, NativePointerValue]>>();
let selfCall = false;          // our own SSL_CTX_set_keylog_callback calls pass the interceptor
let emitted = 0;

function inside(module: Module, address: NativePointer): boolean {
  return address.compare(module.base) >= 0 && address.compare(module.base.add(module.size)) < 0;
}

function fn(module: Module, name: string, ret: NativeFunctionReturnType,
            args: NativeFunctionArgumentType[]): NativeFunction<any, any> | null {
  const address = module.findExportByName(name);
  return address === null || !inside(module, address) ? null : new NativeFunction(address, ret, args);
}

function emitLine(lib: { name: string; getFd: KeylogLib["getFd"]; servername: KeylogLib["servername"] },
                  ssl: NativePointer, line: string, via: string): void {
  const parts = line.trim().split(/\s+/);
  if (parts.length !== 3) {
    return;
  }
  let fd = -1;
  let sni: string | null = null;
  try {
    fd = lib.getFd !== null ? lib.getFd(ssl) : -1;
    if (lib.servername !== null) {
      const name = lib.servername(ssl, 0);
      sni = name.isNull() ? null : name.readCString();
    }
  } catch (e) {
    reportError(`${lib.name}!keylog context`, e);
  }
  const info = socketInfo(fd);
  emitted += 1;
  emit("tls-secret", {
    label: parts[0], client_random: parts[1].toLowerCase(), secret: parts[2].toLowerCase(), module: lib.name, via,
    ssl: ssl.toString(), fd, socket_type: info.socket_type, local: info.local, peer: info.peer, sni,
  });
}

/** Our callback on `ctx` (remembering the application's); never throws. */
function ensure(lib: KeylogLib, ctx: NativePointer): void {
  if (ctx.isNull()) {
    return;
  }
  try {
    const current = lib.getCb(ctx);
    if (current.equals(lib.callback)) {
      return;
    }
    track(lib, ctx, current);
    selfCall = true;
    try {
      lib.setCb(ctx, lib.callback);
    } finally {
      selfCall = false;
    }
  } catch (e) {
    reportError(`${lib.name}!SSL_CTX_set_keylog_callback`, e);
  }
}

/** Remember `ctx`'s own callback; hold a reference to it (the first time); give back the oldest. */
function track(lib: KeylogLib, ctx: NativePointer, app: NativePointer): void {
  const key = ctx.toString();
  if (!lib.ctxs.has(key)) {
    lib.upRef(ctx);
  }
  lib.ctxs.delete(key);
  lib.ctxs.set(key, app);
  while (lib.ctxs.size > MAX_CTXS) {
    const [oldest, own] = lib.ctxs.entries().next().value as [string, NativePointer];
    lib.ctxs.delete(oldest);
    release(lib, ptr(oldest), own);
  }
}

function release(lib: KeylogLib, ctx: NativePointer, app: NativePointer): void {
  selfCall = true;
  try {
    lib.setCb(ctx, app);
  } finally {
    selfCall = false;
  }
  lib.ctxFree(ctx);
}

function chain(lib: KeylogLib, ssl: NativePointer, line: NativePointer): void {
  if (lib.getCtx === null) {
    return;
  }
  const app = lib.ctxs.get(lib.getCtx(ssl).toString());
  if (app === undefined || app.isNull()) {
    return;
  }
  let f = appFns.get(app.toString());
  if (f === undefined) {
    f = new NativeFunction(app, "void", ["pointer", "pointer"]);
    appFns.set(app.toString(), f);
  }
  f(ssl, line);
}

function attach(module: Module, name: string, callbacks: InvocationListenerCallbacks): boolean {
  const address = module.findExportByName(name);
  if (address === null || !inside(module, address)) {
    return false;
  }
  Interceptor.attach(address, callbacks);
  return true;
}

/** Key-log hooks for one module exporting the SSL API; true if it was hooked. */
export function hookKeylogModule(module: Module): boolean {
  if (libs.some((l) => l.name === module.name)) {
    return false;
  }
  const setAddr = module.findExportByName("SSL_CTX_set_keylog_callback");
  const target = `native:${module.name}!SSL_CTX_set_keylog_callback`;
  if (setAddr === null || !inside(module, setAddr)) {
    return hookSessionFallback(module);
  }
  const getCb = fn(module, "SSL_CTX_get_keylog_callback", "pointer", ["pointer"]);
  const upRef = fn(module, "SSL_CTX_up_ref", "int", ["pointer"]);
  const ctxFree = fn(module, "SSL_CTX_free", "void", ["pointer"]);
  if (getCb === null || upRef === null || ctxFree === null) {
    markMissing(target, `${module.name} lacks SSL_CTX_get_keylog_callback, SSL_CTX_up_ref or SSL_CTX_free: `
      + "the callback could not be taken off again, so it is not installed");
    return false;
  }
  const common = {
    name: module.name,
    getFd: fn(module, "SSL_get_fd", "int", ["pointer"]),
    servername: fn(module, "SSL_get_servername", "pointer", ["pointer", "int"]),
  };
  const lib: KeylogLib = {
    ...common,
    setCb: new NativeFunction(setAddr, "void", ["pointer", "pointer"]),
    getCb,
    upRef,
    ctxFree,
    getCtx: fn(module, "SSL_get_SSL_CTX", "pointer", ["pointer"]),
    callback: new NativeCallback((ssl: NativePointer, line: NativePointer) => {
      try {
        emitLine(common, ssl, line.readCString() ?? "", "keylog-callback");
      } catch (e) {
        reportError(`${module.name}!keylog callback`, e);
      }
      try {
        chain(lib, ssl, line);
      } catch (e) {
        reportError(`${module.name}!application keylog callback`, e);
      }
    }, "void", ["pointer", "pointer"]),
    ctxs: new Map(),
  };
  try {
    Interceptor.attach(setAddr, {
      onEnter(args) {
        if (selfCall) {
          return;
        }
        try {
          // the application sets its own: remember it, install ours instead (ours chains to it)
          if (!args[1].equals(lib.callback) && !args[0].isNull()) {
            track(lib, args[0], args[1]);
            args[1] = lib.callback;
          }
        } catch (e) {
          reportError(`${module.name}!SSL_CTX_set_keylog_callback.onEnter`, e);
        }
      },
    });
    attach(module, "SSL_CTX_new", {
      onLeave(retval) {
        ensure(lib, retval);
      },
    });
    attach(module, "SSL_new", {
      onEnter(args) {
        ensure(lib, args[0]);
      },
    });
    for (const name of ["SSL_do_handshake", "SSL_connect", "SSL_accept"]) {
      attach(module, name, {
        onEnter(args) {
          if (lib.getCtx !== null) {
            ensure(lib, lib.getCtx(args[0]));
          }
        },
      });
    }
  } catch (e) {
    markMissing(target, `Interceptor.attach failed: ${e}`);
    return false;
  }
  libs.push(lib);
  markHooked(target);
  clearMissing("native:SSL_CTX_set_keylog_callback");
  return true;
}

/** OpenSSL 1.1.0: no key-log callback, but the client random and the master key can be read
 * after a handshake. OpenSSL 1.0.x: nothing exported to read them with (not extracted). */
function hookSessionFallback(module: Module): boolean {
  const target = `native:${module.name}!SSL_CTX_set_keylog_callback`;
  const getRandom = fn(module, "SSL_get_client_random", "size_t", ["pointer", "pointer", "size_t"]);
  const getSession = fn(module, "SSL_get_session", "pointer", ["pointer"]);
  const getMaster = fn(module, "SSL_SESSION_get_master_key", "size_t", ["pointer", "pointer", "size_t"]);
  if (getRandom === null || getSession === null || getMaster === null) {
    markMissing(target, `${module.name} has no key-log callback (OpenSSL < 1.1.1) and no SSL_get_client_random/`
      + "SSL_SESSION_get_master_key (OpenSSL 1.0.x, as Android 4.4's 1.0.1): TLS secrets not extracted");
    return false;
  }
  const common = {
    name: module.name,
    getFd: fn(module, "SSL_get_fd", "int", ["pointer"]),
    servername: fn(module, "SSL_get_servername", "pointer", ["pointer", "int"]),
  };
  const seen = new Set<string>();
  const read = (ssl: NativePointer): void => {
    const cr = Memory.alloc(32);
    const mk = Memory.alloc(48);
    if (getRandom(ssl, cr, 32).valueOf() !== 32) {
      return;
    }
    const session = getSession(ssl);
    if (session.isNull() || getMaster(session, mk, 48).valueOf() !== 48) {
      return;
    }
    const hex = (p: NativePointer, n: number) => Array.from(new Uint8Array(p.readByteArray(n)!))
      .map((b) => b.toString(16).padStart(2, "0")).join("");
    const line = `CLIENT_RANDOM ${hex(cr, 32)} ${hex(mk, 48)}`;
    if (!seen.has(line)) {
      seen.add(line);
      emitLine(common, ssl, line, "session");
    }
  };
  let any = false;
  for (const name of ["SSL_do_handshake", "SSL_connect", "SSL_accept"]) {
    any = attach(module, name, {
      onEnter(args) {
        this.ssl = args[0];
      },
      onLeave(retval) {
        try {
          if (retval.toInt32() === 1) {
            read(this.ssl);
          }
        } catch (e) {
          reportError(`${module.name}!${name} master key`, e);
        }
      },
    }) || any;
  }
  if (any) {
    markHooked(`native:${module.name}!SSL_SESSION_get_master_key`);
    markMissing(target, `${module.name} has no key-log callback (OpenSSL 1.1.0): CLIENT_RANDOM read from the `
      + "session after each handshake (TLS 1.2 and older only)");
  }
  return any;
}

/** What Conscrypt's TLS secrets depend on, for the hook status (Java.available only). */
export function conscryptStatus(): void {
  const jc = Process.findModuleByName("libjavacrypto.so");
  if (jc === null) {
    return;
  }
  const sys = Process.findModuleByName("libssl.so");
  const target = "java:com.android.org.conscrypt (TLS secrets)";
  if (sys !== null && sys.findExportByName("SSL_CTX_set_keylog_callback") !== null
      && jc.enumerateImports().some((i) => i.name === "SSL_new")) {
    markHooked(target);
  } else {
    markMissing(target, "Conscrypt's BoringSSL is linked into libjavacrypto.so and exports no "
      + "SSL_CTX_set_keylog_callback (Android 10+ APEX): secrets not extracted");
  }
}

/** Puts every application's own callback back (or none) on the SSL_CTXs we changed. */
export function uninstallKeylog(): void {
  for (const lib of libs) {
    for (const [key, app] of lib.ctxs) {
      try {
        release(lib, ptr(key), app);
      } catch (e) {
        reportError(`${lib.name}!keylog uninstall`, e);
      }
    }
    lib.ctxs.clear();
  }
  libs.length = 0;
  appFns.clear();
}

export function secretsEmitted(): number {
  return emitted;
}
