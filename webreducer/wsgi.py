from __future__ import annotations

import os

from django.core.wsgi import get_wsgi_application

from webreducer.inputs.wsgi import InputLimits

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "webreducer.settings")

# Outermost: oversized, malformed or slow input is refused before Django reads any of it.
application = InputLimits(get_wsgi_application())
