// Native hooks, on every platform Frida runs on: TLS plaintext at the SSL_* API of whichever
// module exports it (OpenSSL's libssl.so.3 under CPython's _ssl, BoringSSL's libssl.so on Android,
// an app's own copy), and the socket calls of libc (connect, send, sendto, recv, recvfrom, and
// write when the fd is a socket). Libraries loaded later (Python imports _ssl on its first TLS
// connection; Android apps dlopen theirs) are hooked when they load, through a module observer.
//
// A call nested in another of the same family on the same thread is not reported twice (bionic's
// send() calls sendto(); BoringSSL's SSL_write_ex() calls SSL_write(); Conscrypt's Java
// SSL_write reaches libssl's): only the outermost call is.
import {
  clearMissing, emit, Endpoint, markHooked, markMissing, readNative, reportError,
} from "./events.js";
import { hookEvpModule, resetEvp } from "./evp.js";
import { hookKeylogModule, uninstallKeylog } from "./keylog.js";

export interface NetOptions {
  unixSockets?: boolean;     // also report AF_UNIX sockets (default: IP sockets only)
  sockets?: boolean;         // the libc socket hooks (default true)
  ssl?: boolean;             // the SSL_* hooks (default true)
  evp?: boolean;             // the EVP cipher hooks (default false: see evp.ts)
  keylog?: boolean;          // TLS secrets as tls-secret events (default true with ssl; see keylog.ts)
}

let keylog = true;

const INET_TYPES = new Set(["tcp", "udp", "tcp6", "udp6"]);
let unixSockets = false;

// --- per-thread nesting ------------------------------------------------------------------------
const depth = new Map<string, number>();

/** Enter a hook family on this thread; true if this is the outermost call (the one to report). */
export function enterFamily(family: string, tid: number): boolean {
  const key = `${family}/${tid}`;
  const d = depth.get(key) ?? 0;
  depth.set(key, d + 1);
  return d === 0;
}

export function leaveFamily(family: string, tid: number): void {
  const key = `${family}/${tid}`;
  const d = (depth.get(key) ?? 1) - 1;
  if (d <= 0) {
    depth.delete(key);
  } else {
    depth.set(key, d);
  }
}

// --- sockets -----------------------------------------------------------------------------------
export interface SocketInfo {
  socket_type: string | null;
  local: Endpoint | null;
  peer: Endpoint | null;
}

function endpoint(address: SocketEndpointAddress | null): Endpoint | null {
  if (address === null) {
    return null;
  }
  if ("path" in address) {
    return { path: address.path };
  }
  return { ip: address.ip, port: address.port };
}

export function socketInfo(fd: number): SocketInfo {
  if (fd < 0) {
    return { socket_type: null, local: null, peer: null };
  }
  const type = Socket.type(fd);
  if (type === null) {
    return { socket_type: null, local: null, peer: null };
  }
  return { socket_type: type, local: endpoint(Socket.localAddress(fd)), peer: endpoint(Socket.peerAddress(fd)) };
}

function reported(type: string | null): boolean {
  return type !== null && (INET_TYPES.has(type) || (unixSockets && type.startsWith("unix")));
}

const isDarwin = Process.platform === "darwin";

function hex16(bytes: Uint8Array, i: number): number {
  return (bytes[i] << 8) | bytes[i + 1];
}

function ipv6Text(bytes: Uint8Array): string {
  const words: number[] = [];
  for (let i = 0; i < 16; i += 2) {
    words.push(hex16(bytes, i));
  }
  if (words.slice(0, 5).every((w) => w === 0) && words[5] === 0xffff) {
    return `::ffff:${bytes[12]}.${bytes[13]}.${bytes[14]}.${bytes[15]}`;
  }
  // the longest run of zero words (2 or more) becomes "::" (RFC 5952)
  let best = -1;
  let bestLen = 1;
  for (let i = 0; i < 8;) {
    if (words[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && words[j] === 0) {
      j++;
    }
    if (j - i > bestLen) {
      best = i;
      bestLen = j - i;
    }
    i = j;
  }
  const text = words.map((w) => w.toString(16));
  if (best < 0) {
    return text.join(":");
  }
  return `${text.slice(0, best).join(":")}::${text.slice(best + bestLen).join(":")}`;
}

/** A sockaddr as an endpoint (IPv4, IPv6, UNIX); null for a null pointer or another family. */
export function parseSockaddr(address: NativePointer, length: number): Endpoint | null {
  if (address.isNull() || length < 2) {
    return null;
  }
  const family = isDarwin ? address.add(1).readU8() : address.readU16();
  const AF_INET6 = isDarwin ? 30 : 10;
  if (family === 2 && length >= 8) {
    const b = new Uint8Array(address.readByteArray(8)!);
    return { ip: `${b[4]}.${b[5]}.${b[6]}.${b[7]}`, port: hex16(b, 2) };
  }
  if (family === AF_INET6 && length >= 24) {
    const b = new Uint8Array(address.readByteArray(24)!);
    return { ip: ipv6Text(b.slice(8, 24)), port: hex16(b, 2) };
  }
  if (family === 1) {
    const n = Math.max(0, Math.min(length, 110) - 2);
    const raw = new Uint8Array(address.add(2).readByteArray(n)!);
    if (raw.length > 0 && raw[0] === 0) {   // abstract namespace: "@name"
      return { path: "@" + String.fromCharCode(...raw.slice(1).filter((c) => c !== 0)) };
    }
    const end = raw.indexOf(0);
    return { path: String.fromCharCode(...(end < 0 ? raw : raw.slice(0, end))) };
  }
  return null;
}

function readSize(pointer: NativePointer): number {
  return Process.pointerSize === 8 ? pointer.readU64().toNumber() : pointer.readU32();
}

type SocketFn = {
  name: string;
  direction: "out" | "in";
  // where the remote address is: a sockaddr argument (index of address, of its length or of a
  // pointer to its length), or the socket's peer
  addr?: { index: number; lenIndex: number; lenIsPointer: boolean };
  writeOnly?: boolean;     // write(): reported only when the fd is a socket
};

const SOCKET_FNS: SocketFn[] = [
  { name: "send", direction: "out" },
  { name: "sendto", direction: "out", addr: { index: 4, lenIndex: 5, lenIsPointer: false } },
  { name: "write", direction: "out", writeOnly: true },
  { name: "recv", direction: "in" },
  { name: "recvfrom", direction: "in", addr: { index: 4, lenIndex: 5, lenIsPointer: true } },
];

function hookSocketFn(spec: SocketFn): void {
  const address = Module.findGlobalExportByName(spec.name);
  if (address === null) {
    markMissing(`native:${spec.name}`, "not exported by any loaded module");
    return;
  }
  const owner = Process.findModuleByAddress(address)?.name ?? "?";
  const family = spec.direction === "out" ? "sock-out" : "sock-in";
  Interceptor.attach(address, {
    onEnter(args) {
      this.outer = enterFamily(family, this.threadId);
      if (!this.outer) {
        return;
      }
      try {
        this.fd = args[0].toInt32();
        this.type = Socket.type(this.fd);
        this.report = reported(this.type);
        if (!this.report) {
          return;
        }
        this.buf = args[1];
        if (spec.addr !== undefined) {
          this.addr = args[spec.addr.index];
          this.alen = args[spec.addr.lenIndex];
        }
      } catch (e) {
        this.report = false;
        reportError(`${spec.name}.onEnter`, e);
      }
    },
    onLeave(retval) {
      try {
        if (!this.outer || !this.report) {
          return;
        }
        const n = retval.toInt32();
        if (n < 0) {
          return;
        }
        let remote: Endpoint | null = null;
        if (spec.addr !== undefined && !this.addr.isNull()) {
          const len = spec.addr.lenIsPointer ? (this.alen.isNull() ? 0 : this.alen.readU32()) : this.alen.toInt32();
          remote = parseSockaddr(this.addr, len);
        }
        const info = socketInfo(this.fd);
        emit("socket", {
          fn: spec.name, direction: spec.direction, fd: this.fd, socket_type: info.socket_type,
          local: info.local, peer: remote ?? info.peer, length: n,
        }, [["data", n, readNative(this.buf, n)]]);
      } catch (e) {
        reportError(`${spec.name}.onLeave`, e);
      } finally {
        leaveFamily(family, this.threadId);
      }
    },
  });
  markHooked(`native:${owner}!${spec.name}`);
}

function hookConnect(): void {
  const address = Module.findGlobalExportByName("connect");
  if (address === null) {
    markMissing("native:connect", "not exported by any loaded module");
    return;
  }
  const owner = Process.findModuleByAddress(address)?.name ?? "?";
  Interceptor.attach(address, {
    onEnter(args) {
      this.outer = enterFamily("connect", this.threadId);
      if (!this.outer) {
        return;
      }
      try {
        this.fd = args[0].toInt32();
        this.peer = parseSockaddr(args[1], args[2].toInt32());
      } catch (e) {
        this.peer = null;
        reportError("connect.onEnter", e);
      }
    },
    onLeave(retval) {
      try {
        if (!this.outer) {
          return;
        }
        const info = socketInfo(this.fd);
        if (!reported(info.socket_type)) {
          return;
        }
        const ret = retval.toInt32();
        emit("connect", {
          fn: "connect", fd: this.fd, socket_type: info.socket_type, peer: this.peer ?? info.peer,
          local: info.local, ret, errno: ret < 0 ? this.errno : 0,
        });
      } catch (e) {
        reportError("connect.onLeave", e);
      } finally {
        leaveFamily("connect", this.threadId);
      }
    },
  });
  markHooked(`native:${owner}!connect`);
}

// --- TLS ---------------------------------------------------------------------------------------
const SSL_FNS: { name: string; direction: "out" | "in"; ex: boolean }[] = [
  { name: "SSL_write", direction: "out", ex: false },
  { name: "SSL_write_ex", direction: "out", ex: true },
  { name: "SSL_read", direction: "in", ex: false },
  { name: "SSL_read_ex", direction: "in", ex: true },
];

interface SslLib {
  name: string;
  getFd: NativeFunction<number, [NativePointerValue]> | null;
  servername: NativeFunction<NativePointer, [NativePointerValue, number]> | null;
}

const hookedAddresses = new Set<string>();

function helper(module: Module, name: string, ret: NativeFunctionReturnType,
                args: NativeFunctionArgumentType[]): NativeFunction<any, any> | null {
  const address = module.findExportByName(name);
  return address === null ? null : new NativeFunction(address, ret, args);
}

/** Where an SSL* writes: its fd's addresses and the SNI it asked for (client side). */
export function sslContext(lib: SslLib, ssl: NativePointer): SocketInfo & { fd: number; sni: string | null } {
  const fd = lib.getFd !== null ? lib.getFd(ssl) : -1;
  let sni: string | null = null;
  if (lib.servername !== null) {
    const name = lib.servername(ssl, 0);    // TLSEXT_NAMETYPE_host_name
    sni = name.isNull() ? null : name.readCString();
  }
  return { fd, sni, ...socketInfo(fd) };
}

function hookSslFn(lib: SslLib, address: NativePointer, spec: typeof SSL_FNS[number]): void {
  const family = spec.direction === "out" ? "ssl-out" : "ssl-in";
  Interceptor.attach(address, {
    onEnter(args) {
      this.outer = enterFamily(family, this.threadId);
      if (this.outer) {
        this.ssl = args[0];
        this.buf = args[1];
        this.done = spec.ex ? args[3] : null;
      }
    },
    onLeave(retval) {
      try {
        if (!this.outer) {
          return;
        }
        const r = retval.toInt32();
        let n: number;
        if (spec.ex) {
          if (r !== 1 || this.done.isNull()) {
            return;
          }
          n = readSize(this.done);
        } else {
          if (r <= 0) {
            return;
          }
          n = r;
        }
        const ctx = sslContext(lib, this.ssl);
        emit("ssl", {
          fn: spec.name, direction: spec.direction, module: lib.name, ssl: this.ssl.toString(), fd: ctx.fd,
          socket_type: ctx.socket_type, local: ctx.local, peer: ctx.peer, sni: ctx.sni, length: n,
        }, [["data", n, readNative(this.buf, n)]]);
      } catch (e) {
        reportError(`${lib.name}!${spec.name}`, e);
      } finally {
        leaveFamily(family, this.threadId);
      }
    },
  });
}

/** Hook the SSL_* API of one module if it exports it; true if anything new was hooked. */
function hookSslModule(module: Module): boolean {
  if (module.findExportByName("SSL_write") === null && module.findExportByName("SSL_read") === null
      && module.findExportByName("SSL_write_ex") === null) {
    if (/^libjavacrypto/.test(module.name)) {
      markMissing(`native:${module.name}!SSL_write`, "Conscrypt links BoringSSL statically (not exported): "
        + "its TLS is seen through the Java NativeCrypto hooks, when Java is available");
    }
    return false;
  }
  const lib: SslLib = {
    name: module.name,
    getFd: helper(module, "SSL_get_fd", "int", ["pointer"]),
    servername: helper(module, "SSL_get_servername", "pointer", ["pointer", "int"]),
  };
  let any = false;
  for (const spec of SSL_FNS) {
    const target = `native:${module.name}!${spec.name}`;
    const address = module.findExportByName(spec.name);
    if (address === null) {
      markMissing(target, `${module.name} does not export it`);
      continue;
    }
    // dlsym through a module's handle also finds its dependencies' symbols (_ssl*.so finds
    // libssl's): a function is hooked, and named, with the module that defines it
    const inside = address.compare(module.base) >= 0 && address.compare(module.base.add(module.size)) < 0;
    if (hookedAddresses.has(address.toString()) || !inside) {
      continue;
    }
    try {
      hookSslFn(lib, address, spec);
      hookedAddresses.add(address.toString());
      markHooked(target);
      clearMissing(`native:${spec.name}`);
      any = true;
    } catch (e) {
      markMissing(target, `Interceptor.attach failed: ${e}`);
    }
  }
  if (lib.getFd === null) {
    markMissing(`native:${module.name}!SSL_get_fd`, "no socket addresses on its events");
  }
  if (keylog && any) {
    try {
      hookKeylogModule(module);
    } catch (e) {
      markMissing(`native:${module.name}!SSL_CTX_set_keylog_callback`, `${e}`);
    }
  }
  return any;
}

let observer: ModuleObserver | null = null;

/**
 * Install the native hooks. `onLateModule` is called when a module loaded after this call adds
 * hooks (the caller re-emits the hook status).
 */
export function installNative(options: NetOptions, onLateModule: (module: string) => void): void {
  unixSockets = options.unixSockets === true;
  if (options.sockets !== false) {
    for (const spec of SOCKET_FNS) {
      try {
        hookSocketFn(spec);
      } catch (e) {
        markMissing(`native:${spec.name}`, `Interceptor.attach failed: ${e}`);
      }
    }
    try {
      hookConnect();
    } catch (e) {
      markMissing("native:connect", `Interceptor.attach failed: ${e}`);
    }
  }
  const ssl = options.ssl !== false;
  const evp = options.evp === true;
  keylog = ssl && options.keylog !== false;
  if (ssl) {
    for (const spec of SSL_FNS) {
      markMissing(`native:${spec.name}`, "no loaded module exports it yet (hooked when one loads)");
    }
  }
  if (keylog) {
    markMissing("native:SSL_CTX_set_keylog_callback", "no loaded TLS library yet (hooked when one loads)");
  }
  if (evp) {
    markMissing("native:EVP_EncryptUpdate", "no loaded module exports it yet (hooked when one loads)");
  }
  if (ssl || evp) {
    let initial = true;
    observer = Process.attachModuleObserver({
      onAdded(module: Module) {
        try {
          let added = ssl && hookSslModule(module);
          if (evp && hookEvpModule(module)) {
            clearMissing("native:EVP_EncryptUpdate");
            added = true;
          }
          if (added && !initial) {
            onLateModule(module.name);
          }
        } catch (e) {
          reportError(`module ${module.name}`, e);
        }
      },
    });
    initial = false;
  }
}

export function uninstallNative(): void {
  if (observer !== null) {
    observer.detach();
    observer = null;
  }
  uninstallKeylog();        // before anything else: no SSL_CTX may keep our callback
  Interceptor.detachAll();
  hookedAddresses.clear();
  resetEvp();
  depth.clear();
}

