from __future__ import annotations

from webreducer_cli.main import main

main()
