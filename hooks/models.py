from __future__ import annotations

import secrets
import uuid

from django.conf import settings
from django.db import models
from django.db.models import Q


class Hook(models.Model):
    """A stateful endpoint: code, keys, the stored request history and the state it folds into."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="hooks"
    )
    name = models.CharField(max_length=100)
    description = models.TextField(blank=True, default="")
    draft_code = models.TextField(blank=True, default="")
    # The version that serves reads and applies new writes. Publishing builds another version's
    # state in the background and swaps this pointer when it has caught up (hooks.replay).
    live_version = models.ForeignKey(
        "Version", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # Operator overrides of the settings limits, e.g. {"max_body_bytes": 4194304}.
    limits = models.JSONField(default=dict, blank=True)
    is_paused = models.BooleanField(
        default=False, help_text="Paused by an operator: keys answer 404."
    )
    # Bumped whenever a secret is set or deleted: processes cache a hook's (encrypted) secrets
    # by it, so the write path needs no secrets query.
    secrets_version = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return self.name

    @property
    def live_id(self) -> int:
        """The live version's id: every hook has one from its creation (hook_create)."""
        assert self.live_version_id is not None
        return self.live_version_id

    def limit(self, name: str, default: int | float) -> int | float:
        value = self.limits.get(name, default)
        return value if isinstance(value, (int, float)) else default


class Version(models.Model):
    """A numbered, immutable copy of a hook's code. Drafts live on Hook.draft_code."""

    class Status(models.TextChoices):
        BUILDING = "building", "building"  # replaying history before it can go live
        PUBLISHED = "published", "published"  # the live version
        ARCHIVED = "archived", "archived"  # was live once, replaced since
        FAILED = "failed", "failed"  # its replay failed or was superseded; never went live

    hook = models.ForeignKey(Hook, on_delete=models.CASCADE, related_name="versions")
    number = models.PositiveIntegerField()
    code = models.TextField(blank=True, default="")
    # Which of reducer/responder/idempotency_key/query the code defines: the write and read
    # paths skip the sandbox entirely for the defaults.
    functions = models.JSONField(default=list, blank=True)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.BUILDING)
    author = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    # Replay (hooks.replay): a strict publish refuses to go live when any request failed.
    strict = models.BooleanField(default=False)
    rolled_back_from = models.PositiveIntegerField(null=True, blank=True)
    replay_failures = models.PositiveIntegerField(default=0)
    replay_error = models.TextField(blank=True, default="")
    # How far the replay has come: the highest request id it folded, and how many it folded.
    replay_cursor = models.BigIntegerField(default=0)
    replay_done = models.PositiveIntegerField(default=0)
    published_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-number"]
        constraints = [
            models.UniqueConstraint(fields=["hook", "number"], name="hooks_version_number_unique")
        ]

    def __str__(self) -> str:
        return f"{self.hook_id} v{self.number}"

    def defines(self, function: str) -> bool:
        return function in self.functions


MAIN_ROOM = ""  # the room of a request no `room` function or `?room=` names (None in the API)


class State(models.Model):
    """One room's state as one version has folded it so far (SPEC §1 "Rooms"). The live
    version's rows are what readers see; the main room's row (room "") exists from the
    version's creation, a named room's from its first write (hooks.rooms).

    `value` is the JSON text exactly as the sandbox produced it: the read path serves it
    without parsing, and JSON null stays distinct from "no row". `updated_at` is the room's
    last activity.
    """

    id = models.BigAutoField(primary_key=True)
    # No index of its own: the (version, room) constraint starts with it.
    version = models.ForeignKey(
        Version, on_delete=models.CASCADE, related_name="states", db_index=False
    )
    hook = models.ForeignKey(Hook, on_delete=models.CASCADE, related_name="states")
    room = models.CharField(max_length=200, blank=True, default=MAIN_ROOM)
    value = models.TextField(default="null")
    seq = models.BigIntegerField(default=0)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["version", "room"], name="hooks_state_room_unique")
        ]
        indexes = [
            # The rooms list, most recently active first.
            models.Index(fields=["version", "-updated_at"], name="hooks_state_activity"),
        ]

    def __str__(self) -> str:
        room = f" [{self.room}]" if self.room else ""
        return f"{self.version}{room} @ {self.seq}"

    @property
    def room_name(self) -> str | None:
        return self.room or None


def new_key_token() -> str:
    # 32 random bytes (256 bits), URL-safe: unguessable and fits in a path segment.
    return secrets.token_urlsafe(32)


class Key(models.Model):
    class Kind(models.TextChoices):
        READ = "read", "read"
        WRITE = "write", "write"

    hook = models.ForeignKey(Hook, on_delete=models.CASCADE, related_name="keys")
    kind = models.CharField(max_length=5, choices=Kind.choices)
    token = models.CharField(max_length=64, unique=True, default=new_key_token)
    label = models.CharField(max_length=100, blank=True, default="")
    is_paused = models.BooleanField(default=False)
    revoked_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at", "id"]

    def __str__(self) -> str:
        return f"{self.kind} key of {self.hook_id}"

    @property
    def is_usable(self) -> bool:
        return not self.is_paused and self.revoked_at is None


class Request(models.Model):
    """One request received on a write key, and what became of it.

    `seq` is given when the live version applies the request (hooks.pipeline), so accepted
    requests of a room are numbered 1, 2, 3… in the order they are folded, with no gaps.
    Rejected requests never get one. `room` is chosen when the request is stored (hooks.rooms)
    and again by each publish's replay.
    """

    class Outcome(models.TextChoices):
        PENDING = "pending", "pending"
        APPLIED = "applied", "applied"
        DUPLICATE = "duplicate", "duplicate"
        FAILED = "failed", "failed"
        REJECTED = "rejected", "rejected"

    id = models.BigAutoField(primary_key=True)
    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    # No index of its own: every index below starts with the hook (issue 18: each applied
    # request is rewritten once, with an entry in every index its new row version belongs to).
    hook = models.ForeignKey(
        Hook, on_delete=models.CASCADE, related_name="requests", db_index=False
    )
    key = models.ForeignKey(Key, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    room = models.CharField(max_length=200, blank=True, default=MAIN_ROOM)
    # The version whose code chose `room` (null: stored before rooms). A write routed by the
    # previous code while a publish switched is routed again by the new one (hooks.pipeline).
    routed_by = models.BigIntegerField(null=True, blank=True)
    seq = models.BigIntegerField(null=True, blank=True)
    method = models.CharField(max_length=16)
    path = models.TextField(blank=True, default="")
    headers = models.JSONField(default=dict)
    query = models.JSONField(default=dict)
    content_type = models.CharField(max_length=255, blank=True, default="")
    body = models.BinaryField(default=b"")
    received_at = models.DateTimeField()
    outcome = models.CharField(max_length=10, choices=Outcome.choices, default=Outcome.PENDING)
    response_status = models.PositiveSmallIntegerField(null=True, blank=True)
    # The answer the producer got: {"status", "headers", "body", "truncated"}, bounded and with
    # secrets masked (hooks.answers). Null for requests stored before it was kept.
    response = models.JSONField(null=True, blank=True)
    # Set on a copy made by "resend" (hooks.resend): the request it was copied from.
    resent_from = models.ForeignKey(
        "self",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        db_index=False,  # the partial index below: writes that are not copies never touch it
    )
    error = models.JSONField(null=True, blank=True)
    console = models.TextField(blank=True, default="")
    duration_ms = models.FloatField(null=True, blank=True)
    idempotency_key = models.CharField(max_length=255, null=True, blank=True)
    duplicate_of = models.ForeignKey(
        "self",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        db_index=False,  # the partial index below: only duplicates are in it
    )
    # JSON text of the state after this request, up to WR_LOG_STATE_MAX_BYTES.
    state_after = models.TextField(null=True, blank=True)
    applied_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]
        constraints = [
            # Deferrable, without a condition (NULL seqs never collide): a publish's switch
            # renumbers the history it re-partitioned in one statement (hooks.replay).
            models.UniqueConstraint(
                fields=["hook", "room", "seq"],
                name="hooks_request_room_seq_unique",
                deferrable=models.Deferrable.IMMEDIATE,
            )
        ]
        indexes = [
            # The worker's "what is left to apply" scan, and the reconciler's.
            models.Index(
                fields=["hook", "room", "id"],
                condition=Q(outcome="pending"),
                name="hooks_request_room_pending",
            ),
            # The request log, newest first, optionally filtered by outcome.
            models.Index(fields=["hook", "-id"], name="hooks_request_log"),
            # Not partial (without applied rows a fold would write one entry less per request):
            # the log filtered by "applied" would then have only hooks_request_log and a
            # filter, and the planner already weighs that against a backward scan of the
            # primary key past every other hook's newer rows (issue 18; docs/pipeline.md).
            models.Index(fields=["hook", "outcome", "-id"], name="hooks_request_log_outcome"),
            models.Index(fields=["hook", "room", "-id"], name="hooks_request_log_room"),
            models.Index(
                fields=["resent_from"],
                condition=Q(resent_from__isnull=False),
                name="hooks_request_resent_from",
            ),
            # What a deleted original's SET NULL looks up (on_delete): duplicates only.
            models.Index(
                fields=["duplicate_of"],
                condition=Q(duplicate_of__isnull=False),
                name="hooks_request_duplicate_of",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.method} {self.hook_id} #{self.seq or '-'}"

    @property
    def room_name(self) -> str | None:
        return self.room or None


class Connection(models.Model):
    """An open two-way socket (`WS /write/<key>/live`): who is in a room, for presence, across
    every web process (hooks.live.presence). The process that holds the socket renews
    `expires_at`; a row whose process died expires and another process folds its leave."""

    id = models.CharField(primary_key=True, max_length=32)  # uuid4 hex, shown to clients
    hook = models.ForeignKey(Hook, on_delete=models.CASCADE, related_name="connections")
    key = models.ForeignKey(Key, on_delete=models.CASCADE, related_name="+")
    room = models.CharField(max_length=200, blank=True, default="")  # "" is the main room
    name = models.CharField(max_length=64, blank=True, default="")  # "" when none was given
    # The socket's query string (without its read key): the JOIN/LEAVE requests' `query`.
    query = models.JSONField(default=dict, blank=True)
    process = models.CharField(max_length=100)
    joined_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField(db_index=True)

    class Meta:
        ordering = ["joined_at", "id"]
        indexes = [models.Index(fields=["hook", "room"], name="hooks_connection_room")]

    def __str__(self) -> str:
        return f"connection {self.id} of {self.hook_id}"


class ReplayOutcome(models.Model):
    """What a building version made of one request; copied onto the Request when it goes live."""

    version = models.ForeignKey(Version, on_delete=models.CASCADE, related_name="+")
    request = models.ForeignKey(Request, on_delete=models.CASCADE, related_name="+")
    # Where the version's `room` put the request, and its seq there.
    room = models.CharField(max_length=200, blank=True, default=MAIN_ROOM)
    seq = models.BigIntegerField(null=True, blank=True)
    outcome = models.CharField(max_length=10, choices=Request.Outcome.choices)
    error = models.JSONField(null=True, blank=True)
    console = models.TextField(blank=True, default="")
    duration_ms = models.FloatField(null=True, blank=True)
    idempotency_key = models.CharField(max_length=255, null=True, blank=True)
    duplicate_of = models.ForeignKey(
        Request, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    state_after = models.TextField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["version", "request"], name="hooks_replay_unique")
        ]
        indexes = [
            # A rebuild's rooms: each room's routed requests waiting to be folded, in seq order
            # (hooks.replay); only those, so a look for what is left never walks the folded.
            models.Index(
                fields=["version", "room", "seq"],
                name="hooks_replay_pending",
                condition=models.Q(outcome="pending"),
            ),
            # Whether one key is in several rooms (hooks.replay._parallel): keys are rare.
            models.Index(
                fields=["version", "idempotency_key"],
                name="hooks_replay_key",
                condition=models.Q(idempotency_key__isnull=False),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.version} {self.request_id}: {self.outcome}"


class LedgerEntry(models.Model):
    """The durable idempotency ledger: one row per key applied in a version's history."""

    version = models.ForeignKey(Version, on_delete=models.CASCADE, related_name="ledger")
    key = models.CharField(max_length=255)
    request = models.ForeignKey(Request, on_delete=models.CASCADE, related_name="+")

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["version", "key"], name="hooks_ledger_key_unique")
        ]

    def __str__(self) -> str:
        return f"{self.version}: {self.key}"


class Secret(models.Model):
    """A named secret of a hook, encrypted at rest (hooks.crypto); the value is never shown again."""

    hook = models.ForeignKey(Hook, on_delete=models.CASCADE, related_name="secrets")
    name = models.CharField(max_length=64)
    ciphertext = models.BinaryField()
    fingerprint = models.CharField(max_length=16)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(fields=["hook", "name"], name="hooks_secret_name_unique")
        ]

    def __str__(self) -> str:
        return self.name


class HookTests(models.Model):
    """A hook's test cases (validated by hooks.testcases) and whether publish runs them first.

    A row of its own: the document can be up to WR_MAX_TESTS_BYTES, and every management call
    loads the hook's row.
    """

    hook = models.OneToOneField(
        Hook, on_delete=models.CASCADE, primary_key=True, related_name="tests"
    )
    cases = models.JSONField(default=list, blank=True)
    required = models.BooleanField(default=False)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"tests of {self.hook_id}"
