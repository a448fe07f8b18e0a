// Optional native cipher hooks (startTrace({evp: true})): OpenSSL/BoringSSL's EVP cipher API in
// whichever module exports it (libcrypto.so.3 under CPython, libcrypto.so on Android). Init
// reports the cipher, direction, key and IV; update and final what went in and what came out
// (an update without an output buffer is AEAD additional data). Off by default: every TLS
// record of the process goes through EVP too, so a trace with it is large.
import { emit, markHooked, markMissing, Payload, readNative, reportError } from "./events.js";
import { enterFamily, leaveFamily } from "./net.js";

interface EvpLib {
  name: string;
  ctxCipher: NativeFunction<NativePointer, [NativePointerValue]> | null;
  keyLength: NativeFunction<number, [NativePointerValue]> | null;
  ivLength: NativeFunction<number, [NativePointerValue]> | null;
  encrypting: NativeFunction<number, [NativePointerValue]> | null;
  cipherName: ((cipher: NativePointer) => string | null);
}

function fn(module: Module, names: string[], ret: NativeFunctionReturnType,
            args: NativeFunctionArgumentType[]): NativeFunction<any, any> | null {
  for (const name of names) {
    const address = module.findExportByName(name);
    if (address !== null) {
      return new NativeFunction(address, ret, args);
    }
  }
  return null;
}

function library(module: Module): EvpLib {
  const getName = fn(module, ["EVP_CIPHER_get0_name"], "pointer", ["pointer"]);
  const nid = fn(module, ["EVP_CIPHER_get_nid", "EVP_CIPHER_nid"], "int", ["pointer"]);
  const nid2sn = fn(module, ["OBJ_nid2sn"], "pointer", ["int"]);
  return {
    name: module.name,
    // OpenSSL 3 names first, then the 1.1 / BoringSSL ones
    ctxCipher: fn(module, ["EVP_CIPHER_CTX_get0_cipher", "EVP_CIPHER_CTX_cipher"], "pointer", ["pointer"]),
    keyLength: fn(module, ["EVP_CIPHER_CTX_get_key_length", "EVP_CIPHER_CTX_key_length"], "int", ["pointer"]),
    ivLength: fn(module, ["EVP_CIPHER_CTX_get_iv_length", "EVP_CIPHER_CTX_iv_length"], "int", ["pointer"]),
    encrypting: fn(module, ["EVP_CIPHER_CTX_is_encrypting", "EVP_CIPHER_CTX_encrypting"], "int", ["pointer"]),
    cipherName(cipher: NativePointer): string | null {
      if (cipher.isNull()) {
        return null;
      }
      if (getName !== null) {
        const p = getName(cipher) as NativePointer;
        return p.isNull() ? null : p.readCString();
      }
      if (nid !== null && nid2sn !== null) {
        const p = nid2sn(nid(cipher)) as NativePointer;
        return p.isNull() ? null : p.readCString();
      }
      return null;
    },
  };
}

type Spec = { name: string; op: "init" | "update" | "final"; layout: string };
// layouts: init "ctx,cipher,impl,key,iv[,enc]" or "ctx,cipher,key,iv[,enc],params" (the _ex2 forms)
const SPECS: Spec[] = [
  { name: "EVP_CipherInit_ex", op: "init", layout: "ctx,cipher,impl,key,iv,enc" },
  { name: "EVP_EncryptInit_ex", op: "init", layout: "ctx,cipher,impl,key,iv" },
  { name: "EVP_DecryptInit_ex", op: "init", layout: "ctx,cipher,impl,key,iv" },
  { name: "EVP_CipherInit_ex2", op: "init", layout: "ctx,cipher,key,iv,enc" },
  { name: "EVP_EncryptInit_ex2", op: "init", layout: "ctx,cipher,key,iv" },
  { name: "EVP_DecryptInit_ex2", op: "init", layout: "ctx,cipher,key,iv" },
  { name: "EVP_CipherUpdate", op: "update", layout: "" },
  { name: "EVP_EncryptUpdate", op: "update", layout: "" },
  { name: "EVP_DecryptUpdate", op: "update", layout: "" },
  { name: "EVP_CipherFinal_ex", op: "final", layout: "" },
  { name: "EVP_EncryptFinal_ex", op: "final", layout: "" },
  { name: "EVP_DecryptFinal_ex", op: "final", layout: "" },
];

function hookOne(lib: EvpLib, address: NativePointer, spec: Spec): void {
  const family = `evp-${spec.op}`;
  const slots = spec.layout.split(",");
  Interceptor.attach(address, {
    onEnter(args) {
      this.outer = enterFamily(family, this.threadId);
      if (!this.outer) {
        return;
      }
      this.ctx = args[0];
      if (spec.op === "init") {
        this.cipher = args[slots.indexOf("cipher")];
        this.key = args[slots.indexOf("key")];
        this.iv = args[slots.indexOf("iv")];
      } else if (spec.op === "update") {
        this.out = args[1];
        this.outl = args[2];
        this.inl = args[4].toInt32();
        // read now: TLS encrypts and decrypts in place (out == in)
        this.inBytes = readNative(args[3], this.inl);
      } else {
        this.out = args[1];
        this.outl = args[2];
      }
    },
    onLeave(retval) {
      try {
        if (!this.outer || retval.toInt32() !== 1) {
          return;
        }
        const ctx: NativePointer = this.ctx;
        const cipher = lib.ctxCipher !== null ? lib.ctxCipher(ctx) as NativePointer : this.cipher ?? NULL;
        const encrypt = lib.encrypting !== null ? (lib.encrypting(ctx) as number) === 1 : null;
        const fields: Record<string, unknown> = {
          fn: spec.name, op: spec.op, module: lib.name, ctx: ctx.toString(),
          cipher: lib.cipherName(cipher), encrypt, aad: false,
        };
        const payloads: Payload[] = [];
        if (spec.op === "init") {
          const keyLen = lib.keyLength !== null ? lib.keyLength(ctx) as number : 0;
          const ivLen = lib.ivLength !== null ? lib.ivLength(ctx) as number : 0;
          if (!this.key.isNull() && keyLen > 0) {
            payloads.push(["key", keyLen, readNative(this.key, keyLen)]);
          }
          if (!this.iv.isNull() && ivLen > 0) {
            payloads.push(["iv", ivLen, readNative(this.iv, ivLen)]);
          }
        } else {
          const outLen = this.outl.isNull() ? 0 : this.outl.readS32();
          if (spec.op === "update") {
            fields.aad = this.out.isNull();
            payloads.push(["input", this.inl, this.inBytes]);
          }
          if (!this.out.isNull()) {
            payloads.push(["output", outLen, readNative(this.out, outLen)]);
          }
        }
        emit("evp", fields, payloads);
      } catch (e) {
        reportError(`${lib.name}!${spec.name}`, e);
      } finally {
        leaveFamily(family, this.threadId);
      }
    },
  });
}

const hooked = new Set<string>();

/** Hook one module's EVP cipher API if it exports it; true if anything new was hooked. */
export function hookEvpModule(module: Module): boolean {
  const probe = module.findExportByName("EVP_EncryptUpdate");
  if (probe === null || probe.compare(module.base) < 0 || probe.compare(module.base.add(module.size)) >= 0) {
    return false;      // not exported, or found through a dependency (hooked with its owner)
  }
  const lib = library(module);
  let any = false;
  for (const spec of SPECS) {
    const target = `native:${module.name}!${spec.name}`;
    const address = module.findExportByName(spec.name);
    if (address === null) {
      if (!spec.name.endsWith("_ex2")) {            // the _ex2 forms are OpenSSL 3 only
        markMissing(target, `${module.name} does not export it`);
      }
      continue;
    }
    if (hooked.has(address.toString())) {
      continue;
    }
    try {
      hookOne(lib, address, spec);
      hooked.add(address.toString());
      markHooked(target);
      any = true;
    } catch (e) {
      markMissing(target, `Interceptor.attach failed: ${e}`);
    }
  }
  return any;
}

export function resetEvp(): void {
  hooked.clear();
}
