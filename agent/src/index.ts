// hostctl's Frida agent. Entry point: registers the RPC exports the host calls.
import { readTelephony, runtimeInfo } from "./telephony.js";

rpc.exports = {
  runtimeInfo,
  readTelephony,
};
