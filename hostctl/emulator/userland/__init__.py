"""The emulated handset's userland: Android's real shell (mksh) and toybox in a per-handset
sandbox (``sandbox``: the spec as data; ``runtime``: the running sandbox and its launcher), and
Android's framework tools as programs that forward to the handset model (``rpc``, ``programs``)."""
