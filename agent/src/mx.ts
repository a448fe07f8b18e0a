// Cloud Messaging switched from inside com.android.mms, where the permission
// com.xiaomi.permission.CLOUD_MANAGER holds: start MxActivateService with ENABLE_MX / DISABLE_MX
// (extras sim_index, extra_manually) and wait for its ENBALE_RESULT (sic) broadcast.
import Java from "frida-java-bridge";

const SERVICE = "com.xiaomi.mms.transaction.MxActivateService";
const RESULT = "com.xiaomi.mms.action.ENBALE_RESULT";

export interface MxResult {
  java: boolean;
  started: boolean;
  result?: { success: boolean; sim_index: number };
  error?: string;
}

export function setCloudMessaging(on: boolean, sim: number, timeoutMs: number): Promise<MxResult> {
  if (!Java.available) {
    return Promise.resolve({ java: false, started: false, error: "no Java runtime in this process" });
  }
  return new Promise((resolve) => {
    Java.perform(() => {
      let done = false;
      const finish = (r: MxResult) => {
        if (!done) {
          done = true;
          resolve(r);
        }
      };
      try {
        const app = Java.use("android.app.ActivityThread").currentApplication();
        const ctx = app.getApplicationContext();
        const Intent = Java.use("android.content.Intent");
        const IntentFilter = Java.use("android.content.IntentFilter");
        const Receiver = Java.registerClass({
          name: "hostctl.MxResultReceiver" + Date.now(),
          superClass: Java.use("android.content.BroadcastReceiver"),
          methods: {
            onReceive(_context: any, intent: any) {
              finish({
                java: true, started: true,
                result: { success: intent.getBooleanExtra("success", false), sim_index: intent.getIntExtra("sim_index", -1) },
              });
            },
          },
        });
        const receiver = Receiver.$new();
        ctx.registerReceiver(receiver, IntentFilter.$new(RESULT));
        const intent = Intent.$new(on ? "com.xiaomi.mms.action.ENABLE_MX" : "com.xiaomi.mms.action.DISABLE_MX");
        intent.setClassName(ctx.getPackageName(), SERVICE);
        intent.putExtra("sim_index", sim);
        intent.putExtra("extra_manually", true);
        ctx.startService(intent);
        setTimeout(() => finish({ java: true, started: true, error: `no ${RESULT} within ${timeoutMs} ms` }), timeoutMs);
      } catch (e) {
        finish({ java: true, started: false, error: `${e}` });
      }
    });
  });
}
