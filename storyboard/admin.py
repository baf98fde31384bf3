from __future__ import annotations

from django.contrib import admin

from storyboard import seams
from storyboard.models import (
    ApiToken,
    Asset,
    Budget,
    ChainRun,
    Comment,
    Export,
    Generation,
    LedgerEntry,
    Notification,
    Presence,
    Project,
    ReviewDecision,
    ReviewLink,
    ReviewSession,
    Scene,
    Seam,
    SeamThresholds,
    Shot,
    ShotChange,
    WebhookDelivery,
    WebhookEndpoint,
    WorkerBeat,
)
from storyboard.money import usd


def _usd(field: str, label: str):
    """A list column showing a micro-dollar field as dollars."""
    @admin.display(description=label, ordering=field)
    def column(_admin, obj) -> str:
        return usd(getattr(obj, field))
    return column


@admin.register(Project)
class ProjectAdmin(admin.ModelAdmin):
    list_display = ("name", "team", "default_endpoint", "created")
    search_fields = ("name", "team__name")
    raw_id_fields = ("team", "created_by")


@admin.register(Scene)
class SceneAdmin(admin.ModelAdmin):
    list_display = ("title", "project", "position")
    raw_id_fields = ("project",)


@admin.register(Shot)
class ShotAdmin(admin.ModelAdmin):
    list_display = ("__str__", "project", "position", "mode", "endpoint", "review", "updated")
    list_filter = ("mode", "review")
    search_fields = ("title", "prompt")
    raw_id_fields = ("project", "scene", "start_frame", "end_frame", "created_by",
                     "selected_take", "references")
    # Review moves only through storyboard/review.py, which records each decision.
    readonly_fields = ("review", "review_take", "review_changed")

    def get_readonly_fields(self, request, obj=None) -> tuple[str, ...]:
        fields = super().get_readonly_fields(request, obj)
        if obj is not None and obj.is_approved:
            # The approval lock holds here too: only un-approving frees the take and its recipe.
            editable = (f.name for f in Shot._meta.get_fields()
                        if getattr(f, "editable", False) and not f.auto_created)
            fields = (*fields, "selected_take",
                      *(n for n in editable if n not in Shot.UNLOCKED and n not in fields
                        and n != "selected_take"))
        return fields


@admin.register(ReviewDecision)
class ReviewDecisionAdmin(admin.ModelAdmin):
    list_display = ("created", "shot", "kind", "user", "take")
    list_filter = ("kind",)
    raw_id_fields = ("shot", "take", "user", "review_link")

    def has_change_permission(self, request, obj=None) -> bool:
        return False  # decisions are written by storyboard/review.py only

    def has_add_permission(self, request) -> bool:
        return False


@admin.register(ReviewSession)
class ReviewSessionAdmin(admin.ModelAdmin):
    list_display = ("created", "title", "project", "presenter", "ended")
    raw_id_fields = ("project", "started_by", "presenter")
    # The player state is the presenter's page's to write (storyboard/sessions.py).
    readonly_fields = ("state",)


@admin.register(ShotChange)
class ShotChangeAdmin(admin.ModelAdmin):
    list_display = ("created", "shot", "user", "undoes")
    raw_id_fields = ("shot", "user", "undoes")

    def has_change_permission(self, request, obj=None) -> bool:
        return False  # history is written by the editor only

    def has_add_permission(self, request) -> bool:
        return False


@admin.register(Asset)
class AssetAdmin(admin.ModelAdmin):
    list_display = ("display_name", "kind", "project", "size", "width", "height", "duration",
                    "created")
    list_filter = ("kind",)
    search_fields = ("original_name", "sha256")
    raw_id_fields = ("project", "derived_from", "from_take", "uploaded_by")
    readonly_fields = ("uid", "sha256", "size")


@admin.register(Presence)
class PresenceAdmin(admin.ModelAdmin):
    list_display = ("user", "project", "connected", "seen")
    raw_id_fields = ("project", "user")


@admin.register(Generation)
class GenerationAdmin(admin.ModelAdmin):
    list_display = ("__str__", "project", "state", "provider", "endpoint", "progress",
                    "estimated", "actual", "simulated", "created")
    estimated = _usd("estimated_micros", "estimated")
    actual = _usd("actual_micros", "actual")
    list_filter = ("state", "provider", "simulated")
    search_fields = ("uid", "request_id")
    raw_id_fields = ("shot", "project", "created_by", "upstream", "chain_run")
    readonly_fields = ("uid", "input", "logs", "request_id")


@admin.register(ChainRun)
class ChainRunAdmin(admin.ModelAdmin):
    list_display = ("__str__", "project", "state", "held", "spent", "started_by", "created")
    held, spent = _usd("held_micros", "held"), _usd("spent_micros", "spent")
    list_filter = ("state",)
    raw_id_fields = ("project", "root", "started_by")
    # A chain moves only through chainrun.py (its takes hold the money); the admin reads it.
    readonly_fields = ("state", "plan", "held_micros", "finished_steps", "spent_micros",
                       "current", "outcome", "finished")


@admin.register(Budget)
class BudgetAdmin(admin.ModelAdmin):
    list_display = ("team", "limit", "held", "spent", "simulated", "period_start")
    limit, held = _usd("limit_micros", "limit"), _usd("held_micros", "held")
    spent, simulated = _usd("spent_micros", "spent"), _usd("simulated_micros", "simulated")
    raw_id_fields = ("team",)
    # Counters move only through holds, captures and releases (with ledger rows).
    readonly_fields = ("held_micros", "spent_micros", "simulated_micros")


@admin.register(LedgerEntry)
class LedgerEntryAdmin(admin.ModelAdmin):
    list_display = ("created", "budget", "kind", "amount", "simulated", "take", "user")
    amount = _usd("amount_micros", "amount")
    list_filter = ("kind", "simulated")
    raw_id_fields = ("budget", "take", "user")

    def has_change_permission(self, request, obj=None) -> bool:
        return False  # append-only

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


@admin.register(Seam)
class SeamAdmin(admin.ModelAdmin):
    list_display = ("__str__", "project", "verdict", "delta_e", "ssim", "created")
    list_filter = ("verdict",)
    raw_id_fields = ("project", "upstream", "downstream")
    # Measured, never typed in: a verdict follows from the scores and the team's thresholds.
    readonly_fields = ("delta_e", "ssim", "verdict", "before", "after")


@admin.register(SeamThresholds)
class SeamThresholdsAdmin(admin.ModelAdmin):
    list_display = ("team", "match_delta_e", "drift_delta_e", "match_ssim", "drift_ssim",
                    "updated")
    raw_id_fields = ("team", "updated_by")
    fields = ("team", "match_delta_e", "drift_delta_e", "match_ssim", "drift_ssim")

    def save_model(self, request, obj, form, change) -> None:
        # Through the one write path, so the team's seams are judged again by the new lines.
        seams.set_thresholds(team=obj.team, user=request.user, values={
            name: getattr(obj, name)
            for name in ("match_delta_e", "drift_delta_e", "match_ssim", "drift_ssim")})
@admin.register(Comment)
class CommentAdmin(admin.ModelAdmin):
    list_display = ("created", "take", "user", "frame", "resolved_at")
    search_fields = ("body",)
    raw_id_fields = ("take", "user", "parent", "resolved_by", "review_link")


@admin.register(Notification)
class NotificationAdmin(admin.ModelAdmin):
    list_display = ("created", "user", "kind", "text", "read_at")
    list_filter = ("kind",)
    raw_id_fields = ("user", "shot")

    def has_add_permission(self, request) -> bool:
        return False  # written by storyboard/notify.py only


@admin.register(Export)
class ExportAdmin(admin.ModelAdmin):
    list_display = ("pk", "project", "kind", "state", "created_by", "created", "duration", "size")
    list_filter = ("kind", "state")
    search_fields = ("project__name", "message")
    raw_id_fields = ("project", "created_by")
    readonly_fields = ("uid", "key", "shot_ids", "take_ids", "reencoded")


@admin.register(ReviewLink)
class ReviewLinkAdmin(admin.ModelAdmin):
    list_display = ("created", "project", "label", "scope", "expires_at", "revoked_at", "views",
                    "last_used")
    list_filter = ("scope", "allow_decisions")
    search_fields = ("label",)
    raw_id_fields = ("project", "created_by", "revoked_by", "shots")
    # The token exists only as its hash and the password only as Django's: neither is made
    # or changed here (storyboard/sharing.py makes links; revoking is on the share page).
    readonly_fields = ("token_hash", "password")

    def has_add_permission(self, request) -> bool:
        return False


@admin.register(WorkerBeat)
class WorkerBeatAdmin(admin.ModelAdmin):
    """Which task workers are alive (the same rows /healthz reads); written only by workers."""

    list_display = ("worker", "beat_at")
    ordering = ("-beat_at",)
    readonly_fields = ("worker", "beat_at")

    def has_add_permission(self, request) -> bool:
        return False


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    list_display = ("name", "user", "team", "prefix", "created", "last_used", "revoked_at")
    search_fields = ("name", "prefix", "user__username", "team__name")
    raw_id_fields = ("user", "team")
    # Only the secret's hash exists; tokens are made on the Teams page, where it is shown once.
    readonly_fields = ("prefix", "digest", "created", "last_used")

    def has_add_permission(self, request) -> bool:
        return False


@admin.register(WebhookEndpoint)
class WebhookEndpointAdmin(admin.ModelAdmin):
    list_display = ("title", "team", "active", "created_by", "created_at")
    list_filter = ("active",)
    search_fields = ("label", "url", "team__name")
    raw_id_fields = ("team", "created_by")
    # The secret signs the team's deliveries; it is the owners' to see, on the team's page.
    exclude = ("secret", "previous_secret")


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(admin.ModelAdmin):
    list_display = ("event", "event_id", "endpoint", "state", "attempts", "last_status",
                    "created_at", "delivered_at")
    list_filter = ("state", "event")
    search_fields = ("event_id",)
    raw_id_fields = ("endpoint",)
    readonly_fields = ("event_id", "payload", "attempts", "last_status", "last_error",
                       "response_ms", "task_id", "claimed_at", "created_at", "delivered_at")
