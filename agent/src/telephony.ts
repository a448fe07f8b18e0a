// Reads the SIM-slot identity through the Android framework, from inside com.android.phone
// (which holds every telephony permission). Each call is guarded: a method missing on this
// release, or refused, becomes an entry in `errors` instead of an exception.
import Java from "frida-java-bridge";

export interface SlotRow {
  slot: number;
  imei?: string;
  imei_via?: string;
  imsi?: string;
  imsi_via?: string;
  iccid?: string;
  iccid_via?: string;
  msisdn?: string;
  msisdn_via?: string;
  sim_operator?: string;
  mcc_mnc?: string;
  errors: string[];
}

export interface TelephonyResult {
  java: boolean;
  process: string;
  sdk?: number;
  slots: SlotRow[];
  errors: string[];
}

export function runtimeInfo(): { java: boolean; arch: string; platform: string; pid: number } {
  return { java: Java.available, arch: Process.arch, platform: Process.platform, pid: Process.id };
}

type Getter = () => unknown;

function attempt(row: SlotRow, field: "imei" | "imsi" | "iccid" | "msisdn", tries: [string, Getter][]): void {
  for (const [via, get] of tries) {
    try {
      const value = get();
      if (value !== null && value !== undefined && `${value}` !== "") {
        row[field] = `${value}`;
        row[`${field}_via` as "imei_via"] = via;
        return;
      }
      row.errors.push(`${field}: ${via} returned nothing`);
    } catch (e) {
      row.errors.push(`${field}: ${via}: ${e}`);
    }
  }
}

function read(): TelephonyResult {
  const result: TelephonyResult = { java: true, process: "", slots: [], errors: [] };
  const Build = Java.use("android.os.Build$VERSION");
  const sdk: number = Build.SDK_INT.value;
  result.sdk = sdk;
  const app = Java.use("android.app.ActivityThread").currentApplication();
  if (app === null) {
    result.errors.push("no Application in this process (is it com.android.phone?)");
    return result;
  }
  const ctx = app.getApplicationContext();
  result.process = `${ctx.getPackageName()}`;
  const TM = Java.use("android.telephony.TelephonyManager");
  const tm = Java.cast(ctx.getSystemService("phone"), TM);
  let count = 1;
  try {
    count = tm.getPhoneCount();   // public from 23; a hidden method with the same name on 5.x
  } catch (e) {
    result.errors.push(`getPhoneCount: ${e}`);
  }
  let SM: any = null;
  if (sdk >= 22) {
    try {
      SM = Java.use("android.telephony.SubscriptionManager").from(ctx);
    } catch (e) {
      result.errors.push(`SubscriptionManager: ${e}`);
    }
  }
  for (let slot = 0; slot < count; slot++) {
    const row: SlotRow = { slot, errors: [] };
    let info: any = null;
    if (SM !== null) {
      try {
        info = SM.getActiveSubscriptionInfoForSimSlotIndex(slot);
      } catch (e) {
        row.errors.push(`getActiveSubscriptionInfoForSimSlotIndex(${slot}): ${e}`);
      }
    }
    let subId: number | null = null;
    let forSub: any = null;
    try {
      subId = info !== null ? info.getSubscriptionId() : null;
      forSub = subId !== null && sdk >= 24 ? tm.createForSubscriptionId(subId) : null;
    } catch (e) {
      row.errors.push(`subscription of slot ${slot}: ${e}`);
    }
    attempt(row, "imei", [
      [`TelephonyManager.getImei(${slot})`, () => (sdk >= 26 ? tm.getImei(slot) : null)],
      [`TelephonyManager.getDeviceId(${slot})`, () => (sdk >= 23 ? tm.getDeviceId(slot) : null)],
      ["TelephonyManager.getDeviceId()", () => (slot === 0 ? tm.getDeviceId() : null)],
    ]);
    attempt(row, "imsi", [
      [`TelephonyManager(sub ${subId}).getSubscriberId()`, () => (forSub !== null ? forSub.getSubscriberId() : null)],
      [`TelephonyManager.getSubscriberId(${subId})`, () => (subId !== null && sdk >= 22 ? tm.getSubscriberId(subId) : null)],
      ["TelephonyManager.getSubscriberId()", () => (slot === 0 ? tm.getSubscriberId() : null)],
    ]);
    attempt(row, "iccid", [
      ["SubscriptionInfo.getIccId()", () => (info !== null ? info.getIccId() : null)],
      ["TelephonyManager.getSimSerialNumber()", () => (slot === 0 ? tm.getSimSerialNumber() : null)],
    ]);
    attempt(row, "msisdn", [
      ["SubscriptionInfo.getNumber()", () => (info !== null ? info.getNumber() : null)],
      ["TelephonyManager.getLine1Number()", () => (slot === 0 ? tm.getLine1Number() : null)],
    ]);
    try {
      if (info !== null) {
        row.sim_operator = `${info.getCarrierName()}`;
        // the string forms keep a 3-digit MNC's leading zeros; the ints (before 29) cannot
        row.mcc_mnc = sdk >= 29 ? `${info.getMccString()}${info.getMncString()}`
          : `${info.getMcc()}${String(info.getMnc()).padStart(2, "0")}`;
      }
    } catch (e) {
      row.errors.push(`operator: ${e}`);
    }
    result.slots.push(row);
  }
  return result;
}

export function readTelephony(): Promise<TelephonyResult> {
  if (!Java.available) {
    return Promise.resolve({
      java: false, process: "", slots: [],
      errors: ["no Java runtime in this process (not an Android app process)"],
    });
  }
  return new Promise((resolve, reject) => {
    Java.perform(() => {
      try {
        resolve(read());
      } catch (e) {
        reject(e);
      }
    });
  });
}
