// hostctl's Frida agent. Entry point: registers the RPC exports the host calls. Loading it hooks
// nothing; startTrace() does (see trace.ts).
import { setCloudMessaging } from "./mx.js";
import { readTelephony, runtimeInfo } from "./telephony.js";
import { startTrace, stopTrace } from "./trace.js";

rpc.exports = {
  runtimeInfo,
  readTelephony,
  setCloudMessaging,
  startTrace,
  stopTrace,
};
