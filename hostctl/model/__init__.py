"""Facts both sides share, with no I/O: what a firmware's protections do (`protections`) and
how identifiers check themselves (`identity`). Imported by ``wire``, ``audit`` and ``emulator``;
imports none of them (STYLE.md, habit 8: dependencies point one way)."""
