"""``dumpsys`` sections real tools parse, in each release's layout.

Sources (AOSP frameworks/base, per release branch: kitkat-release = 4.4, lollipop-release = 5.0,
android11-release = 11):
- window: services/java/com/android/server/wm/WindowManagerService.java ``dumpWindowsNoHeaderLocked``
  (4.4/5.0: ``mCurrentFocus=`` and ``mFocusedApp=AppWindowToken{.. token=Token{.. ActivityRecord{..}}}``);
  11: services/core/java/com/android/server/wm/DisplayContent.java ``dump`` (``mFocusedApp=ActivityRecord{..}``),
  ``WindowState.toString`` = ``Window{hash u0 title}``.
- activity: services/java/com/android/server/am/ActivityStackSupervisor.java ``dumpActivitiesLocked`` /
  ActivityStack.java ``dumpActivitiesLocked`` (4.4 ``Stack #0:`` + ``Run #0:``; 5.0 adds
  ``Display #0 (activities from top to bottom):`` and ``mResumedActivity:``);
  11: services/core/java/com/android/server/wm/RootWindowContainer.java ``dumpActivities`` and
  ActivityStack.java (``Stack #N: type=standard mode=fullscreen``, ``* Hist #0:``,
  ``ResumedActivity:``); Task.toString's ``A=`` is the task affinity, which 11's
  ActivityRecord.computeTaskAffinity prefixes with the app's uid (``A=10001:pkg``). ``dumpsys activity top``: ActivityManagerService.dumpActivity
  (``TASK <affinity> id=N`` [11: `` userId=0``], ``ACTIVITY pkg/.Cls hash pid=N``).
- power: services/core/java/com/android/server/power/PowerManagerService.java ``dumpInternal``
  (``mWakefulness=Awake``, ``mHoldingDisplaySuspendBlocker=true`` while the screen is on).
- battery: services/core/java/com/android/server/BatteryService.java ``dumpInternal``
  (``Max charging current`` from 7.0, ``Max charging voltage``/``Charge counter`` from 8.0).
- display: services/core/java/com/android/server/display/DisplayManagerService.java ``dumpInternal``
  (``mDefaultViewport=DisplayViewport{valid=true, displayId=0, orientation=0, ...}``).
- user: services/core/java/com/android/server/pm/UserManagerService.java ``dump``
  (``UserInfo{0:Owner:13}``; 11: ``UserInfo{0:Owner:c13} running``).
- meminfo: services/core/java/com/android/server/am/ActivityManagerService.java ``dumpApplicationMemoryUsage``.
Values the sources do not fix (hash ids, voltages, memory sizes) are stand-ins, stable per state.
"""

from __future__ import annotations

from .model import Battery, Display, Process, TopActivity, object_id, short_component

LOLLIPOP = 21
OREO = 26
NOUGAT = 24
Q = 29
R = 30


def window(sdk: int, top: TopActivity, section: str | None = None) -> str:
    """``dumpsys window [windows|displays]``. Up to 9 ``dumpWindowsNoHeaderLocked`` ends the
    windows section with ``mCurrentFocus=``/``mFocusedApp=``; from 10 focus is per display and
    those lines are printed by DisplayContent.dump under ``dumpsys window displays`` only (a real
    Android 11 ``dumpsys window windows``, tests/fixtures/real/dumpsys_window_windows_a11_appium.txt,
    has none), which is why adbutils' app_current falls back to ``dumpsys activity activities``.
    11's WindowState.dump says ``rootTaskId=`` and ``showForAllUsers=`` (same fixture)."""
    focus = top.window
    if sdk >= R:
        ids = f"mDisplayId=0 rootTaskId={top.task_id}"
        owner = f"    mOwnerUid={top.uid} showForAllUsers=false package={top.package} appop=NONE"
    else:
        ids = "mDisplayId=0 stackId=1"
        owner = f"    mOwnerUid={top.uid} mShowToOwnerOnly=true package={top.package} appop=NONE"
    windows = ["WINDOW MANAGER WINDOWS (dumpsys window windows)",
               f"  Window #0 {focus}:",
               # Session's constructor names it ``Session{hash pid:u0a<appId>}``
               f"    {ids} mSession=Session{{{object_id('sess', top.pid)} {top.pid}:{top.uid_text}}} "
               f"mClient=android.os.BinderProxy@{object_id('client', top.component)}",
               owner,
               "    mHasSurface=true isReadyForDisplay()=true",
               ""]
    if sdk < Q:
        token = (f"AppWindowToken{{{object_id('awt', top.component)} token=Token{{"
                 f"{object_id('tok', top.component)} {top.record}}}}}")
        return "\n".join(windows + [f"  mCurrentFocus={focus}", f"  mFocusedApp={token}"]) + "\n"
    displays = ["WINDOW MANAGER DISPLAY CONTENTS (dumpsys window displays)",
                "  Display: mDisplayId=0",
                f"  mCurrentFocus={focus}", f"  mFocusedApp={top.record}"]
    if section in ("windows", "w"):
        return "\n".join(windows) + "\n"
    if section in ("displays", "d"):
        return "\n".join(displays) + "\n"
    return "\n".join(windows + ["-" * 79] + displays) + "\n"


def activity_activities(sdk: int, top: TopActivity) -> str:
    rec = top.record
    out = ["ACTIVITY MANAGER ACTIVITIES (dumpsys activity activities)"]
    if sdk < LOLLIPOP:
        out += ["  Stack #0:",
                f"    Task id #{top.task_id}",
                f"      TaskRecord{{{object_id('task', top.component)} #{top.task_id} A {top.package} U 0}}",
                "    Running activities (most recent first):",
                f"      TaskRecord{{{object_id('task', top.component)} #{top.task_id} A {top.package} U 0}}",
                f"        Run #0: {rec}",
                "",
                f"  mFocusedStack=ActivityStack{{{object_id('stack', 0)} stackId=0}}",
                "  mSleepTimeout=false",
                f"  mCurTaskId={top.task_id}",
                f"  mResumedActivity: {rec}",
                f"  mFocusedActivity: {rec}"]
    elif sdk < Q:
        task = f"TaskRecord{{{object_id('task', top.component)} #{top.task_id} A={top.package} U=0 sz=1}}"
        out += ["Display #0 (activities from top to bottom):",
                "  Stack #1:",
                f"    Task id #{top.task_id}",
                f"      {task}",
                "    Running activities (most recent first):",
                f"      {task}",
                f"        Run #0: {rec}",
                "",
                f"    mResumedActivity: {rec}",
                "",
                f"  mFocusedActivity: {rec}",
                f"  mFocusedStack=ActivityStack{{{object_id('stack', 1)} stackId=1, 1 tasks}}"]
    else:
        task = (f"Task{{{object_id('task', top.component)} #{top.task_id} "
                f"visible=true type=standard mode=fullscreen translucent=false A={top.uid}:{top.package} U={top.user} "
                f"StackId={top.task_id} sz=1}}")
        out += ["Display #0 (activities from top to bottom):",
                "",
                f"  Stack #{top.task_id}: type=standard mode=fullscreen",
                "  isSleeping=false",
                "  mBounds=Rect(0, 0 - 0, 0)",
                f"    Task id #{top.task_id}",
                "    mBounds=Rect(0, 0 - 0, 0)",
                f"    * {task}",
                f"      * Hist #0: {rec}",
                "",
                f"    mResumedActivity: {rec}",
                "",
                f"  ResumedActivity: {rec}",
                "",
                f"  mFocusedStack={top.task_id}"]
    return "\n".join(out) + "\n"


def activity_top(sdk: int, top: TopActivity) -> str:
    task = f"TASK {top.package} id={top.task_id}" + (f" userId={top.user}" if sdk >= Q else "")
    pid = top.pid if top.pid else "(not running)"
    return f"{task}\n  ACTIVITY {short_component(top.component)} {object_id('ar', top.component)} pid={pid}\n"


def activity_processes(processes: list[Process]) -> str:
    out = ["ACTIVITY MANAGER RUNNING PROCESSES (dumpsys activity processes)"]
    for p in processes:
        out.append(f"    PID #{p.pid}: ProcessRecord{{{object_id('proc', p.pid)} {p.pid}:{p.name}/{p.user}}}")
    return "\n".join(out) + "\n"


def power(sdk: int, display: Display) -> str:
    on = display.screen_on
    wake = "Awake" if on else "Asleep"
    out = ["POWER MANAGER (dumpsys power)", "", "Power Manager State:",
           "  mDirty=0x0", f"  mWakefulness={wake}"]
    if sdk >= LOLLIPOP:
        out.append("  mWakefulnessChanging=false")
    out += ["  mIsPowered=true", "  mPlugType=2", "  mBatteryLevel=100",
            "  mStayOn=false", "  mDisplayReady=true",
            "  mHoldingWakeLockSuspendBlocker=false",
            f"  mHoldingDisplaySuspendBlocker={'true' if on else 'false'}"]
    if sdk >= LOLLIPOP:
        out.append(f"Display Power: state={'ON' if on else 'OFF'}")
    return "\n".join(out) + "\n"


def battery(sdk: int, b: Battery) -> str:
    t = lambda v: "true" if v else "false"  # noqa: E731
    out = ["Current Battery Service state:", f"  AC powered: {t(b.ac)}", f"  USB powered: {t(b.usb)}",
           f"  Wireless powered: {t(b.wireless)}"]
    if sdk >= NOUGAT:
        out.append("  Max charging current: 500000")
    if sdk >= OREO:
        out += ["  Max charging voltage: 5000000", "  Charge counter: 3000000"]
    out += [f"  status: {b.status}", f"  health: {b.health}", f"  present: {t(b.present)}",
            f"  level: {b.level}", f"  scale: {b.scale}", f"  voltage: {b.voltage}",
            f"  temperature: {b.temperature}", f"  technology: {b.technology}"]
    return "\n".join(out) + "\n"


def display(sdk: int, d: Display) -> str:
    w, h = (d.height, d.width) if d.rotation % 2 else (d.width, d.height)
    info = (f"DisplayInfo{{\"Built-in Screen\", uniqueId \"local:0\", app {w} x {h}, real {w} x {h}, "
            f"largest app {d.height} x {d.height}, smallest app {d.width} x {d.width}, "
            f"rotation {d.rotation}, density {d.density} ({d.density}.0 x {d.density}.0) dpi, "
            f"layerStack 0, type BUILT_IN, state {'ON' if d.screen_on else 'OFF'}, "
            f"FLAG_SECURE, FLAG_SUPPORTS_PROTECTED_BUFFERS}}")
    viewport = (f"DisplayViewport{{valid=true, displayId=0, orientation={d.rotation}, "
                f"logicalFrame=Rect(0, 0 - {w}, {h}), physicalFrame=Rect(0, 0 - {w}, {h}), "
                f"deviceWidth={w}, deviceHeight={h}}}")
    out = ["DISPLAY MANAGER (dumpsys display)", "  mOnlyCode=false", "  mSafeMode=false",
           "  mPendingTraversal=false", f"  mDefaultViewport={viewport}", "",
           "Display Devices: size=1", f"  DisplayDeviceInfo{{\"Built-in Screen\": {d.width} x {d.height}, "
           f"density {d.density}}}", "", "Logical Displays: size=1", "  Display 0:",
           f"    mBaseDisplayInfo={info}"]
    return "\n".join(out) + "\n"


def user(sdk: int) -> str:
    if sdk >= Q:
        return ("Users:\n  UserInfo{0:Owner:c13} running\n    State: RUNNING_UNLOCKED\n"
                "    Created: <unknown>\n    Last logged in: +1h0m0s0ms ago\n")
    flags = "13"
    return f"Users:\n  UserInfo{{0:Owner:{flags}}} serialNo=0\n    Created: <unknown>\n    Last logged in: +1h0m0s0ms ago\n"


def meminfo(sdk: int, processes: list[Process], uptime_ms: int) -> str:
    out = ["Applications Memory Usage (in Kilobytes):" if sdk >= LOLLIPOP else "Applications Memory Usage (kB):",
           f"Uptime: {uptime_ms} Realtime: {uptime_ms}", "", "Total PSS by process:"]
    total = 0
    for p in sorted(processes, key=lambda p: -p.pid):
        pss = 20000 + (p.pid * 37) % 60000
        total += pss
        out.append(f"{pss:>11,}K: {p.name} (pid {p.pid})")
    out += ["", "Total RAM: 2,876,532K (status normal)", f" Used PSS: {total:,}K", ""]
    return "\n".join(out) + "\n"
