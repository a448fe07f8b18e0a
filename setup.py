"""The build hook: a wheel carries the Frida agent bundle (``hostctl/_agent.js``).

Everything else about the package is in pyproject.toml. ``build_py`` compiles ``agent/`` with
``frida.Compiler`` (``frida`` is a build requirement) over the npm packages installed from
``agent/package-lock.json`` (see ``hostctl/agent.py: build_for_package``). An editable install
(``pip install -e .``, what ``make bootstrap`` does) skips it: the checkout's ``make agent`` writes
``agent/_agent.js``, which hostctl finds there.

``ext_modules``: the wire analyser's compiled fast path (``hostctl/wire/_flowwalk.pyx``, Cython;
``Cython`` is a build requirement). It is optional: where no C compiler is found the build goes
on without it and hostctl runs the same loop in Python (``hostctl.wire.flows.COMPILED`` says
which). Editable installs build it in place.
"""

import importlib.util
import sys
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext
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


class OptionalBuildExt(build_ext):
    """The compiled fast path is an accelerator: a machine without a C compiler (or Python's
    headers) still installs hostctl, with the pure-Python loop."""

    def run(self):
        try:
            super().run()
        except Exception as exc:  # noqa: BLE001 - distutils raises several kinds
            print(f"warning: hostctl's compiled wire fast path was not built ({exc}); using Python", file=sys.stderr)

    def build_extension(self, ext):
        try:
            super().build_extension(ext)
        except Exception as exc:  # noqa: BLE001
            print(f"warning: {ext.name} was not built ({exc}); hostctl uses its Python loop", file=sys.stderr)


def _extensions():
    try:
        from Cython.Build import cythonize
    except ImportError:  # a build without Cython: the pure-Python loop
        print("warning: Cython is not installed: hostctl's wire fast path is not compiled", file=sys.stderr)
        return []
    return cythonize(
        [Extension("hostctl.wire._flowwalk", ["hostctl/wire/_flowwalk.pyx"])],
        compiler_directives={"language_level": "3"},
        quiet=True,
    )


setup(cmdclass={"build_py": BuildPyWithAgent, "build_ext": OptionalBuildExt}, ext_modules=_extensions())
