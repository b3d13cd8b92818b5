"""Code that runs in the fork server and in the sandboxed children (never imports Django).

The fork server puts this directory itself on `sys.path`, so inside the sandbox these modules are
top-level: `webreducer` (the user's helper module), `wr_child` (the call loop), `wr_forkserver`.
"""
