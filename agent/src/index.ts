// hostctl's Frida agent. Entry point: registers the RPC exports the host calls.
import { setCloudMessaging } from "./mx.js";
import { readTelephony, runtimeInfo } from "./telephony.js";

rpc.exports = {
  runtimeInfo,
  readTelephony,
  setCloudMessaging,
};
