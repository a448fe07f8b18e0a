"""A stock Mobly test (default AndroidDevice config: logcat service on) against the emulated
Android 11 handset: props, a screenshot (PNG of the current screen), a bug report, the current
user and a reboot (with the logcat service stopped and restarted around it, as Mobly does).

Needs issue 12's shell? No: Mobly's commands (`adb logcat -c` = `export ..; exec logcat -c`,
`getprop`, `screencap -p '' PATH`, `bugreportz`, `rm`) run on today's shell too.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from hostctl.emulator.lab import LabConfig, LabThread, adb_binary

MOBLY_TEST = textwrap.dedent("""
    import zipfile
    from mobly import asserts, base_test, test_runner
    from mobly.controllers import android_device
    from PIL import Image


    class EmulatedHandsetTest(base_test.BaseTestClass):
        def setup_class(self):
            self.ads = self.register_controller(android_device)
            self.dut = self.ads[0]

        def test_props(self):
            asserts.assert_equal(self.dut.build_info["build_version_sdk"], "30")
            asserts.assert_equal(self.dut.adb.getprop("ro.product.model"), "M2003J6B2G")

        def test_screenshot(self):
            path = self.dut.take_screenshot(self.log_path)
            img = Image.open(path)
            asserts.assert_equal((img.format, img.size), ("PNG", (720, 1280)))

        def test_current_user_and_reboot(self):
            asserts.assert_equal(self.dut.adb.current_user_id, 0)     # `am get-current-user` on 7.0+
            self.dut.reboot()                                           # offline, back, boot_completed
            asserts.assert_equal(self.dut.adb.getprop("sys.boot_completed"), "1")
            asserts.assert_true(self.dut.is_boot_completed(), "boot not completed")

        def test_bug_report(self):
            path = self.dut.take_bug_report(test_name="probe", destination=self.log_path)
            with zipfile.ZipFile(path) as zf:
                main = zf.read("main_entry.txt").decode()
                asserts.assert_true("DUMP OF SERVICE activity:" in zf.read(main).decode(), "no dumpsys")


    if __name__ == "__main__":
        test_runner.main()
""")


@pytest.fixture(scope="module")
def lab11(adb_port, tmp_path_factory):
    home = tmp_path_factory.mktemp("hostctl-home-mobly")
    cfg = LabConfig(
        adb_port=adb_port,
        handsets=1,
        home=home,
        profile="miui-12-android-11",
        modem=False,
        relay=False,
        consoles=False,
        cloud=False,
        wiretap=False,
        pcapdroid=False,
    )
    with LabThread(cfg) as lt:
        yield lt


def test_stock_mobly_test_passes(lab11, adb_port, tmp_path):
    serial = lab11.lab.handsets[0].serial
    model = lab11.lab.handsets[0].handset.getprop("ro.product.model")
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "adb").symlink_to(adb_binary())  # Mobly runs `adb` from PATH
    script = tmp_path / "emulated_test.py"
    script.write_text(MOBLY_TEST.replace("M2003J6B2G", model))
    logs = tmp_path / "logs"
    config = tmp_path / "config.yaml"
    config.write_text(
        textwrap.dedent(f"""
        TestBeds:
          - Name: Emulated
            Controllers:
              AndroidDevice:
                - serial: "{serial}"
        MoblyParams:
          LogPath: {logs}
    """)
    )
    env = dict(os.environ, PATH=f"{bindir}{os.pathsep}{os.environ['PATH']}", ANDROID_ADB_SERVER_PORT=str(adb_port))
    r = subprocess.run(
        [sys.executable, str(script), "-c", str(config)], env=env, capture_output=True, timeout=240, cwd=tmp_path
    )
    summary = next(logs.rglob("test_summary.yaml"), None)
    text = summary.read_text() if summary else ""
    assert r.returncode == 0, (r.stdout[-3000:], r.stderr[-3000:], text[-3000:])
    assert text.count("Result: PASS") == 4
