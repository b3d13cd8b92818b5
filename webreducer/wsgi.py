from __future__ import annotations

import os

from webreducer.handlers import wsgi_application
from webreducer.inputs.wsgi import InputLimits

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "webreducer.settings")

# Outermost: oversized, malformed or slow input is refused before Django reads any of it. The
# public write and read URLs then cross a shorter middleware chain (webreducer/handlers.py).
application = InputLimits(wsgi_application())
