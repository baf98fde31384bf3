from __future__ import annotations

import hashlib
import json
import logging
import re
import secrets
import uuid
from copy import copy as shallow_copy
from datetime import datetime, timedelta
from functools import partial
from typing import Self

from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.uploadedfile import UploadedFile
from django.db import IntegrityError, models, transaction
from django.db.models import Count, Exists, F, Max, OuterRef, Q, Subquery, Value
from django.db.models.functions import Greatest, TruncDate
from django.utils import timezone
from django.utils.module_loading import import_string
from PIL import Image

from accounts.models import Team, User
from storyboard import catalogue, frames, house, logs, media
from storyboard.money import usd
from storyboard.providers import per_second_rates

logger = logging.getLogger(__name__)


class TeamScopedQuerySet(models.QuerySet):
    """Rows that belong to a team, reached through `team_path` (a lookup ending at the team)."""

    team_path = "team"

    def for_user(self, user: User) -> Self:
        """Only what the user's teams own; nothing for an anonymous user."""
        if not user.is_authenticated:
            return self.none()
        return self.filter(**{f"{self.team_path}__memberships__user": user})

    def for_team(self, team_id: int) -> Self:
        """Only what one team owns: what an API token of that team may reach."""
        return self.filter(**{self.team_path: team_id})


class ProjectQuerySet(TeamScopedQuerySet):
    team_path = "team"


class Project(models.Model):
    team = models.ForeignKey(Team, models.CASCADE, related_name="projects")
    name = models.CharField(max_length=120)
    description = models.TextField(blank=True, max_length=2000)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, models.SET_NULL, null=True,
                                   related_name="+")
    created = models.DateTimeField(default=timezone.now)
    updated = models.DateTimeField(auto_now=True)

    # Defaults copied into every new shot.
    default_endpoint = models.CharField(max_length=100, default=catalogue.DEFAULT_ENDPOINT,
                                        choices=catalogue.endpoint_choices)
    default_resolution = models.CharField(max_length=8, default="720p")
    default_aspect_ratio = models.CharField(max_length=8, default="16:9")
    default_duration = models.CharField(max_length=8, default="5")
    default_generate_audio = models.BooleanField(default=True)
    # Optional ceiling on what this project may spend, in micro-dollars (None: team budget only).
    spend_cap_micros = models.BigIntegerField(null=True, blank=True)

    objects = ProjectQuerySet.as_manager()

    class Meta:
        ordering = ["-updated"]
        constraints = [
            models.CheckConstraint(condition=Q(spend_cap_micros__gte=0)
                                   | Q(spend_cap_micros=None), name="project_cap_not_negative"),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def group_name(self) -> str:
        # Channels group names allow ASCII alphanumerics, hyphens and periods only.
        return f"project-{self.pk}"

    def lock(self) -> Project:
        """Take the project's row lock for the current transaction.

        Every change to the board's order runs under it, so two people adding or reordering
        shots at the same moment on PostgreSQL cannot both read the same positions. (SQLite's
        IMMEDIATE transactions already serialise writers.)
        """
        return Project.objects.select_for_update().get(pk=self.pk)

    def committed_micros(self, *, since: datetime) -> int:
        """Held for this project's takes in flight, plus what its takes cost since `since`."""
        entries = LedgerEntry.objects.filter(take__project=self)
        sums = dict(entries.values_list("kind").annotate(total=models.Sum("amount_micros")))
        held = sums.get("hold", 0) - sums.get("capture", 0) - sums.get("release", 0)
        # Overruns count like captures: money the provider really took.
        spent = entries.filter(kind__in=LedgerEntry.CHARGES, created__gte=since).aggregate(
            total=models.Sum("amount_micros"))["total"] or 0
        return held + spent

    def check_cap(self, *, amount: int, since: datetime, what: str = "This take") -> None:
        """Raise BudgetRefused if `amount` more would pass the project's own spend cap.

        Runs under the project's row lock, so two takes cannot both squeeze under the cap.
        `what` names the spender in the message ("This take", "This chain of 4 shots").
        """
        if self.spend_cap_micros is None:
            return
        self.lock()
        left = self.spend_cap_micros - self.committed_micros(since=since)
        if amount > left:
            raise BudgetRefused(
                f"{what} needs up to {usd(amount)}, but {self.name} has a spend cap of "
                f"{usd(self.spend_cap_micros)} and only {usd(max(0, left))} left of it "
                f"(short by {usd(amount - max(0, left))}). "
                "An owner or producer can raise the cap in the project's settings.")

    def board(self, shots: models.QuerySet | None = None,
              scenes: models.QuerySet | None = None) -> list[tuple[Scene | None, list[Shot]]]:
        """Shots in board order, grouped under their scenes; unscened shots come first.

        `shots` and `scenes` narrow what is loaded (the board's cards load more, the order
        push less); either way this is two queries.
        """
        if shots is None:
            shots = self.shots.select_related("start_frame", "scene")
        shots = list(shots.filter(project=self).order_by("position", "pk"))
        scenes = list((self.scenes.all() if scenes is None else scenes)
                      .filter(project=self).order_by("position", "pk"))
        groups: list[tuple[Scene | None, list[Shot]]] = [(None, [])]
        by_scene = {scene.pk: [] for scene in scenes}
        for shot in shots:
            if shot.scene_id in by_scene:
                by_scene[shot.scene_id].append(shot)
            else:
                groups[0][1].append(shot)
        groups.extend((scene, by_scene[scene.pk]) for scene in scenes)
        return groups

    def shot_with_defaults(self, *, title: str = "", prompt: str = "", notes: str = "",
                           scene: Scene | None = None, duration: str = "") -> Shot:
        """A new, unsaved shot with this project's defaults (`duration` "" keeps the default's).

        The one place new shots get their parameters, whether added one by one or imported.
        """
        endpoint = catalogue.ENDPOINTS.get(self.default_endpoint)
        return Shot(
            project=self,
            scene=scene,
            title=title,
            prompt=prompt,
            notes=notes,
            mode=endpoint.mode if endpoint else catalogue.Mode.TEXT,
            endpoint=self.default_endpoint,
            resolution=self.default_resolution,
            aspect_ratio=self.default_aspect_ratio,
            duration=duration or self.default_duration,
            generate_audio=self.default_generate_audio,
        )

    def new_shot(self, *, title: str = "", prompt: str = "", scene: Scene | None = None,
                 after: Shot | None = None) -> Shot:
        shot = self.shot_with_defaults(title=title, prompt=prompt, scene=scene)
        shot.insert(after=after)
        return shot

    def append(self, *, scenes: list[Scene], shots: list[Shot]) -> None:
        """Save new scenes after the board's last scene and new shots after its last shot, each
        in the order given, in one transaction under the board's lock (an import: a whole
        board at once, so a few queries rather than a few per shot)."""
        with transaction.atomic():
            self.lock()
            last = self.scenes.aggregate(m=Max("position"))["m"]
            for offset, scene in enumerate(scenes, start=0 if last is None else last + 1):
                scene.project, scene.position = self, offset
            Scene.objects.bulk_create(scenes)
            last = self.shots.aggregate(m=Max("position"))["m"]
            for offset, shot in enumerate(shots, start=0 if last is None else last + 1):
                shot.position = offset
            Shot.objects.bulk_create(shots)

    def apply_order(self, items: list[tuple[int | None, int]], *,
                    user: User | None = None) -> bool:
        """Rewrite the board order from [(scene_id, shot_id), …] covering every shot exactly once.

        Returns False, changing nothing, when the list does not match the board (someone else
        added or deleted a shot meanwhile, or ids from elsewhere were sent). A shot moved to
        another scene gets a new version and a history entry, so an editor opened before the
        move does not move it back when it saves.
        """
        shot_ids = [shot_id for _, shot_id in items]
        scene_ids = {scene_id for scene_id, _ in items if scene_id is not None}
        with transaction.atomic():
            self.lock()
            current = set(self.shots.values_list("pk", flat=True))
            if len(shot_ids) != len(set(shot_ids)) or set(shot_ids) != current:
                return False
            if scene_ids - set(self.scenes.values_list("pk", flat=True)):
                return False
            shots = {s.pk: s for s in self.shots.all()}
            changed, moved = [], []
            now = timezone.now()
            for position, (scene_id, shot_id) in enumerate(items):
                shot = shots[shot_id]
                if shot.scene_id != scene_id:
                    moved.append(ShotChange(shot=shot, user=user, created=now,
                                            changes={"scene": [shot.scene_id, scene_id]}))
                    shot.updated = now
                if shot.position != position or shot.scene_id != scene_id:
                    shot.position, shot.scene_id = position, scene_id
                    changed.append(shot)
            # bulk_update skips auto_now: `updated` is set above for the shots that moved.
            Shot.objects.bulk_update(changed, ["position", "scene", "updated"])
            ShotChange.objects.bulk_create(moved)
        return True


class SceneQuerySet(TeamScopedQuerySet):
    team_path = "project__team"


class Scene(models.Model):
    project = models.ForeignKey(Project, models.CASCADE, related_name="scenes")
    title = models.CharField(max_length=120)
    position = models.PositiveIntegerField(default=0)

    objects = SceneQuerySet.as_manager()

    class Meta:
        ordering = ["position", "pk"]

    def __str__(self) -> str:
        return self.title


def take_pk(take: Generation | None) -> int | None:
    return take.pk if take is not None else None


class ShotQuerySet(TeamScopedQuerySet):
    team_path = "project__team"

    def for_cards(self) -> ShotQuerySet:
        """Everything a board card shows, in this one query plus one for the newest takes
        (`with_latest_takes`), however many cards: frames, the take on the board, the take
        count, and whether video references raise the price."""
        takes = Generation.objects.filter(shot=OuterRef("pk")).order_by()
        # The joint the card's "continues" line shows: its upstream's take on the board
        # against its own (storyboard/seams.py).
        seam = Seam.objects.filter(downstream=OuterRef("selected_take"),
                                   upstream=OuterRef("continues_from__selected_take")).order_by()
        # A card never shows a take's logs or provider input, the largest columns it has.
        return self.select_related("start_frame", "selected_take").defer(
            "selected_take__logs", "selected_take__input").annotate(
            # The card names the shot it continues; board.js adds its number and whether the
            # two still sit side by side.
            upstream_title=F("continues_from__title"),
            n_takes=Subquery(takes.values("shot").annotate(n=Count("pk")).values("n")),
            latest_take_id=Subquery(takes.order_by("-created", "-pk").values("pk")[:1]),
            video_refs=Exists(Asset.objects.filter(referenced_by=OuterRef("pk"),
                                                   kind=Asset.Kind.VIDEO)),
            seam_verdict=Subquery(seam.values("verdict")[:1]),
            seam_delta_e=Subquery(seam.values("delta_e")[:1]),
            seam_ssim=Subquery(seam.values("ssim")[:1]),
        )

    def awaiting_review(self, *, team_id: int) -> ShotQuerySet:
        """The team's shots in review, the longest waiting first, with what the queue shows."""
        return (self.filter(project__team_id=team_id, review=Shot.Review.IN_REVIEW)
                .select_related("project", "review_take", "review_take__created_by")
                .order_by("review_changed", "pk"))

    def for_totals(self, *also: str) -> ShotQuerySet:
        """Only what the board's summary line adds up (and the fields named in `also`)."""
        return self.only("mode", "endpoint", "resolution", "aspect_ratio", "duration",
                         "num_frames", "selected_take_id", *also).annotate(
            video_refs=Exists(Asset.objects.filter(referenced_by=OuterRef("pk"),
                                                   kind=Asset.Kind.VIDEO)))


def with_latest_takes(shots: list[Shot]) -> list[Shot]:
    """Attach each card's newest take (for its status strip) in one query."""
    ids = [s.latest_take_id for s in shots if getattr(s, "latest_take_id", None)]
    takes = Generation.objects.defer("logs", "input").in_bulk(ids)
    for shot in shots:
        shot._latest_take = takes.get(getattr(shot, "latest_take_id", None))
    return shots


class Shot(models.Model):
    # What the shot editor changes: the fields a merge compares and the history records.
    EDITABLE = ("title", "scene", "prompt", "notes", "mode", "endpoint", "resolution",
                "aspect_ratio", "duration", "generate_audio", "seed", "camera_fixed",
                "num_frames", "safety_checker", "start_frame", "end_frame", "references",
                "continues_from")
    RELATED = ("scene", "start_frame", "end_frame", "continues_from")

    class Mode(models.TextChoices):
        TEXT = catalogue.Mode.TEXT, "Text to video"
        IMAGE = catalogue.Mode.IMAGE, "Image to video"
        REFERENCE = catalogue.Mode.REFERENCE, "Reference to video"

    class Review(models.TextChoices):
        DRAFT = "draft", "Draft"
        IN_REVIEW = "in_review", "In review"
        CHANGES = "changes", "Changes requested"
        APPROVED = "approved", "Approved"

    project = models.ForeignKey(Project, models.CASCADE, related_name="shots")
    scene = models.ForeignKey(Scene, models.SET_NULL, null=True, blank=True, related_name="shots")
    position = models.PositiveIntegerField(default=0)
    title = models.CharField(max_length=120, blank=True)
    prompt = models.TextField(blank=True, max_length=5000)
    notes = models.TextField(blank=True, max_length=5000)
    mode = models.CharField(max_length=16, choices=Mode.choices, default=Mode.TEXT)
    endpoint = models.CharField(max_length=100, choices=catalogue.endpoint_choices,
                                default=catalogue.DEFAULT_ENDPOINT)
    resolution = models.CharField(max_length=8, default="720p")
    aspect_ratio = models.CharField(max_length=8, default="16:9")
    duration = models.CharField(max_length=8, default="5")
    generate_audio = models.BooleanField(default=True)
    seed = models.BigIntegerField(null=True, blank=True)
    camera_fixed = models.BooleanField(default=False)
    # Seedance 1.0 only: an exact frame count (29–289) instead of whole seconds, and the
    # provider's safety checker.
    num_frames = models.PositiveIntegerField(null=True, blank=True)
    safety_checker = models.BooleanField(default=True)
    start_frame = models.ForeignKey("Asset", models.SET_NULL, null=True, blank=True,
                                    related_name="+")
    end_frame = models.ForeignKey("Asset", models.SET_NULL, null=True, blank=True,
                                  related_name="+")
    references = models.ManyToManyField("Asset", blank=True, related_name="referenced_by")
    # The shot this one continues: each take starts from the last frame of that shot's chosen
    # take. A real link, so reordering the board never changes what a shot continues from.
    continues_from = models.ForeignKey("self", models.SET_NULL, null=True, blank=True,
                                       related_name="continued_by")
    # Set when the upstream's chosen take changed after this shot's chosen take started from the
    # old one (chains.py); cleared by a fresh take from the new frame, or by someone keeping it.
    stale_reason = models.CharField(max_length=300, blank=True)
    stale_since = models.DateTimeField(null=True, blank=True)
    review = models.CharField(max_length=16, choices=Review.choices, default=Review.DRAFT)
    # The exact take the review state is about: the one submitted, approved or sent back
    # (storyboard/review.py writes it, with the state, in one conditional update).
    review_take = models.ForeignKey("Generation", models.SET_NULL, null=True, blank=True,
                                    related_name="+")
    # When the review state last changed: the review queue is oldest first.
    review_changed = models.DateTimeField(null=True, blank=True)
    # The take shown on the board for this shot (the newest finished one unless someone picks).
    selected_take = models.ForeignKey("Generation", models.SET_NULL, null=True, blank=True,
                                      related_name="+")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, models.SET_NULL, null=True,
                                   blank=True, related_name="+")
    created = models.DateTimeField(default=timezone.now)
    updated = models.DateTimeField(auto_now=True)

    objects = ShotQuerySet.as_manager()

    class Meta:
        ordering = ["position", "pk"]

    def __str__(self) -> str:
        return self.display_title

    @property
    def display_title(self) -> str:
        return self.title or f"Shot {self.number}"

    @property
    def number(self) -> int:
        # Set by the board, which numbers shots in one pass; a single card counts in the same
        # order (unscened shots first, then scene by scene).
        cached = getattr(self, "_number", None)
        if cached is None:
            order = [s.pk for _, shots in self.project.board() for s in shots]
            cached = order.index(self.pk) + 1 if self.pk in order else 0
        return cached

    @property
    def latest_take(self) -> Generation | None:
        if hasattr(self, "_latest_take"):
            return self._latest_take
        return self.takes.first()

    @property
    def take_count(self) -> int:
        count = getattr(self, "n_takes", None)
        if hasattr(self, "n_takes"):
            return count or 0
        return self.takes.count()

    @property
    def version(self) -> str:
        return self.updated.isoformat() if self.updated else ""

    @property
    def endpoint_spec(self) -> catalogue.Endpoint | None:
        return catalogue.ENDPOINTS.get(self.endpoint)

    @property
    def duration_label(self) -> str:
        return "auto" if self.duration == "auto" else f"{self.duration}s"

    def estimate(self) -> catalogue.Estimate:
        """Worst-case price of one take with the shot's current parameters."""
        cached = getattr(self, "cached_estimate", None)
        if cached is not None:
            return cached
        video_refs = self.mode == Shot.Mode.REFERENCE and (
            # Annotated by ShotQuerySet.for_cards(), so a board prices every card at once.
            self.video_refs if hasattr(self, "video_refs")
            else self.references.filter(kind=Asset.Kind.VIDEO).exists())
        num_frames = self.num_frames if "num_frames" in getattr(
            self.endpoint_spec, "extra", ()) else None
        # Priced as the provider takes will be generated with charges: its own table, if any.
        return catalogue.estimate(endpoint=self.endpoint, resolution=self.resolution,
                                  aspect_ratio=self.aspect_ratio, duration=self.duration,
                                  num_frames=num_frames, video_references=video_refs,
                                  rates=per_second_rates(self.endpoint))

    def problems(self, *, upstream_coming: bool = False) -> list[str]:
        """Everything that stops this shot from being generated, before anything is spent.

        `upstream_coming`: a chain render will make the upstream's take first, so a continuing
        shot need not have one yet.
        """
        if self.is_approved:
            return [self.lock_message()]
        found = []
        spec = catalogue.ENDPOINTS.get(self.endpoint)
        if spec is None:
            return ["Choose one of the listed Seedance endpoints."]
        if not self.prompt.strip():
            found.append("Write a prompt first.")
        if spec.mode != self.mode:
            found.append(f"{spec.label} does not match the shot's mode "
                         f"({self.get_mode_display()}).")
        found.extend(catalogue.validate_parameters(
            endpoint=self.endpoint, resolution=self.resolution, duration=self.duration,
            aspect_ratio=self.aspect_ratio,
        ).values())
        if self.continues_from_id:
            found.extend(self.link_problems(self.continues_from, endpoint=self.endpoint))
            if not upstream_coming and self.upstream_take() is None:
                found.append(f"This shot continues from {self.continues_from.display_title}, "
                             "which has no finished take yet.")
        elif self.mode == Shot.Mode.IMAGE and not self.start_frame_id:
            found.append("Image to video needs a start frame, or continue from another shot.")
        if self.mode == Shot.Mode.REFERENCE:
            refs = list(self.references.all())
            if not refs:
                found.append("Reference to video needs at least one reference file.")
            counts = {kind: sum(1 for a in refs if a.kind == kind) for kind in Asset.Kind.values}
            for tag, kind in (("Image", "image"), ("Video", "video"), ("Audio", "audio")):
                for number in sorted({int(n) for n in re.findall(rf"@{tag}(\d+)", self.prompt)}):
                    if number > counts[kind] or number < 1:
                        found.append(f"The prompt mentions @{tag}{number}, but only "
                                     f"{counts[kind]} {kind} reference(s) are attached.")
        return found

    @property
    def is_stale(self) -> bool:
        return bool(self.stale_reason)

    @property
    def is_approved(self) -> bool:
        return self.review == Shot.Review.APPROVED

    @property
    def review_token(self) -> str:
        """The review state a form was rendered against (review.py applies a decision only if
        it still holds)."""
        return f"{self.review}:{self.review_take_id or ''}"

    def recipe_of(self, take: Generation) -> Shot:
        """This shot as `take` was made: an unsaved copy with the take's endpoint and every
        argument it was sent with (input files are the shot's own). Not under review: the
        caller decides whether the approval lock allows a take from it."""
        recipe = shallow_copy(self)
        args = take.input or {}
        recipe.endpoint = take.endpoint
        recipe.mode = catalogue.ENDPOINTS[take.endpoint].mode if take.endpoint in \
            catalogue.ENDPOINTS else self.mode
        recipe.prompt = args.get("prompt", self.prompt)
        recipe.resolution = args.get("resolution", self.resolution)
        recipe.aspect_ratio = args.get("aspect_ratio", self.aspect_ratio)
        recipe.duration = str(args.get("duration", self.duration))
        recipe.num_frames = args.get("num_frames")
        recipe.generate_audio = args.get("generate_audio", self.generate_audio)
        recipe.camera_fixed = args.get("camera_fixed", self.camera_fixed)
        recipe.safety_checker = args.get("enable_safety_checker", self.safety_checker)
        # The seed the provider reported using, so a re-render can keep it.
        recipe.seed = take.seed if take.seed is not None else args.get("seed")
        recipe.review = Shot.Review.DRAFT
        recipe.cached_estimate = None
        return recipe

    def final_recipe(self, draft: Generation) -> Shot | None:
        """The approved draft re-rendered final: the standard tier of its endpoint at that
        tier's highest resolution, same seed and inputs. None if the draft is already that."""
        recipe = self.recipe_of(draft)
        standard = recipe.endpoint.replace("/fast/", "/")
        spec = catalogue.ENDPOINTS.get(standard)
        if spec is None:
            return None
        best = spec.resolutions[-1]
        if standard == draft.endpoint and recipe.resolution == best:
            return None
        recipe.endpoint, recipe.resolution = standard, best
        return recipe

    def final_to_confirm(self) -> Generation | None:
        """The newest finished final render of the approved draft, waiting for a reviewer."""
        if not self.is_approved or not self.review_take_id:
            return None
        return (self.takes.filter(draft_id=self.review_take_id,
                                  state=Generation.State.COMPLETED)
                .exclude(video="").order_by("-created", "-pk").first())

    def finals_running(self, draft: Generation) -> bool:
        return self.takes.filter(draft=draft).exclude(
            state__in=Generation.TERMINAL).exists()

    def take_to_review(self) -> Generation | None:
        """The take the shot's player opens on: the one under review (or decided on), else
        the one on the board."""
        if self.review != Shot.Review.DRAFT and self.review_take_id:
            return self.review_take
        return self.selected_take

    def review_history(self, limit: int = 20) -> list[ReviewDecision]:
        return list(self.decisions.select_related("user")[:limit])

    # What an approval locks: everything that would change how the approved take was made.
    UNLOCKED = frozenset({"title", "scene", "notes"})

    def lock_message(self) -> str:
        """Why an approved shot refuses a new take, another selection or a generation edit."""
        take = f"take #{self.review_take_id}" if self.review_take_id else "its take"
        return (f"{self.display_title} is approved with {take}; un-approve it first "
                "(a reviewer, producer or owner can, giving a reason).")

    def locked_fields(self, names) -> list[str]:
        """Of the fields named, those the approval lock refuses to change."""
        return [n for n in names if self.is_approved and n not in Shot.UNLOCKED]

    def chosen_take(self) -> Generation | None:
        """The take this shot stands for: what downstream shots continue from and the cut uses.

        The one answer to "which take": the approved take if the shot is approved, else the
        selected one, and only a finished take with its file. Approving also selects the take
        and the approval lock keeps the selection on it, so the two are one take in practice.
        """
        take = self.selected_take
        if self.is_approved and self.review_take_id and self.review_take_id != take_pk(take):
            take = self.review_take
        if take is None or take.state != Generation.State.COMPLETED or not take.video:
            return None
        return take

    def previous_on_board(self) -> Shot | None:
        """The shot just before this one in board order (across scenes), if any: what
        "continue from the previous shot" links to."""
        order = [s for _, shots in self.project.board(
            Shot.objects.only("pk", "title", "scene", "position", "project")) for s in shots]
        index = next((i for i, s in enumerate(order) if s.pk == self.pk), 0)
        return order[index - 1] if index > 0 else None


    def joint(self) -> Seam | None:
        """The measured seam between the upstream's chosen take and this shot's, if any."""
        if not (self.continues_from_id and self.selected_take_id):
            return None
        above = Shot.objects.filter(pk=self.continues_from_id).values("selected_take")[:1]
        return Seam.objects.filter(downstream_id=self.selected_take_id,
                                   upstream_id=Subquery(above)).first()

    def upstream_take(self) -> Generation | None:
        """The take whose last frame this shot's next take starts from, if it continues one."""
        return self.continues_from.chosen_take() if self.continues_from_id else None

    def link_problems(self, upstream: Shot | None, *, endpoint: str | None = None) -> list[str]:
        """Why this shot may not continue from `upstream` (with `endpoint`), in plain words."""
        if upstream is None:
            return []
        if upstream.pk == self.pk:
            return ["A shot cannot continue from itself."]
        if upstream.project_id != self.project_id:
            return ["A shot can only continue from a shot of its own project."]
        found = []
        # Walk up from the upstream: reaching this shot again would close a loop. One query
        # for the project's links, whatever the chain's length.
        links = dict(Shot.objects.filter(project_id=self.project_id)
                     .values_list("pk", "continues_from_id"))
        seen, at = set(), upstream.pk
        while at is not None and at not in seen:
            if at == self.pk:
                found.append(f"{upstream.display_title} already continues from this shot, "
                             "directly or through others; linking back would make a loop.")
                break
            seen.add(at)
            at = links.get(at)
        spec = catalogue.ENDPOINTS.get(endpoint or self.endpoint)
        if spec is not None and spec.mode != catalogue.Mode.IMAGE:
            switch = catalogue.image_endpoint_for(spec.id)
            found.append(f"{spec.label} cannot start from a frame; a continuing shot needs an "
                         "image-to-video endpoint"
                         + (f" (switch to {switch.label})." if switch else "."))
        return found

    def field_values(self) -> dict[str, object]:
        """The editable fields as plain JSON values: related rows by id, references sorted."""
        values: dict[str, object] = {}
        for name in Shot.EDITABLE:
            if name == "references":
                values[name] = sorted(self.references.values_list("pk", flat=True))
            elif name in Shot.RELATED:
                values[name] = getattr(self, f"{name}_id")
            else:
                values[name] = getattr(self, name)
        return values

    def values_at(self, version: str) -> dict[str, object] | None:
        """The editable fields as they stood at `version`, rebuilt from the change history.

        None when the history cannot tell: a version that is not one of this shot's, or a
        shot changed since by something that writes no history (the admin, older code).
        """
        try:
            then = datetime.fromisoformat(version)
        except ValueError:
            return None
        values = self.field_values()
        if then == self.updated:
            return values
        later = list(self.changes.filter(created__gt=then).order_by("-created", "-pk"))
        if then > self.updated or not later:
            return None
        for change in later:
            for name, (old, _new) in change.changes.items():
                if name in values:
                    values[name] = old
        return values

    def change(self, *, values: dict[str, object], user: User | None,
               undoes: ShotChange | None = None, note: str = "") -> ShotChange | None:
        """Store new values of editable fields and note them in the history; None if nothing
        differs. The caller holds the row locked in a transaction (editing.py does)."""
        before = self.field_values()
        changes = {name: [before[name], value] for name, value in values.items()
                   if name in before and before[name] != value}
        if not changes:
            return None
        for name, (_old, value) in changes.items():
            if name in Shot.RELATED:
                setattr(self, f"{name}_id", value)
            elif name != "references":
                setattr(self, name, value)
        self.save()
        if "references" in changes:
            self.references.set(changes["references"][1])
        return ShotChange.objects.create(shot=self, user=user, created=self.updated,
                                         changes=changes, undoes=undoes, note=note[:300])

    def history(self, limit: int = 10) -> list[ShotChange]:
        return list(self.changes.select_related("user").order_by("-created", "-pk")[:limit])

    def describe(self, name: str, value: object) -> str:
        """A field value from `field_values` as people read it."""
        if value is None or value == "" or value == []:
            return "—"
        if isinstance(value, bool):
            return "on" if value else "off"
        if name == "scene":
            scene = self.project.scenes.filter(pk=value).first()
            return scene.title if scene else "(deleted scene)"
        if name == "continues_from":
            upstream = self.project.shots.filter(pk=value).first()
            return upstream.display_title if upstream else "(deleted shot)"
        if name == "stale_reason":
            return str(value)
        if name in Shot.RELATED or name == "references":
            ids = value if isinstance(value, list) else [value]
            names = {a.pk: a.display_name for a in self.project.assets.filter(pk__in=ids)}
            return ", ".join(names.get(pk, "(deleted file)") for pk in ids)
        if name in ("mode", "endpoint"):
            return dict(Shot._meta.get_field(name).flatchoices).get(value, str(value))
        return str(value)

    def insert(self, *, after: Shot | None = None) -> None:
        """Save a new shot at the end of the board, or right after `after`."""
        with transaction.atomic():
            self.project.lock()
            if after is None:
                last = self.project.shots.aggregate(m=Max("position"))["m"]
                self.position = 0 if last is None else last + 1
            else:
                self.position = after.position + 1
                self.scene_id = after.scene_id
                self.project.shots.filter(position__gte=self.position).update(
                    position=models.F("position") + 1
                )
            self.save()

    def duplicate(self, *, user: User | None) -> Shot:
        copy = Shot.objects.get(pk=self.pk)
        copy.pk = None
        copy.title = f"{self.display_title} (copy)"[:120]
        copy.review, copy.review_take, copy.review_changed = Shot.Review.DRAFT, None, None
        copy.selected_take = None
        copy.created_by = user
        copy.created = timezone.now()
        with transaction.atomic():
            copy.insert(after=self)
            copy.references.set(self.references.all())
        return copy


class ShotChange(models.Model):
    """One saved edit of a shot (or the undo of one): who, when, and each field's old and new
    value as `Shot.field_values` gives them ({field: [old, new]})."""

    shot = models.ForeignKey(Shot, models.CASCADE, related_name="changes")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, models.SET_NULL, null=True, blank=True,
                             related_name="+")
    # Exactly the shot's `updated` after this change, so a version finds the changes after it.
    created = models.DateTimeField(default=timezone.now, db_index=True)
    changes = models.JSONField()
    undoes = models.ForeignKey("self", models.SET_NULL, null=True, blank=True,
                               related_name="+")
    # Why, when the change was not typed into the editor: a link undone because its upstream
    # was deleted, a stale mark kept (chains.py).
    note = models.CharField(max_length=300, blank=True)

    class Meta:
        ordering = ["-created", "-pk"]

    def __str__(self) -> str:
        return f"{', '.join(self.changes)} of {self.shot_id} by {self.user}"

    def rows(self) -> list[tuple[str, str, str]]:
        """(field label, old, new) as people read them: names for frames, scenes, references."""
        return [(Shot._meta.get_field(name).verbose_name.capitalize(),
                 self.shot.describe(name, old), self.shot.describe(name, new))
                for name, (old, new) in self.changes.items() if name in Shot.EDITABLE]


def author_label(row: ReviewDecision | Comment) -> str:
    """Who wrote a comment or made a decision, as every page shows it: a guest (through a
    review link) is marked as one, so nobody mistakes them for a member of the team."""
    if row.guest_name:
        return f"{row.guest_name} (guest)"
    return row.user.label if row.user_id else "Someone"


def author_initials(row: ReviewDecision | Comment) -> str:
    if row.guest_name:
        return "".join(p[0] for p in row.guest_name.split()[:2]).upper() or "?"
    return row.user.initials if row.user_id else "?"


class ReviewDecision(models.Model):
    """One review step of a shot: who moved it from which state to which, about which take,
    and why. The shot page lists them; they are never edited."""

    class Kind(models.TextChoices):
        SUBMIT = "submit", "Submitted for review"
        APPROVE = "approve", "Approved"
        CHANGES = "changes", "Requested changes"
        UNAPPROVE = "unapprove", "Un-approved"
        FINAL = "final", "Confirmed the final"

    shot = models.ForeignKey(Shot, models.CASCADE, related_name="decisions")
    take = models.ForeignKey("Generation", models.SET_NULL, null=True, blank=True,
                             related_name="decisions")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, models.SET_NULL, null=True, blank=True,
                             related_name="+")
    kind = models.CharField(max_length=16, choices=Kind.choices)
    from_state = models.CharField(max_length=16, choices=Shot.Review.choices)
    to_state = models.CharField(max_length=16, choices=Shot.Review.choices)
    note = models.TextField(blank=True, max_length=2000)
    # A decision by someone outside the team, through a review link: no user, their name.
    guest_name = models.CharField(max_length=80, blank=True)
    guest_email = models.EmailField(blank=True)
    review_link = models.ForeignKey("ReviewLink", models.SET_NULL, null=True, blank=True,
                                    related_name="decisions")
    created = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created", "-pk"]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} {self.shot_id} by {self.author_label}"

    @property
    def author_label(self) -> str:
        return author_label(self)

    @property
    def author_initials(self) -> str:
        return author_initials(self)

    @property
    def verb(self) -> str:
        """As the history reads: "Rita approved take #12"."""
        return {"submit": "submitted", "approve": "approved", "changes": "sent back",
                "unapprove": "un-approved", "final": "confirmed the final"}[self.kind]


class ReviewSessionQuerySet(TeamScopedQuerySet):
    team_path = "project__team"

    def live(self) -> ReviewSessionQuerySet:
        return self.filter(ended=None)


class ReviewSession(models.Model):
    """A review played together: one person presents a playlist of shots and every other
    participant's player follows theirs (static/js/session.js, over the project websocket).

    `state` is where the presenter's player was at their last discrete action (item, take,
    compare take and mode, time, playing, rate, and `at`: the server's clock in ms when that
    time was true). It is all a late joiner needs: while playing, the presenter is at
    t + (now - at) × rate. Heartbeats between actions are relayed, not stored.
    """

    project = models.ForeignKey(Project, models.CASCADE, related_name="review_sessions")
    title = models.CharField(max_length=120)
    started_by = models.ForeignKey(settings.AUTH_USER_MODEL, models.SET_NULL, null=True,
                                   related_name="+")
    presenter = models.ForeignKey(settings.AUTH_USER_MODEL, models.SET_NULL, null=True,
                                  related_name="+")
    shot_ids = models.JSONField(default=list)
    state = models.JSONField(default=dict, blank=True)
    created = models.DateTimeField(default=timezone.now)
    ended = models.DateTimeField(null=True, blank=True)

    objects = ReviewSessionQuerySet.as_manager()

    class Meta:
        ordering = ["-created", "-pk"]

    def __str__(self) -> str:
        return self.title

    @property
    def is_live(self) -> bool:
        return self.ended is None

    def playlist(self) -> list[Shot]:
        """The session's shots that still exist, in the order they were chosen, with what the
        stage shows."""
        shots = Shot.objects.filter(project_id=self.project_id, pk__in=self.shot_ids) \
            .select_related("review_take", "selected_take")
        by_id = {shot.pk: shot for shot in shots}
        return [by_id[pk] for pk in self.shot_ids if pk in by_id]


class CommentQuerySet(TeamScopedQuerySet):
    team_path = "take__project__team"

    def threads(self) -> CommentQuerySet:
        """Top-level comments in timeline order, each with its replies and people loaded."""
        return (self.filter(parent=None).select_related("user", "resolved_by")
                .prefetch_related(models.Prefetch(
                    "replies", queryset=Comment.objects.select_related("user")
                    .order_by("created", "pk")), "answered_by")
                .order_by(models.F("frame").asc(nulls_first=True), "created", "pk"))


class Comment(models.Model):
    """A note on a take, at a frame or a frame range (or the whole take), with its replies.

    Plain text only; a reply belongs to one top-level comment. Resolving closes the thread
    without deleting it."""

    take = models.ForeignKey("Generation", models.CASCADE, related_name="comments")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, models.SET_NULL, null=True, blank=True,
                             related_name="+")
    parent = models.ForeignKey("self", models.CASCADE, null=True, blank=True,
                               related_name="replies")
    body = models.TextField(max_length=2000)
    # Frames counted from 0 at the take's frame rate; empty: about the whole take.
    frame = models.PositiveIntegerField(null=True, blank=True)
    frame_end = models.PositiveIntegerField(null=True, blank=True)
    # Marks drawn on the paused frame: [{"tool": "rect"|"arrow"|"free", "points": [[x, y]…]}]
    # with x and y from 0 to 1 across the picture (comments.clean_drawing checks it).
    drawing = models.JSONField(default=list, blank=True)
    resolved_by = models.ForeignKey(settings.AUTH_USER_MODEL, models.SET_NULL, null=True,
                                    blank=True, related_name="+")
    resolved_at = models.DateTimeField(null=True, blank=True)
    # A comment by someone outside the team, through a review link: no user, their name.
    guest_name = models.CharField(max_length=80, blank=True)
    guest_email = models.EmailField(blank=True)
    review_link = models.ForeignKey("ReviewLink", models.SET_NULL, null=True, blank=True,
                                    related_name="comments")
    created = models.DateTimeField(default=timezone.now)

    objects = CommentQuerySet.as_manager()

    class Meta:
        ordering = ["created", "pk"]

    def __str__(self) -> str:
        return f"Comment {self.pk} on take {self.take_id}"

    @property
    def author_label(self) -> str:
        return author_label(self)

    @property
    def author_initials(self) -> str:
        return author_initials(self)

    @property
    def is_resolved(self) -> bool:
        return self.resolved_at is not None

    @property
    def drawing_json(self) -> str:
        return json.dumps(self.drawing, separators=(",", ":")) if self.drawing else ""


class NotificationQuerySet(models.QuerySet):
    def unread(self) -> NotificationQuerySet:
        return self.filter(read_at=None)


class Notification(models.Model):
    """Something one person should know: a mention, a reply to their comment, a decision on
    a shot they worked on. Shown by the bell and the notifications page, and emailed."""

    class Kind(models.TextChoices):
        MENTION = "mention", "Mention"
        REPLY = "reply", "Reply"
        DECISION = "decision", "Review decision"
        GUEST = "guest", "Guest comment"

    user = models.ForeignKey(settings.AUTH_USER_MODEL, models.CASCADE,
                             related_name="notifications")
    kind = models.CharField(max_length=16, choices=Kind.choices)
    text = models.CharField(max_length=300)
    # Where it happened, as a path inside this site (the shot page, at the comment).
    url = models.CharField(max_length=300)
    shot = models.ForeignKey(Shot, models.CASCADE, null=True, blank=True, related_name="+")
    read_at = models.DateTimeField(null=True, blank=True)
    created = models.DateTimeField(default=timezone.now)

    objects = NotificationQuerySet.as_manager()

    class Meta:
        ordering = ["-created", "-pk"]
        indexes = [models.Index(fields=["user", "read_at"])]

    def __str__(self) -> str:
        return f"{self.kind} for {self.user_id}: {self.text}"


def secret_digest(secret: str) -> str:
    """What we keep of a bearer secret (a review link, an API token). A plain SHA-256 is
    enough: the secrets are 256 random bits, so there is nothing to guess slowly, and a lookup
    by digest stays one indexed query."""
    return hashlib.sha256(secret.encode()).hexdigest()


class ReviewLinkQuerySet(TeamScopedQuerySet):
    team_path = "project__team"

    def active(self) -> ReviewLinkQuerySet:
        return self.filter(revoked_at=None, expires_at__gt=timezone.now())

    def by_token(self, token: str) -> ReviewLinkQuerySet:
        """The link a guest's token opens. Looked up by the token's hash: only hashes are
        stored, and comparing hashes in the index reveals nothing about the token itself."""
        return self.filter(token_hash=secret_digest(token))


class ReviewLink(models.Model):
    """A way in for someone outside the team: the takes under review of some shots (or of the
    whole cut), until it expires or is revoked, optionally behind a password.

    The token is shown once, to its creator; only its sha256 is kept, so the table (a backup,
    the admin) never holds a working link. storyboard/sharing.py creates, opens and revokes.
    """

    class Scope(models.TextChoices):
        CUT = "cut", "The whole cut"
        SHOTS = "shots", "Chosen shots"

    class State(models.TextChoices):
        ACTIVE = "active", "Active"
        EXPIRED = "expired", "Expired"
        REVOKED = "revoked", "Revoked"

    # The review states a guest sees a shot in: a take is under review, sent back or approved.
    SHOWN = (Shot.Review.IN_REVIEW, Shot.Review.CHANGES, Shot.Review.APPROVED)

    project = models.ForeignKey(Project, models.CASCADE, related_name="review_links")
    label = models.CharField(max_length=120, blank=True,
                             help_text="Who it is for; the guest sees it as the page's title.")
    scope = models.CharField(max_length=8, choices=Scope.choices, default=Scope.CUT)
    shots = models.ManyToManyField(Shot, blank=True, related_name="review_links")
    token_hash = models.CharField(max_length=64, unique=True, editable=False)
    # make_password's hash, or empty for no password.
    password = models.CharField(max_length=128, blank=True)
    allow_decisions = models.BooleanField(default=False)
    expires_at = models.DateTimeField()
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, models.SET_NULL, null=True,
                                   blank=True, related_name="+")
    created = models.DateTimeField(default=timezone.now)
    revoked_at = models.DateTimeField(null=True, blank=True)
    revoked_by = models.ForeignKey(settings.AUTH_USER_MODEL, models.SET_NULL, null=True,
                                   blank=True, related_name="+")
    # How many guests came in (named themselves), and when a guest last did anything.
    views = models.PositiveIntegerField(default=0)
    last_used = models.DateTimeField(null=True, blank=True)

    objects = ReviewLinkQuerySet.as_manager()

    class Meta:
        ordering = ["-created", "-pk"]

    def __str__(self) -> str:
        return f"Review link {self.pk} on {self.project_id}: {self.label or 'untitled'}"

    @property
    def state(self) -> str:
        if self.revoked_at is not None:
            return ReviewLink.State.REVOKED
        if self.expires_at <= timezone.now():
            return ReviewLink.State.EXPIRED
        return ReviewLink.State.ACTIVE

    @property
    def is_active(self) -> bool:
        return self.state == ReviewLink.State.ACTIVE

    @property
    def has_password(self) -> bool:
        return bool(self.password)

    @property
    def title(self) -> str:
        return self.label or "Review"

    def shared_shots(self) -> ShotQuerySet:
        """Every shot the link covers: the whole cut is whatever is on the board now."""
        shots = Shot.objects.filter(project_id=self.project_id)
        if self.scope == ReviewLink.Scope.SHOTS:
            shots = shots.filter(review_links=self)
        return shots

    def _shown(self) -> ShotQuerySet:
        return (self.shared_shots()
                .filter(review__in=ReviewLink.SHOWN,
                        review_take__state=Generation.State.COMPLETED)
                .exclude(review_take__video=""))

    def shots_to_review(self) -> list[Shot]:
        """The shared shots a guest sees, in board order: those with a finished take under
        review, sent back or approved (that take is what the guest watches)."""
        return list(self._shown().select_related("review_take"))

    def shows(self, shot: Shot) -> bool:
        return self._shown().filter(pk=shot.pk).exists()

    def take_shown(self, take_uid: str) -> Generation | None:
        """The take with that uid if the guest may watch it (the take under review of a shot
        shown), else None: never another take, of that shot or any other."""
        shot = self._shown().filter(review_take__uid=take_uid).select_related(
            "review_take__project").first()
        return shot.review_take if shot else None

    def touch(self, *, entered: bool = False) -> None:
        """A guest used the link; `entered`: a guest named themselves (a view)."""
        now = timezone.now()
        fields = {"last_used": now, **({"views": F("views") + 1} if entered else {})}
        ReviewLink.objects.filter(pk=self.pk).update(**fields)
        self.last_used = now


def asset_upload_to(asset: Asset, filename: str) -> str:
    # The stored name never contains anything the uploader chose.
    ext = filename.rsplit(".", 1)[-1].lower() if "." in filename else "bin"
    return f"teams/{asset.project.team_id}/projects/{asset.project_id}/{asset.uid}.{ext}"


def asset_derived_to(asset: Asset, filename: str) -> str:
    ext = filename.rsplit(".", 1)[-1].lower() if "." in filename else "bin"
    return (f"teams/{asset.project.team_id}/projects/{asset.project_id}/"
            f"{asset.uid}-{uuid.uuid4().hex[:8]}.{ext}")


class AssetQuerySet(TeamScopedQuerySet):
    team_path = "project__team"

    def images(self) -> AssetQuerySet:
        return self.filter(kind=Asset.Kind.IMAGE)

    def store(self, *, project: Project, upload: UploadedFile, user: User | None) -> Asset:
        """Validate an upload, then store it with its thumbnail and poster.

        Raises media.MediaError with a message for the user; nothing is stored then.
        """
        inspected = media.inspect_upload(upload)
        asset = Asset(project=project, kind=inspected.kind, content_type=inspected.content_type,
                      original_name=inspected.original_name, size=inspected.size,
                      sha256=inspected.sha256, width=inspected.width, height=inspected.height,
                      duration=inspected.duration, uploaded_by=user)
        try:
            asset.file.save(f"original.{inspected.ext}", inspected.content, save=False)
            if inspected.thumbnail:
                asset.thumbnail.save("thumb.jpg", ContentFile(inspected.thumbnail), save=False)
            if inspected.poster:
                asset.poster.save("poster.jpg", ContentFile(inspected.poster), save=False)
            asset.save()
        except BaseException:
            # Files are written before the row; a failed insert must not leave orphans.
            asset.delete_files()
            raise
        return asset


class Asset(models.Model):
    class Kind(models.TextChoices):
        IMAGE = "image", "Image"
        VIDEO = "video", "Video"
        AUDIO = "audio", "Audio"

    uid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    project = models.ForeignKey(Project, models.CASCADE, related_name="assets")
    kind = models.CharField(max_length=8, choices=Kind.choices)
    file = models.FileField(upload_to=asset_upload_to, max_length=255)
    content_type = models.CharField(max_length=64)
    original_name = models.CharField(max_length=255, blank=True)
    size = models.BigIntegerField()
    sha256 = models.CharField(max_length=64)
    width = models.PositiveIntegerField(null=True, blank=True)
    height = models.PositiveIntegerField(null=True, blank=True)
    duration = models.FloatField(null=True, blank=True)
    # A small JPEG for cards and pickers: the image itself, or a video's poster frame.
    thumbnail = models.FileField(upload_to=asset_derived_to, max_length=255, blank=True)
    poster = models.FileField(upload_to=asset_derived_to, max_length=255, blank=True)
    # Derived assets (a take's last frame, say) record what they came from.
    derived_from = models.ForeignKey("self", models.SET_NULL, null=True, blank=True,
                                     related_name="derivatives")
    # A frame taken from a take (the last frame that starts a continuing shot).
    from_take = models.ForeignKey("Generation", models.SET_NULL, null=True, blank=True,
                                  related_name="derived_assets")
    uploaded_by = models.ForeignKey(settings.AUTH_USER_MODEL, models.SET_NULL, null=True,
                                    blank=True, related_name="+")
    created = models.DateTimeField(default=timezone.now)

    objects = AssetQuerySet.as_manager()

    class Meta:
        ordering = ["-created"]

    def __str__(self) -> str:
        return self.original_name or str(self.uid)

    @property
    def display_name(self) -> str:
        return self.original_name or f"{self.kind} {self.uid.hex[:8]}"

    @property
    def size_label(self) -> str:
        size = float(self.size)
        for unit in ("B", "KB", "MB", "GB"):
            if size < 1024 or unit == "GB":
                return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
            size /= 1024
        return ""

    def delete_files(self) -> None:
        for field in (self.file, self.thumbnail, self.poster):
            if field:
                field.storage.delete(field.name)


# Boards ping every 30 s; a connection silent for longer than two pings died with its server.
PRESENCE_TIMEOUT = timedelta(seconds=75)


class PresenceQuerySet(models.QuerySet):
    def live(self) -> PresenceQuerySet:
        return self.filter(seen__gte=timezone.now() - PRESENCE_TIMEOUT)

    def stale(self) -> PresenceQuerySet:
        return self.filter(seen__lt=timezone.now() - PRESENCE_TIMEOUT)

    def viewers(self, project_id: int) -> list[User]:
        """Distinct people with the board open, in the order they arrived."""
        rows = self.live().filter(project_id=project_id).select_related("user")
        seen: dict[int, User] = {}
        for row in rows.order_by("connected"):
            seen.setdefault(row.user_id, row.user)
        return list(seen.values())


class Presence(models.Model):
    """One open board websocket; the board shows the distinct users behind the live rows."""

    channel_name = models.CharField(max_length=200, unique=True)
    project = models.ForeignKey(Project, models.CASCADE, related_name="presences")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, models.CASCADE, related_name="+")
    connected = models.DateTimeField(default=timezone.now)
    seen = models.DateTimeField(default=timezone.now)

    objects = PresenceQuerySet.as_manager()

    def __str__(self) -> str:
        return f"{self.user} on {self.project}"


def take_upload_to(take: Generation, filename: str) -> str:
    # One name per take and kind, so a resumed download overwrites instead of piling up copies.
    return (f"teams/{take.project.team_id}/projects/{take.project_id}/takes/"
            f"{take.uid}-{filename}")


# The task that moves a chain render on when one of its takes ends (see Generation.advance).
CHAIN_TASK = "storyboard.tasks.advance_chain"


class GenerationQuerySet(TeamScopedQuerySet):
    team_path = "project__team"

    def active(self) -> GenerationQuerySet:
        return self.exclude(state__in=Generation.TERMINAL)

    def stuck(self, *, older_than: timedelta) -> GenerationQuerySet:
        """Unfinished takes nobody has moved for a while: a worker died or a webhook never came.

        Left out: takes only a person (or a late webhook) can move on — a video that could not
        be fetched, and a lost submit with no request id to ask the provider about.
        """
        # Chained takes wait for their upstream, not for a worker: chainrun.resume moves them.
        return self.active().filter(updated__lt=timezone.now() - older_than).exclude(
            state__in=(Generation.State.UNFETCHED, Generation.State.CHAINED)).exclude(
            state=Generation.State.OUTCOME_UNKNOWN, request_id="")

    def for_take_list(self) -> GenerationQuerySet:
        """What a shot's take rows show: who made each take, and its seam."""
        return self.select_related("created_by").prefetch_related("seams_above")

    def unresolved(self) -> GenerationQuerySet:
        """Takes whose charge is not known yet; each keeps its hold until it is."""
        return self.filter(state__in=Generation.UNRESOLVED)


class Generation(models.Model):
    """One take: one request to one provider endpoint, and what came back."""

    class State(models.TextChoices):
        PENDING = "pending", "Waiting"
        HELD = "held", "Budget held"
        SUBMITTING = "submitting", "Submitting"
        SUBMITTED = "submitted", "Submitted"
        IN_QUEUE = "in_queue", "In queue"
        IN_PROGRESS = "in_progress", "Generating"
        DOWNLOADING = "downloading", "Saving video"
        COMPLETED = "completed", "Done"
        FAILED = "failed", "Failed"
        CANCELED = "canceled", "Canceled"
        # A submit whose answer was lost: the provider may be working on it. Never resubmit
        # (a second submit is paid twice); reconcile by polling instead.
        OUTCOME_UNKNOWN = "outcome_unknown", "Outcome unknown"
        # Finished at the provider (so billed), but the video could not be fetched after every
        # retry. Its worst case stays held until a retry fetches it or a producer settles it.
        UNFETCHED = "unfetched", "Finished, not fetched"
        # Part of a chain render: its worst case is held, and it starts (moves to HELD) once the
        # take it continues from has finished (chainrun.advance).
        CHAINED = "chained", "Waiting for upstream"

    TERMINAL = (State.COMPLETED, State.FAILED, State.CANCELED)
    # Takes whose money waits on a fact only the provider (or a person) can supply: they keep
    # their hold, and the budget page offers a producer to settle them by hand.
    UNRESOLVED = (State.OUTCOME_UNKNOWN, State.UNFETCHED)

    uid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    shot = models.ForeignKey(Shot, models.CASCADE, related_name="takes")
    project = models.ForeignKey(Project, models.CASCADE, related_name="takes")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, models.SET_NULL, null=True,
                                   blank=True, related_name="+")
    provider = models.CharField(max_length=32)
    endpoint = models.CharField(max_length=100)
    # The exact arguments sent to the provider, so a take can be explained and reproduced.
    input = models.JSONField(default=dict)
    request_id = models.CharField(max_length=128, blank=True, db_index=True)
    state = models.CharField(max_length=16, choices=State.choices, default=State.PENDING,
                             db_index=True)
    queue_position = models.IntegerField(null=True, blank=True)
    progress = models.FloatField(default=0)
    logs = models.JSONField(default=list, blank=True)
    error = models.TextField(blank=True)
    seed = models.BigIntegerField(null=True, blank=True)
    # The video as the provider delivered it, and our house-format copy (H.264, a keyframe every
    # second, AAC 48 kHz) that players, last-frame seeks and the animatic use.
    original = models.FileField(upload_to=take_upload_to, max_length=255, blank=True)
    video = models.FileField(upload_to=take_upload_to, max_length=255, blank=True)
    poster = models.FileField(upload_to=take_upload_to, max_length=255, blank=True)
    width = models.PositiveIntegerField(null=True, blank=True)
    height = models.PositiveIntegerField(null=True, blank=True)
    duration = models.FloatField(null=True, blank=True)
    estimated_micros = models.BigIntegerField(default=0)
    actual_micros = models.BigIntegerField(null=True, blank=True)
    # Local renders charge the price of the endpoint they stand in for, marked as simulated.
    simulated = models.BooleanField(default=False)
    # For a continuing take: the take whose last frame this one started from, when that frame
    # shows in the upstream's clip, and the hash of its pixels (frames.pixel_hash): exactly what
    # it started from, even if the upstream take is deleted later.
    upstream = models.ForeignKey("self", models.SET_NULL, null=True, blank=True,
                                 related_name="downstream")
    upstream_frame_at = models.FloatField(null=True, blank=True)
    upstream_frame_sha256 = models.CharField(max_length=64, blank=True)
    # "Regenerate from note": the comment this take answers.
    answers = models.ForeignKey("Comment", models.SET_NULL, null=True, blank=True,
                                related_name="answered_by")
    # A final render: the approved draft whose seed and inputs it keeps.
    draft = models.ForeignKey("self", models.SET_NULL, null=True, blank=True,
                              related_name="finals")
    # The first and last frames of the delivered clip as lossless PNGs, taken once when the
    # take completed (frames.py): the last starts the next shot of a chain, and seams compare
    # them. `last_frame_at` is when the last one shows (seconds, in the house copy).
    first_frame = models.FileField(upload_to=take_upload_to, max_length=255, blank=True)
    last_frame = models.FileField(upload_to=take_upload_to, max_length=255, blank=True)
    first_frame_sha256 = models.CharField(max_length=64, blank=True)
    last_frame_sha256 = models.CharField(max_length=64, blank=True)
    last_frame_at = models.FloatField(null=True, blank=True)
    # A take queued by "Render chain from here": its run, its place in the run's order, and what
    # the card says about it while it waits or after the chain stopped above it.
    chain_run = models.ForeignKey("ChainRun", models.SET_NULL, null=True, blank=True,
                                  related_name="takes")
    chain_step = models.PositiveSmallIntegerField(null=True, blank=True)
    chain_note = models.CharField(max_length=200, blank=True)
    cancel_requested = models.BooleanField(default=False)
    # The provider said it cannot stop this take (it finishes and is charged all the same)...
    cancel_refused = models.BooleanField(default=False)
    # ...and someone chose not to keep its result: once it arrives it is charged, not kept.
    discard = models.BooleanField(default=False)
    # When a worker claimed the download; a claim older than a few minutes belongs to a dead
    # worker and may be taken over.
    claimed_at = models.DateTimeField(null=True, blank=True)
    # Provider polls and calls that failed transiently in a row (for backoff), or tries to
    # fetch the finished video.
    attempts = models.PositiveIntegerField(default=0)
    # The first try to fetch the provider's finished video: retries stop an hour after it.
    fetch_started = models.DateTimeField(null=True, blank=True)
    # An unresolved take a producer settled by hand ("billed" or "not billed"), and why.
    resolved_by = models.ForeignKey(settings.AUTH_USER_MODEL, models.SET_NULL, null=True,
                                    blank=True, related_name="+")
    resolution_note = models.CharField(max_length=300, blank=True)
    created = models.DateTimeField(default=timezone.now)
    submitted_at = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    updated = models.DateTimeField(default=timezone.now, db_index=True)

    objects = GenerationQuerySet.as_manager()

    class Meta:
        ordering = ["-created"]
        constraints = [
            models.CheckConstraint(condition=Q(estimated_micros__gte=0),
                                   name="generation_estimate_not_negative"),
            models.CheckConstraint(condition=Q(progress__gte=0) & Q(progress__lte=1),
                                   name="generation_progress_in_range"),
        ]

    def __str__(self) -> str:
        return f"Take {self.uid.hex[:8]} of {self.shot}"

    @property
    def is_terminal(self) -> bool:
        return self.state in self.TERMINAL

    @property
    def is_unresolved(self) -> bool:
        return self.state in self.UNRESOLVED

    @property
    def percent(self) -> int:
        return round(self.progress * 100)

    @property
    def elapsed(self) -> float | None:
        if self.submitted_at is None:
            return None
        end = self.finished_at or timezone.now()
        return (end - self.submitted_at).total_seconds()

    @property
    def eta(self) -> float | None:
        """Seconds left, extrapolated from progress so far (None until there is some)."""
        if self.state != self.State.IN_PROGRESS or not self.started_at or self.progress <= 0.02:
            return None
        spent = (timezone.now() - self.started_at).total_seconds()
        return max(0.0, spent * (1 - self.progress) / self.progress)

    @property
    def seam(self) -> Seam | None:
        """This take's newest joint with the shot it continues, if measured (the take lists
        prefetch `seams_above`, newest first)."""
        return next(iter(self.seams_above.all()), None)

    # Frames, for chains and seams. Open the images with these; the FileFields are the files.

    def first_frame_image(self) -> Image.Image | None:
        """The first frame of the finished clip (RGB), or None before it was captured."""
        return _open_frame(self.first_frame)

    def last_frame_image(self) -> Image.Image | None:
        """The last frame of the finished clip (RGB), or None before it was captured."""
        return _open_frame(self.last_frame)

    # Every stored clip is in the house format, so timecodes count frames at its rate.

    @property
    def last_frame_timecode(self) -> str:
        return frames.timecode(self.last_frame_at or 0, house.FPS)

    @property
    def started_from_timecode(self) -> str:
        """When the frame this take started from shows in its upstream's clip."""
        if self.upstream_frame_at is None:
            return ""
        return frames.timecode(self.upstream_frame_at, house.FPS)

    def advance(self, to: str, *, expected: tuple[str, ...], **fields) -> bool:
        """Move to `to` only if the row is still in one of `expected`; True if this call did.

        A conditional UPDATE, so duplicate webhooks and racing workers cannot move a take twice.
        """
        now = timezone.now()
        fields = {"state": to, "updated": now, **fields}
        if to in (self.State.SUBMITTED, self.State.IN_QUEUE,
                  self.State.IN_PROGRESS) and self.submitted_at is None:
            fields.setdefault("submitted_at", now)
        if to == self.State.IN_PROGRESS and self.started_at is None:
            fields.setdefault("started_at", now)
        if to in self.TERMINAL:
            fields.setdefault("finished_at", now)
        was = self.state
        with transaction.atomic():
            moved = Generation.objects.filter(pk=self.pk, state__in=expected).update(**fields)
            if moved:
                # After commit: a transition rolled back by an outer transaction never happened.
                transaction.on_commit(partial(logs.take_moved, take_id=self.pk, take_uid=self.uid,
                                              project_id=self.project_id, was=was, now=to))
                for name, value in fields.items():
                    setattr(self, name, value)
                if to in self.TERMINAL:
                    # Money follows the take's fate in the same transaction: captured when it
                    # completed, released when it failed or was canceled — exactly once.
                    Budget.for_team(self.project.team_id).settle(take=self)
                    # Pipelines hear of the end in the same transaction (an outbox row per
                    # endpoint), so a transition rolled back announces nothing.
                    WebhookEndpoint.objects.fire(
                        team_id=self.project.team_id, data=self.webhook_data(),
                        event=WebhookEvent.TAKE_FINISHED if to == self.State.COMPLETED
                        else WebhookEvent.TAKE_FAILED)
                    if self.chain_run_id:
                        # Every end of a take passes here (completion, failure, refusal,
                        # cancel, settling by hand), so its chain hears of each one without
                        # every path remembering to tell it. Named, not imported: tasks.py sits
                        # above the models.
                        run_id = self.chain_run_id
                        transaction.on_commit(lambda: import_string(CHAIN_TASK).enqueue(
                            run_id=run_id))
        if not moved:
            self.refresh_from_db()
        return bool(moved)

    def webhook_data(self) -> dict:
        """What take.finished / take.failed tell a pipeline: which take, how it ended and what
        it cost; never the provider's request id or anything of its account."""
        return {"take_uid": str(self.uid), "status": str(self.state), "shot_id": self.shot_id,
                "project_id": self.project_id, "endpoint": self.endpoint,
                "cost_micros": self.actual_micros or 0, "simulated": self.simulated,
                "error": self.error if self.state != self.State.COMPLETED else "",
                "duration": self.duration,
                "api_url": f"{settings.SITE_URL}/api/v1/takes/{self.uid}"}

    def report(self, *, progress: float | None = None, log: str | None = None,
               queue_position: int | None = None) -> bool:
        """Record progress while the state stays what it is; False once the take moved on."""
        fields: dict = {"updated": timezone.now()}
        if progress is not None:
            # Against the stored value: another process (a reconciler) may have reported more.
            fields["progress"] = Greatest(F("progress"), Value(min(1.0, progress)))
        if queue_position is not None:
            fields["queue_position"] = queue_position
        row = Generation.objects.filter(pk=self.pk, state=self.state)
        with transaction.atomic():
            if log:
                # Appended to the stored lines, read under the row's lock: from this object's
                # copy, two processes reporting at once would each drop the other's line.
                stored = row.select_for_update().values_list("logs", flat=True).first()
                if stored is None:
                    return False
                # Keep the tail: a chatty provider must not grow the row without bound.
                fields["logs"] = [*stored, log][-200:]
            moved = row.update(**fields)
        if moved:
            fields.pop("progress", None)
            if progress is not None:
                self.progress = min(1.0, max(self.progress, progress))
            for name, value in fields.items():
                setattr(self, name, value)
        return bool(moved)


def _open_frame(field: models.fields.files.FieldFile) -> Image.Image | None:
    if not field:
        return None
    with field.open("rb") as fh, Image.open(fh, formats=["PNG"]) as image:
        return image.convert("RGB")


class ChainRunQuerySet(TeamScopedQuerySet):
    team_path = "project__team"

    def running(self) -> ChainRunQuerySet:
        return self.filter(state=ChainRun.State.RUNNING)

    def on_board(self, project: Project) -> ChainRunQuerySet:
        """What the board's chain strip shows: the newest runs going now or ended in the last
        hour (so people see how a chain ended). One query."""
        recent = timezone.now() - CHAIN_SHOWN_FOR
        return self.filter(Q(state=ChainRun.State.RUNNING) | Q(finished__gte=recent),
                           project=project).select_related("started_by").order_by(
            "-created")[:CHAINS_SHOWN]


# A finished chain stays on the board this long, and the strip shows at most this many chains
# (the newest: one chain at a time per shot keeps running ones among them in practice).
CHAIN_SHOWN_FOR = timedelta(hours=1)
CHAINS_SHOWN = 3


class ChainRun(models.Model):
    """One "Render chain from here": a shot and every shot downstream of it, one take each, in
    order, all held against the budget at once when it started (chainrun.py)."""

    class State(models.TextChoices):
        RUNNING = "running", "Rendering"
        DONE = "done", "Finished"
        # A take failed, was refused or canceled: nothing below it was started.
        STOPPED = "stopped", "Stopped"
        CANCELED = "canceled", "Canceled"

    project = models.ForeignKey(Project, models.CASCADE, related_name="chain_runs")
    # The shot it was started from (kept when the shot goes, so the books still explain it).
    root = models.ForeignKey(Shot, models.SET_NULL, null=True, blank=True,
                             related_name="chain_runs")
    started_by = models.ForeignKey(settings.AUTH_USER_MODEL, models.SET_NULL, null=True,
                                   blank=True, related_name="+")
    state = models.CharField(max_length=16, choices=State.choices, default=State.RUNNING,
                             db_index=True)
    # The shots in render order as they were named when it started: [[shot id, label,
    # step of its upstream or null], ...]. Step n's take waits for the take of plan[n][2].
    plan = models.JSONField(default=list)
    held_micros = models.BigIntegerField(default=0)
    # Progress, kept on the row so the board shows it with one query.
    finished_steps = models.PositiveSmallIntegerField(default=0)
    spent_micros = models.BigIntegerField(default=0)
    current = models.CharField(max_length=140, blank=True)
    outcome = models.CharField(max_length=300, blank=True)
    created = models.DateTimeField(default=timezone.now)
    finished = models.DateTimeField(null=True, blank=True)

    objects = ChainRunQuerySet.as_manager()

    class Meta:
        ordering = ["-created"]
        constraints = [
            # Two people pressing at once get one chain (chainrun.start_chain checks overlaps
            # under the project lock; this is the database's word on the same root).
            models.UniqueConstraint(fields=["root"], condition=Q(state="running"),
                                    name="chain_one_running_per_root"),
        ]

    def __str__(self) -> str:
        return f"Chain of {self.steps} from {self.label(0)}"

    @property
    def steps(self) -> int:
        return len(self.plan)

    @property
    def left(self) -> int:
        return self.steps - self.finished_steps

    @property
    def is_running(self) -> bool:
        return self.state == ChainRun.State.RUNNING

    def label(self, step: int) -> str:
        return self.plan[step][1] if 0 <= step < len(self.plan) else ""

    @property
    def label0(self) -> str:
        """The shot it started from, as it was named then."""
        return self.label(0)


# ---------------------------------------------------------------------------------------------
# Money. Integer micro-dollars; every change is a conditional UPDATE plus a ledger row in one
# transaction, and CHECK constraints make `held + spent ≤ limit` impossible to break.


class BudgetRefused(Exception):
    """A hold the budget cannot cover; the message names the shortfall and who can help."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def _next_period_start(after: datetime, reset_day: int) -> datetime:
    year, month = after.year, after.month + 1
    if month == 13:
        year, month = year + 1, 1
    return after.replace(year=year, month=month, day=reset_day, hour=0, minute=0, second=0,
                         microsecond=0)


# Producers are told live on the board when commitments pass these shares of the limit.
BUDGET_THRESHOLDS = (80, 100)


class Budget(models.Model):
    team = models.OneToOneField(Team, models.CASCADE, related_name="budget")
    limit_micros = models.BigIntegerField(default=50_000_000)
    held_micros = models.BigIntegerField(default=0)
    spent_micros = models.BigIntegerField(default=0)
    # What takes cost beyond their holds this period (a delivery bigger than its worst case).
    # Kept apart from `spent` so the CHECK below still proves no hold was granted past the
    # limit; it counts against what is left, which may then go negative.
    overrun_micros = models.BigIntegerField(default=0)
    # Of the spend, what local previews charged at the endpoint's price (shown separately).
    simulated_micros = models.BigIntegerField(default=0)
    reset_day = models.PositiveSmallIntegerField(default=1)
    period_start = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.CheckConstraint(condition=Q(limit_micros__gte=0), name="budget_limit_gte_0"),
            models.CheckConstraint(condition=Q(held_micros__gte=0), name="budget_held_gte_0"),
            models.CheckConstraint(condition=Q(spent_micros__gte=0), name="budget_spent_gte_0"),
            models.CheckConstraint(condition=Q(overrun_micros__gte=0),
                                   name="budget_overrun_gte_0"),
            models.CheckConstraint(
                condition=Q(held_micros__lte=models.F("limit_micros") - models.F("spent_micros")),
                name="budget_never_overspent"),
            models.CheckConstraint(condition=Q(reset_day__gte=1) & Q(reset_day__lte=28),
                                   name="budget_reset_day_in_month"),
        ]

    def __str__(self) -> str:
        return f"Budget of {self.team}"

    @property
    def charged_micros(self) -> int:
        """Everything the providers charged this period, overruns included."""
        return self.spent_micros + self.overrun_micros

    @property
    def remaining_micros(self) -> int:
        """What new takes may still hold; negative after an overrun used more than was left."""
        return self.limit_micros - self.held_micros - self.charged_micros

    @property
    def over_micros(self) -> int:
        """How far past the limit overruns took the team (0 when within it)."""
        return max(0, -self.remaining_micros)

    @property
    def committed_micros(self) -> int:
        return self.held_micros + self.charged_micros

    @property
    def committed_percent(self) -> int:
        if not self.limit_micros:
            return 100
        return self.committed_micros * 100 // self.limit_micros

    def threshold_crossed(self, before_percent: int) -> int | None:
        """The highest notice threshold passed since `before_percent`, if any."""
        crossed = [t for t in BUDGET_THRESHOLDS if before_percent < t <= self.committed_percent]
        return max(crossed, default=None)

    def ledger_totals(self) -> dict[str, int]:
        """Counters recomputed from the ledger; they must always equal the stored ones.

        Spend and overruns count this period's rows; holds count whenever they were made.
        """
        entries = self.entries.all()
        sums = dict(entries.values_list("kind").annotate(total=models.Sum("amount_micros")))
        period = dict(entries.filter(created__gte=self.period_start).values_list("kind")
                      .annotate(total=models.Sum("amount_micros")))
        held = sums.get("hold", 0) - sums.get("capture", 0) - sums.get("release", 0)
        return {"held_micros": held, "spent_micros": period.get("capture", 0),
                "overrun_micros": period.get("overrun", 0) + period.get("extra", 0)}

    @property
    def period_end(self) -> datetime:
        return _next_period_start(self.period_start, self.reset_day)

    @classmethod
    def for_team(cls, team: Team | int) -> Budget:
        team_id = team if isinstance(team, int) else team.pk
        budget, _ = cls.objects.get_or_create(team_id=team_id)
        budget.roll_over()
        return budget

    def roll_over(self, *, now: datetime | None = None) -> bool:
        """Start a new period if this one has ended: spend resets, holds carry over.

        Conditional on the period it read, so two processes noticing at once roll it once.
        """
        now = now or timezone.now()
        start = self.period_start
        while _next_period_start(start, self.reset_day) <= now:
            start = _next_period_start(start, self.reset_day)
        if start == self.period_start:
            return False
        with transaction.atomic():
            # Lock first: a capture in flight holds this row until it commits, so the sums
            # below see it (and a second process finds the period already rolled).
            if Budget.objects.select_for_update().filter(
                    pk=self.pk, period_start=self.period_start).first() is None:
                self.refresh_from_db()
                return False
            # Captures already dated in the new period (written a moment after a check that
            # still saw the old one) stay counted, so counters always equal the ledger.
            since = LedgerEntry.objects.filter(budget=self, created__gte=start)
            spent = since.filter(kind=LedgerEntry.Kind.CAPTURE).aggregate(
                total=models.Sum("amount_micros"))["total"] or 0
            overrun = since.filter(kind__in=LedgerEntry.BEYOND_HOLDS).aggregate(
                total=models.Sum("amount_micros"))["total"] or 0
            simulated = since.filter(kind__in=LedgerEntry.CHARGES, simulated=True).aggregate(
                total=models.Sum("amount_micros"))["total"] or 0
            rolled = Budget.objects.filter(pk=self.pk, period_start=self.period_start).update(
                period_start=start, spent_micros=spent, overrun_micros=overrun,
                simulated_micros=simulated)
            if rolled:
                LedgerEntry.objects.create(budget=self, kind=LedgerEntry.Kind.ADJUSTMENT,
                                           amount_micros=0,
                                           note=f"New period from {start:%Y-%m-%d}")
        self.refresh_from_db()
        return bool(rolled)

    def hold(self, *, take: Generation | None, amount: int, user: User | None) -> None:
        """Reserve `amount` for a take in one conditional statement, or raise BudgetRefused."""
        if amount < 0:
            raise ValueError("A hold cannot be negative.")
        with transaction.atomic():
            granted = Budget.objects.filter(
                pk=self.pk,
                held_micros__lte=models.F("limit_micros") - models.F("spent_micros")
                - models.F("overrun_micros") - amount,
            ).update(held_micros=models.F("held_micros") + amount)
            if not granted:
                self.refresh_from_db()
                raise BudgetRefused(self._refusal(amount))
            LedgerEntry.objects.create(budget=self, take=take, user=user, amount_micros=amount,
                                       kind=LedgerEntry.Kind.HOLD,
                                       simulated=bool(take and take.simulated))

    def settle(self, *, take: Generation) -> None:
        """Resolve a take's hold once: capture what it cost, release the rest.

        Called in the same transaction as the take's move to a terminal state. The first
        resolution row is inserted before the counters move, so its unique (take, kind)
        constraint is the claim: a racing second settle fails to insert and changes nothing.
        The take's state is read afresh, never trusted from the caller's copy.

        The charge is what the provider really billed, never capped at the hold: the part the
        hold covered is the capture, anything beyond it is an overrun line of its own that
        counts against the budget (and may leave it negative until a producer raises it).
        """
        with transaction.atomic():
            fresh = Generation.objects.filter(pk=take.pk).values(
                "state", "actual_micros", "simulated", "resolution_note",
                "resolved_by__first_name", "resolved_by__last_name",
                "resolved_by__username").first()
            if fresh is None or fresh["state"] not in Generation.TERMINAL:
                return
            hold = LedgerEntry.objects.filter(take_id=take.pk,
                                              kind=LedgerEntry.Kind.HOLD).first()
            if hold is None:
                return
            cost = max(0, fresh["actual_micros"] or 0)
            captured = min(cost, hold.amount_micros)
            overrun = cost - captured
            rest = hold.amount_micros - captured
            simulated = fresh["simulated"]
            note = ""
            if fresh["resolved_by__username"]:
                who = " ".join(filter(None, (fresh["resolved_by__first_name"],
                                             fresh["resolved_by__last_name"])))
                verdict = "billed" if cost else "not billed"
                note = (f"Settled by hand by {who or fresh['resolved_by__username']}: "
                        f"{verdict} — {fresh['resolution_note']}")[:300]
            rows = []
            if captured:
                rows.append((LedgerEntry.Kind.CAPTURE, captured))
            if rest or not captured:
                rows.append((LedgerEntry.Kind.RELEASE, rest))
            if overrun:
                rows.append((LedgerEntry.Kind.OVERRUN, overrun))
            try:
                with transaction.atomic():
                    for kind, amount in rows:
                        row_note = note
                        if kind == LedgerEntry.Kind.OVERRUN:
                            row_note = (f"Cost {usd(cost)} exceeded its hold of "
                                        f"{usd(hold.amount_micros)}")
                        LedgerEntry.objects.create(budget=self, take_id=take.pk,
                                                   user_id=hold.user_id, amount_micros=amount,
                                                   kind=kind, simulated=simulated,
                                                   note=row_note)
            except IntegrityError:
                return  # another settle got here first
            Budget.objects.filter(pk=self.pk).update(
                held_micros=models.F("held_micros") - hold.amount_micros,
                spent_micros=models.F("spent_micros") + captured,
                overrun_micros=models.F("overrun_micros") + overrun,
                simulated_micros=models.F("simulated_micros") + (cost if simulated else 0),
            )
            if overrun:
                # The caller (generation) tells producers; here the books only record it.
                logger.warning("Take %s cost %d µ$, %d over its hold", take.pk, cost, overrun)

    def charge_unheld(self, *, take: Generation, amount: int, note: str,
                      extra_request: str = "") -> bool:
        """A charge no hold covers any more, counted like an overrun; False if already booked.

        Without `extra_request`: the provider billed a take after it was settled as not billed
        (once per take). With it: the provider also ran (and billed) another request for this
        take — it answered the create with an error, then ran it anyway (once per request).
        """
        kind = LedgerEntry.Kind.EXTRA if extra_request else LedgerEntry.Kind.OVERRUN
        try:
            with transaction.atomic():
                LedgerEntry.objects.create(budget=self, take=take, user_id=take.created_by_id,
                                           amount_micros=amount, kind=kind,
                                           request_id=extra_request,
                                           simulated=take.simulated, note=note[:300])
                Budget.objects.filter(pk=self.pk).update(
                    overrun_micros=models.F("overrun_micros") + amount,
                    simulated_micros=models.F("simulated_micros")
                    + (amount if take.simulated else 0))
        except IntegrityError:
            return False
        return True

    def set_limit(self, *, limit: int, user: User, reset_day: int | None = None) -> bool:
        """Change the limit (and reset day); False, changing nothing, if the limit is below
        what is held and charged. Saving what is already set records nothing."""
        with transaction.atomic():
            old = Budget.objects.select_for_update().get(pk=self.pk)
            day = reset_day or old.reset_day
            if limit == old.limit_micros and day == old.reset_day:
                self.refresh_from_db()
                return True
            changed = Budget.objects.filter(
                pk=self.pk,
                held_micros__lte=limit - models.F("spent_micros") - models.F("overrun_micros"),
            ).update(limit_micros=limit, reset_day=day)
            if changed:
                notes = []
                if limit != old.limit_micros:
                    notes.append(f"Limit {usd(old.limit_micros)} → {usd(limit)}")
                if day != old.reset_day:
                    notes.append(f"periods start on day {day}")
                LedgerEntry.objects.create(budget=self, user=user,
                                           amount_micros=limit - old.limit_micros,
                                           kind=LedgerEntry.Kind.ADJUSTMENT,
                                           note="; ".join(notes))
        self.refresh_from_db()
        return bool(changed)

    def _refusal(self, amount: int) -> str:
        who = ", ".join(m.user.label for m in self.team.memberships.filter(
            role__in=("owner", "producer")).select_related("user")[:3])
        who = who or "An owner or producer"
        if self.remaining_micros < 0:
            return (f"The team is {usd(-self.remaining_micros)} over this month's budget: "
                    f"takes cost more than was held for them. Nothing new can start until "
                    f"the limit is raised; {who} can raise it.")
        return (f"This take needs up to {usd(amount)}, but the team has only "
                f"{usd(self.remaining_micros)} left this month "
                f"(short by {usd(amount - self.remaining_micros)}). "
                f"{who} can raise the budget.")


class LedgerQuerySet(models.QuerySet):
    def in_period(self, budget: Budget) -> LedgerQuerySet:
        return self.filter(created__gte=budget.period_start)

    def captures(self) -> LedgerQuerySet:
        """What the providers charged: captures and overruns."""
        return self.filter(kind__in=LedgerEntry.CHARGES)

    def totals_by(self, *fields: str) -> list[dict]:
        """Sums of amount per value of `fields`, largest first (for the dashboard's bars)."""
        return list(self.values(*fields).annotate(total=models.Sum("amount_micros"))
                    .order_by("-total"))

    def daily(self) -> list[dict]:
        return list(self.annotate(day=TruncDate("created")).values("day")
                    .annotate(total=models.Sum("amount_micros")).order_by("day"))


class LedgerEntry(models.Model):
    """Append-only: every hold, capture, release and limit change, with who caused it."""

    class Kind(models.TextChoices):
        HOLD = "hold", "Hold"
        CAPTURE = "capture", "Capture"
        RELEASE = "release", "Release"
        ADJUSTMENT = "adjustment", "Adjustment"
        # What a take cost beyond its hold: charged, and counted against the budget.
        OVERRUN = "overrun", "Overrun"
        # Another request the provider ran (and billed) for the same take, e.g. a create it
        # answered with a 5xx and ran anyway; one line per such request.
        EXTRA = "extra", "Extra request"

    # Rows that are money the providers took.
    CHARGES = (Kind.CAPTURE, Kind.OVERRUN, Kind.EXTRA)
    # Charged beyond what was held: the budget's overrun counter.
    BEYOND_HOLDS = (Kind.OVERRUN, Kind.EXTRA)

    budget = models.ForeignKey(Budget, models.CASCADE, related_name="entries")
    take = models.ForeignKey("Generation", models.SET_NULL, null=True, blank=True,
                             related_name="ledger")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, models.SET_NULL, null=True, blank=True,
                             related_name="+")
    kind = models.CharField(max_length=16, choices=Kind.choices)
    amount_micros = models.BigIntegerField()
    simulated = models.BooleanField(default=False)
    note = models.CharField(max_length=300, blank=True)
    # For an extra request: the provider's id of it (the take's own request is on the take).
    request_id = models.CharField(max_length=128, blank=True)
    created = models.DateTimeField(default=timezone.now, db_index=True)

    objects = LedgerQuerySet.as_manager()

    class Meta:
        ordering = ["-created", "-pk"]
        constraints = [
            # Each take is held once and resolved once: never both captured and re-released.
            models.UniqueConstraint(fields=["take", "kind"],
                                    condition=~Q(kind__in=["adjustment", "extra"]),
                                    name="ledger_one_entry_per_take_and_kind"),
            models.UniqueConstraint(fields=["take", "request_id"], condition=Q(kind="extra"),
                                    name="ledger_one_line_per_extra_request"),
        ]

    def __str__(self) -> str:
        return f"{self.kind} {usd(self.amount_micros)}"


# ---------------------------------------------------------------------------------------------
# Seams: how well a continuing take starts where its upstream take ended (storyboard/seams.py).


class SeamThresholds(models.Model):
    """A team's lines between match, check and drift. The defaults were calibrated on chains
    rendered by the offline renderer: continued from the true last frame they score ΔE 0.5–0.8
    and SSIM ≥ 0.99; with the start frame warmed by 15 % ΔE 3.9–8; reframed by 6 % SSIM
    0.71–0.91; another picture ΔE ≥ 7.6 (bench/README.md, "Seam check")."""

    team = models.OneToOneField(Team, models.CASCADE, related_name="seam_thresholds")
    # Mean CIEDE2000 at or below which the colours match, and at or above which they drifted.
    match_delta_e = models.FloatField(default=2.0)
    drift_delta_e = models.FloatField(default=3.5)
    # SSIM of luma at or above which the pictures match, and at or below which they drifted.
    match_ssim = models.FloatField(default=0.95)
    drift_ssim = models.FloatField(default=0.8)
    updated_by = models.ForeignKey(settings.AUTH_USER_MODEL, models.SET_NULL, null=True,
                                   blank=True, related_name="+")
    updated = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=Q(match_delta_e__gte=0) & Q(match_delta_e__lt=models.F("drift_delta_e")),
                name="seam_delta_e_ordered"),
            models.CheckConstraint(
                condition=Q(drift_ssim__gte=-1) & Q(drift_ssim__lt=models.F("match_ssim"))
                & Q(match_ssim__lte=1),
                name="seam_ssim_ordered"),
        ]

    def __str__(self) -> str:
        return f"Seam thresholds of {self.team}"

    @classmethod
    def for_team(cls, team_id: int) -> SeamThresholds:
        """The team's thresholds: the calibrated defaults (unsaved) until someone sets them, so
        reading them never writes."""
        return cls.objects.filter(team_id=team_id).first() or cls(team_id=team_id)

    def verdict(self, *, delta_e: float, ssim: float) -> str:
        """Drift if either number is past its drift line; match if both are within their match
        lines; otherwise someone should look."""
        if delta_e >= self.drift_delta_e or ssim <= self.drift_ssim:
            return Seam.Verdict.DRIFT
        if delta_e <= self.match_delta_e and ssim >= self.match_ssim:
            return Seam.Verdict.MATCH
        return Seam.Verdict.CHECK


def seam_upload_to(seam: Seam, filename: str) -> str:
    return (f"teams/{seam.project.team_id}/projects/{seam.project_id}/seams/"
            f"{seam.upstream_id}-{seam.downstream_id}-{uuid.uuid4().hex[:8]}-{filename}")


class SeamQuerySet(TeamScopedQuerySet):
    team_path = "project__team"

    def rejudge(self, thresholds: SeamThresholds) -> int:
        """Give every seam the verdict `thresholds` make of its stored scores, in one UPDATE."""
        drift = Q(delta_e__gte=thresholds.drift_delta_e) | Q(ssim__lte=thresholds.drift_ssim)
        match = Q(delta_e__lte=thresholds.match_delta_e) & Q(ssim__gte=thresholds.match_ssim)
        return self.update(verdict=models.Case(
            models.When(drift, then=models.Value(Seam.Verdict.DRIFT)),
            models.When(match, then=models.Value(Seam.Verdict.MATCH)),
            default=models.Value(Seam.Verdict.CHECK)))


class Seam(models.Model):
    """One joint, measured once: the upstream take's last frame against the first frame of a
    take that continues it. Kept with the two frames as compared, for the shot page."""

    class Verdict(models.TextChoices):
        MATCH = "match", "Match"
        CHECK = "check", "Check"
        DRIFT = "drift", "Drift"

    project = models.ForeignKey(Project, models.CASCADE, related_name="seams")
    upstream = models.ForeignKey(Generation, models.CASCADE, related_name="seams_below")
    downstream = models.ForeignKey(Generation, models.CASCADE, related_name="seams_above")
    delta_e = models.FloatField()
    ssim = models.FloatField()
    verdict = models.CharField(max_length=8, choices=Verdict.choices)
    before = models.FileField(upload_to=seam_upload_to, max_length=255)
    after = models.FileField(upload_to=seam_upload_to, max_length=255)
    created = models.DateTimeField(default=timezone.now)

    objects = SeamQuerySet.as_manager()

    class Meta:
        ordering = ["-created", "-pk"]
        constraints = [
            models.UniqueConstraint(fields=["upstream", "downstream"], name="seam_one_per_joint"),
        ]

    def __str__(self) -> str:
        return f"Seam {self.upstream_id} → {self.downstream_id}: {self.verdict}"

    @property
    def summary(self) -> str:
        return f"ΔE {self.delta_e:.1f} · SSIM {self.ssim:.2f}"

    def delete_files(self) -> None:
        for field in (self.before, self.after):
            if field:
                field.storage.delete(field.name)


class WorkerBeatQuerySet(models.QuerySet):
    def newest_age(self) -> float | None:
        """Seconds since the freshest beat of any worker; None when no worker ever beat."""
        newest = self.aggregate(newest=Max("beat_at"))["newest"]
        return None if newest is None else (timezone.now() - newest).total_seconds()


class WorkerBeat(models.Model):
    """A task worker saying "still here", so /healthz can tell that jobs are being picked up.

    A row, not a cache key: every process that answers /healthz reads the same database, while
    the cache is per process without Redis. Infrastructure, so it belongs to no team.
    """

    # Forget a worker silent this long: it is gone, not late (host names change on redeploys).
    FORGET_AFTER = timedelta(days=1)

    worker = models.CharField(max_length=64, unique=True)
    beat_at = models.DateTimeField(default=timezone.now)

    objects = WorkerBeatQuerySet.as_manager()

    def __str__(self) -> str:
        return f"{self.worker} at {self.beat_at:%H:%M:%S}"

    @classmethod
    def beat(cls, *, worker: str) -> None:
        now = timezone.now()
        cls.objects.update_or_create(worker=worker, defaults={"beat_at": now})
        cls.objects.filter(beat_at__lt=now - cls.FORGET_AFTER).delete()


# ---------------------------------------------------------------------------------------------
# Exports: the cut leaving the tool (storyboard/export.py makes them).


def export_upload_to(export: Export, filename: str) -> str:
    return (f"teams/{export.project.team_id}/projects/{export.project_id}/exports/"
            f"{export.uid}-{filename}")


class ExportQuerySet(TeamScopedQuerySet):
    team_path = "project__team"

    def active(self) -> ExportQuerySet:
        return self.filter(state__in=Export.ACTIVE)

    def listed(self, project_id: int) -> ExportQuerySet:
        """What the export page lists: the newest exports of the project, with who made them."""
        return (self.filter(project_id=project_id).select_related("created_by")
                .order_by("-created", "-pk")[:EXPORTS_LISTED])


EXPORTS_LISTED = 30


class Export(models.Model):
    """One export of a project's cut: what was asked for, exactly which takes went in, and the
    file that came out (only once complete: a failed or cancelled export offers no file)."""

    class Kind(models.TextChoices):
        ANIMATIC = "animatic", "Animatic (MP4)"
        OTIO = "otio", "OpenTimelineIO (.otio)"
        EDL = "edl", "CMX 3600 EDL"
        FCPXML = "fcpxml", "Final Cut Pro 7 XML"
        BUNDLE = "bundle", "Timeline and media (zip)"

    class State(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        DONE = "done", "Done"
        FAILED = "failed", "Failed"
        CANCELLED = "cancelled", "Cancelled"

    ACTIVE = (State.QUEUED, State.RUNNING)

    uid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    project = models.ForeignKey(Project, models.CASCADE, related_name="exports")
    kind = models.CharField(max_length=16, choices=Kind.choices)
    state = models.CharField(max_length=16, choices=State.choices, default=State.QUEUED,
                             db_index=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, models.SET_NULL, null=True,
                                   blank=True, related_name="+")
    created = models.DateTimeField(default=timezone.now)
    started = models.DateTimeField(null=True, blank=True)
    finished = models.DateTimeField(null=True, blank=True)
    # Moved on by the worker after every shot: a running export it stopped touching lost its
    # worker (export.resume fails it, so the same cut can be asked for again).
    updated = models.DateTimeField(default=timezone.now)
    # The cut in board order, as it was when asked for: one entry per shot, its take's id or
    # null for a slate. Exactly what went in, even if the board changes while it runs.
    shot_ids = models.JSONField(default=list)
    take_ids = models.JSONField(default=list)
    options = models.JSONField(default=dict)
    # Same kind, takes and options: the same cut. One of each runs at a time (the constraint).
    key = models.CharField(max_length=64)
    duration = models.FloatField(null=True, blank=True)  # seconds
    size = models.BigIntegerField(null=True, blank=True)  # bytes
    file = models.FileField(upload_to=export_upload_to, max_length=255, blank=True)
    progress_done = models.PositiveIntegerField(default=0)
    progress_total = models.PositiveIntegerField(default=0)
    message = models.CharField(max_length=1000, blank=True)
    # Shots whose clip was encoded rather than stream-copied (slates, odd clips, captions).
    reencoded = models.JSONField(default=list, blank=True)

    objects = ExportQuerySet.as_manager()

    class Meta:
        ordering = ["-created", "-pk"]
        constraints = [
            models.UniqueConstraint(fields=["project", "key"],
                                    condition=Q(state__in=["queued", "running"]),
                                    name="export_one_active_per_cut"),
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} of {self.project_id} ({self.state})"

    @property
    def is_active(self) -> bool:
        return self.state in self.ACTIVE

    @property
    def elapsed(self) -> float | None:
        if self.started is None:
            return None
        return ((self.finished or timezone.now()) - self.started).total_seconds()

    @property
    def download_name(self) -> str:
        stem = re.sub(r"[^A-Za-z0-9]+", "-", self.project.name).strip("-").lower() or "cut"
        extension = {"animatic": "mp4", "otio": "otio", "edl": "edl", "fcpxml": "xml",
                     "bundle": "zip"}[self.kind]
        suffix = "animatic" if self.kind == self.Kind.ANIMATIC else "cut"
        return f"{stem}-{suffix}-{self.pk}.{extension}"

    @property
    def content_type(self) -> str:
        return {"animatic": "video/mp4", "otio": "application/json",
                "edl": "text/plain; charset=utf-8", "fcpxml": "application/xml",
                "bundle": "application/zip"}[self.kind]

    def can_cancel(self, user: User) -> bool:
        """Whoever asked for it, or anyone who may change the board."""
        membership = user.membership_in(self.project.team_id)
        return self.is_active and membership is not None and (
            self.created_by_id == user.pk or membership.can_edit)


class ApiTokenQuerySet(TeamScopedQuerySet):
    team_path = "team"

    def live(self) -> ApiTokenQuerySet:
        return self.filter(revoked_at=None)


class ApiToken(models.Model):
    """A person's key to the JSON API (storyboard/api.py) for one team.

    Only the SHA-256 of the secret is kept: the secret is shown once, when it is made. The
    token carries no role of its own; each request acts with its person's role in the team as
    it is then, so a changed role applies at once and a removed member's token stops working.
    """

    PREFIX = "sb_"
    # Whole seconds between `last_used` writes: a pipeline polling a take writes once a minute,
    # not on every request.
    TOUCH_EVERY = 60

    user = models.ForeignKey(settings.AUTH_USER_MODEL, models.CASCADE, related_name="api_tokens")
    team = models.ForeignKey(Team, models.CASCADE, related_name="api_tokens")
    name = models.CharField(max_length=100)
    # The secret's first characters, so a person can tell their tokens apart.
    prefix = models.CharField(max_length=16)
    digest = models.CharField(max_length=64, unique=True)
    created = models.DateTimeField(default=timezone.now)
    last_used = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    objects = ApiTokenQuerySet.as_manager()

    class Meta:
        ordering = ["-created", "-pk"]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    @classmethod
    def issue(cls, *, user: User, team: Team, name: str) -> tuple[ApiToken, str]:
        """A new token and its secret, which is not stored and cannot be shown again."""
        secret = cls.PREFIX + secrets.token_urlsafe(32)
        token = cls.objects.create(user=user, team=team, name=name,
                                   prefix=secret[:len(cls.PREFIX) + 6],
                                   digest=secret_digest(secret))
        return token, secret

    @classmethod
    def find(cls, secret: str) -> ApiToken | None:
        """The live token with this secret (user and team loaded), or None."""
        if not secret.startswith(cls.PREFIX):
            return None
        return cls.objects.live().select_related("user", "team").filter(
            digest=secret_digest(secret)).first()

    @property
    def is_live(self) -> bool:
        return self.revoked_at is None

    def revoke(self) -> bool:
        """Stop the token working; False when it was revoked already."""
        now = timezone.now()
        revoked = ApiToken.objects.live().filter(pk=self.pk).update(revoked_at=now)
        if revoked:
            self.revoked_at = now
        return bool(revoked)

    def touch(self) -> None:
        now = timezone.now()
        if self.last_used and (now - self.last_used).total_seconds() < self.TOUCH_EVERY:
            return
        self.last_used = now
        self.save(update_fields=["last_used"])


# Outgoing webhooks: a team's endpoints, and one delivery per event per endpoint.

# The task that sends one delivery, by name: tasks.py sits above the models.
WEBHOOK_TASK = "storyboard.tasks.deliver_webhook"
# Event ids of occurrences that must be announced once (a budget threshold per period) are
# derived from what happened, so a second announcement collides with the first one's row.
WEBHOOK_EVENT_NAMESPACE = uuid.UUID("8a3c1f0e-5b7d-4d2a-9c6e-2f1b0a9d8e7c")


class WebhookEvent(models.TextChoices):
    TAKE_FINISHED = "take.finished", "A take finished"
    TAKE_FAILED = "take.failed", "A take failed or was canceled"
    SHOT_APPROVED = "shot.approved", "A shot was approved"
    EXPORT_READY = "export.ready", "An export is ready to download"
    BUDGET_THRESHOLD = "budget.threshold", "The budget passed 80% or 100%"
    # Sent only when an owner presses "Send test ping"; nobody subscribes to it.
    PING = "ping", "Test ping"


SUBSCRIBABLE_EVENTS = [event for event in WebhookEvent if event != WebhookEvent.PING]


def new_webhook_secret() -> str:
    return "whsec_" + secrets.token_urlsafe(32)


class WebhookEndpointQuerySet(TeamScopedQuerySet):
    team_path = "team"

    def fire(self, *, team_id: int, event: str, data: dict,
             once_per: str = "") -> list[int]:
        """Record one delivery of `event` for each of the team's active endpoints subscribed
        to it, in the caller's transaction, and queue them once it commits; returns their ids.

        The rows are written with the change they announce (an outbox): a change rolled back
        announces nothing, and a process dying right after the commit loses no event (the
        reconciler queues a delivery whose task never ran). `once_per` names the occurrence
        when it must be announced at most once whoever reports it; a second report finds its
        event ids taken and records nothing.
        """
        endpoints = [endpoint for endpoint in
                     self.filter(team_id=team_id, active=True).select_related("team")
                     if event in endpoint.events]
        created = []
        now = timezone.now()
        for endpoint in endpoints:
            event_id = (uuid.uuid5(WEBHOOK_EVENT_NAMESPACE, f"{once_per}:{endpoint.pk}")
                        if once_per else uuid.uuid4())
            try:
                with transaction.atomic():
                    delivery = WebhookDelivery.objects.create(
                        endpoint=endpoint, event=event, event_id=event_id, next_attempt_at=now,
                        payload=webhook_envelope(event_id=event_id, event=event,
                                                 team=endpoint.team, data=data, created=now))
            except IntegrityError:
                continue  # announced already
            created.append(delivery.pk)
        if created:
            transaction.on_commit(partial(WebhookDelivery.enqueue_all, created))
        return created


def webhook_envelope(*, event_id: uuid.UUID, event: str, team: Team, data: dict,
                     created: datetime) -> dict:
    """What a receiver gets: the same shape for every event, the event's facts under `data`."""
    return {"id": str(event_id), "type": str(event),
            "created": created.isoformat(timespec="seconds"),
            "team": {"id": team.pk, "name": team.name}, "data": data}


class WebhookEndpoint(models.Model):
    """An address of a team's that hears about chosen events, signed with its own secret.

    The secret is kept as it is (an HMAC needs it, and the owner needs it to check our
    signatures); only the team's owners ever see it. After a rotation the previous secret signs
    too until `previous_secret_until`, so receivers can switch without missing a beat.
    """

    team = models.ForeignKey(Team, models.CASCADE, related_name="webhook_endpoints")
    url = models.CharField(max_length=2000)
    label = models.CharField(max_length=100, blank=True)
    events = models.JSONField(default=list)
    secret = models.CharField(max_length=100, default=new_webhook_secret)
    previous_secret = models.CharField(max_length=100, blank=True)
    previous_secret_until = models.DateTimeField(null=True, blank=True)
    active = models.BooleanField(default=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, models.SET_NULL, null=True,
                                   blank=True, related_name="+")
    created_at = models.DateTimeField(default=timezone.now)

    objects = WebhookEndpointQuerySet.as_manager()

    class Meta:
        ordering = ["created_at", "pk"]

    def __str__(self) -> str:
        return f"{self.title} ({self.team})"

    @property
    def title(self) -> str:
        return self.label or self.url

    def event_labels(self) -> list[str]:
        return [WebhookEvent(name).label for name in self.events if name in WebhookEvent.values]

    def signing_secrets(self, *, now: datetime | None = None) -> list[str]:
        """The secrets a delivery is signed with now: the current one, and the previous one
        during the grace after a rotation."""
        now = now or timezone.now()
        if self.previous_secret and self.previous_secret_until and \
                self.previous_secret_until > now:
            return [self.secret, self.previous_secret]
        return [self.secret]


class WebhookDeliveryQuerySet(TeamScopedQuerySet):
    team_path = "endpoint__team"

    def due(self, *, now: datetime) -> WebhookDeliveryQuerySet:
        return self.filter(state=WebhookDelivery.State.PENDING, next_attempt_at__lte=now)


class WebhookDelivery(models.Model):
    """One event for one endpoint, and how sending it went (every attempt is also a log line).

    Sent at least once: a receiver may see an event id twice and must drop the repeat.
    """

    class State(models.TextChoices):
        PENDING = "pending", "Waiting to be sent"
        DELIVERING = "delivering", "Sending"
        DELIVERED = "delivered", "Delivered"
        FAILED = "failed", "Failed"

    endpoint = models.ForeignKey(WebhookEndpoint, models.CASCADE, related_name="deliveries")
    event = models.CharField(max_length=32, choices=WebhookEvent.choices)
    event_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    payload = models.JSONField(default=dict)
    state = models.CharField(max_length=16, choices=State.choices, default=State.PENDING,
                             db_index=True)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True, db_index=True)
    # When a worker claimed the current attempt: a claim much older than a request can take
    # belongs to a worker that died, and the reconciler hands the delivery on.
    claimed_at = models.DateTimeField(null=True, blank=True)
    last_status = models.PositiveSmallIntegerField(null=True, blank=True)
    last_error = models.CharField(max_length=500, blank=True)
    response_ms = models.PositiveIntegerField(null=True, blank=True)
    # The queued task that will send the next attempt, so the reconciler can tell a lost one.
    task_id = models.CharField(max_length=64, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    delivered_at = models.DateTimeField(null=True, blank=True)

    objects = WebhookDeliveryQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-pk"]
        verbose_name_plural = "webhook deliveries"

    def __str__(self) -> str:
        return f"{self.event} {self.event_id} → {self.endpoint_id} ({self.state})"

    @property
    def can_redeliver(self) -> bool:
        return self.state in (self.State.DELIVERED, self.State.FAILED)

    @classmethod
    def enqueue_all(cls, pks: list[int]) -> None:
        for delivery in cls.objects.filter(pk__in=pks):
            delivery.enqueue()

    def enqueue(self) -> None:
        """Queue the task that sends the next attempt, no earlier than it is due."""
        task = import_string(WEBHOOK_TASK)
        if self.next_attempt_at and self.next_attempt_at > timezone.now():
            task = task.using(run_after=self.next_attempt_at)
        result = task.enqueue(delivery_id=self.pk)
        self.task_id = str(result.id)
        WebhookDelivery.objects.filter(pk=self.pk).update(task_id=self.task_id)

    def claim(self, *, now: datetime) -> bool:
        """Take this attempt for this worker: a conditional UPDATE, so of two workers (or a
        task and its duplicate) exactly one sends it."""
        claimed = WebhookDelivery.objects.due(now=now).filter(pk=self.pk).update(
            state=self.State.DELIVERING, attempts=F("attempts") + 1, claimed_at=now)
        if claimed:
            self.refresh_from_db()
        return bool(claimed)

    def record(self, *, state: str, now: datetime, status: int | None, error: str,
               response_ms: int | None, next_attempt_at: datetime | None = None) -> bool:
        """The end of the attempt this worker claimed; False if it was no longer ours."""
        fields = {"state": state, "last_status": status, "last_error": error[:500],
                  "response_ms": response_ms, "next_attempt_at": next_attempt_at,
                  "claimed_at": None}
        if state == self.State.DELIVERED:
            fields["delivered_at"] = now
        moved = WebhookDelivery.objects.filter(
            pk=self.pk, state=self.State.DELIVERING, claimed_at=self.claimed_at).update(**fields)
        if moved:
            for name, value in fields.items():
                setattr(self, name, value)
        return bool(moved)
