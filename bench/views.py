"""The baseline the write endpoint is measured against: a bare Django view doing the same
INSERT (only mounted when WR_BENCH_VIEWS is true)."""

from __future__ import annotations

import json
import uuid

from django.http import HttpRequest, JsonResponse
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt

from hooks.models import Request


@csrf_exempt
def bare_insert(request: HttpRequest, hook_id: str) -> JsonResponse:
    body = request.body
    json.loads(body)
    row = Request.objects.create(
        uuid=uuid.uuid4(),
        hook_id=hook_id,
        method=request.method or "POST",
        headers=dict(request.headers),
        query={},
        content_type=request.content_type or "",
        body=body,
        received_at=timezone.now(),
    )
    return JsonResponse({"id": str(row.uuid)}, status=202)
