"""The build hook: a wheel carries the Frida agent bundle (``hostctl/_agent.js``).

Everything else about the package is in pyproject.toml. ``build_py`` compiles ``agent/`` with
``frida.Compiler`` (``frida`` is a build requirement) over the npm packages installed from
``agent/package-lock.json`` (see ``hostctl/agent.py: build_for_package``). An editable install
(``pip install -e .``, what ``make bootstrap`` does) skips it: the checkout's ``make agent`` writes
``agent/_agent.js``, which hostctl finds there.
"""

import importlib.util
import sys
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = Path(__file__).resolve().parent


def _agent_module():
    # by path: importing the hostctl package would need its run-time dependencies
    spec = importlib.util.spec_from_file_location("_hostctl_agent_build", HERE / "hostctl" / "agent.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class BuildPyWithAgent(build_py):
    def run(self):
        super().run()
        if getattr(self, "editable_mode", False):
            return
        agent = _agent_module()
        out = Path(self.build_lib) / "hostctl" / agent.BUNDLE
        try:
            agent.build_for_package(HERE / "agent", out, log=lambda m: print(m, file=sys.stderr))
        except agent.AgentBundleError as exc:
            raise SystemExit(f"error: cannot build the Frida agent bundle: {exc}") from None


setup(cmdclass={"build_py": BuildPyWithAgent})
