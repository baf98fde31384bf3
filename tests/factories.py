from __future__ import annotations

import hashlib
import io

import factory
from django.utils import timezone
from factory.django import DjangoModelFactory
from PIL import Image

from accounts.models import Invitation, Membership, Role, Team, User
from storyboard.models import Asset, ChainRun, Export, Generation, Project, Scene, Seam, Shot


class UserFactory(DjangoModelFactory[User]):
    class Meta:
        model = User
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"user{n}")
    first_name = factory.Faker("first_name")
    last_name = factory.Faker("last_name")
    email = factory.LazyAttribute(lambda u: f"{u.username}@example.com")
    password = factory.PostGenerationMethodCall("set_password", "pass-word-123")

    @factory.post_generation
    def save_password(obj, create, extracted, **kwargs):
        if create:
            obj.save()


class TeamFactory(DjangoModelFactory[Team]):
    class Meta:
        model = Team

    name = factory.Sequence(lambda n: f"Team {n}")


class MembershipFactory(DjangoModelFactory[Membership]):
    class Meta:
        model = Membership

    team = factory.SubFactory(TeamFactory)
    user = factory.SubFactory(UserFactory)
    role = Role.EDITOR


class ProjectFactory(DjangoModelFactory[Project]):
    class Meta:
        model = Project

    team = factory.SubFactory(TeamFactory)
    name = factory.Sequence(lambda n: f"Project {n}")


class SceneFactory(DjangoModelFactory[Scene]):
    class Meta:
        model = Scene

    project = factory.SubFactory(ProjectFactory)
    title = factory.Sequence(lambda n: f"Scene {n}")
    position = factory.Sequence(lambda n: n)


class ShotFactory(DjangoModelFactory[Shot]):
    class Meta:
        model = Shot

    project = factory.SubFactory(ProjectFactory)
    title = factory.Sequence(lambda n: f"Shot {n}")
    prompt = "Slow push in on a lighthouse at dawn."
    position = factory.Sequence(lambda n: n)


class InvitationFactory(DjangoModelFactory[Invitation]):
    class Meta:
        model = Invitation

    team = factory.SubFactory(TeamFactory)
    role = Role.EDITOR


RGB = tuple[int, int, int]


def png_bytes(size: tuple[int, int] = (16, 12), color: RGB = (200, 60, 30)) -> bytes:
    """A small, valid PNG made with Pillow: passes storyboard.media.inspect_upload."""
    out = io.BytesIO()
    Image.new("RGB", size, color).save(out, "PNG")
    return out.getvalue()


def jpeg_bytes(size: tuple[int, int] = (16, 12), color: RGB = (30, 60, 200)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, color).save(out, "JPEG")
    return out.getvalue()


_ASSET_PNG = png_bytes()
_ASSET_THUMB = jpeg_bytes()


class AssetFactory(DjangoModelFactory[Asset]):
    """An image asset with a real PNG file and JPEG thumbnail under MEDIA_ROOT.

    Only the row's `kind` matters to the shot form, so `kind=Asset.Kind.AUDIO` (with
    `content_type="audio/mpeg"`, `thumbnail=None`) gives a stand-in audio reference.
    """

    class Meta:
        model = Asset

    project = factory.SubFactory(ProjectFactory)
    kind = Asset.Kind.IMAGE
    content_type = "image/png"
    original_name = factory.Sequence(lambda n: f"frame-{n}.png")
    file = factory.django.FileField(filename="original.png", data=_ASSET_PNG)
    thumbnail = factory.django.FileField(filename="thumb.jpg", data=_ASSET_THUMB)
    size = len(_ASSET_PNG)
    sha256 = hashlib.sha256(_ASSET_PNG).hexdigest()
    width = 16
    height = 12


class GenerationFactory(DjangoModelFactory[Generation]):
    """A finished take with stand-in bytes for its video and poster (nothing decodes them)."""

    class Meta:
        model = Generation

    shot = factory.SubFactory(ShotFactory)
    project = factory.SelfAttribute("shot.project")
    provider = "local"
    endpoint = factory.SelfAttribute("shot.endpoint")
    state = Generation.State.COMPLETED
    progress = 1.0
    simulated = True
    video = factory.django.FileField(filename="video.mp4", data=b"\x00\x00\x00\x18ftypmp42")
    poster = factory.django.FileField(filename="poster.jpg", data=_ASSET_THUMB)
    width = 864
    height = 496
    duration = 2.0


class ChainRunFactory(DjangoModelFactory[ChainRun]):
    """A chain render under way from one shot (no takes: tests that need them start one)."""

    class Meta:
        model = ChainRun

    root = factory.SubFactory(ShotFactory)
    project = factory.SelfAttribute("root.project")
    plan = factory.LazyAttribute(lambda run: [[run.root.pk, run.root.display_title, None]])
    current = factory.LazyAttribute(lambda run: run.root.display_title)


class ExportFactory(DjangoModelFactory[Export]):
    """A finished animatic of one shot, with stand-in bytes for its file."""

    class Meta:
        model = Export

    project = factory.SubFactory(ProjectFactory)
    kind = Export.Kind.ANIMATIC
    state = Export.State.DONE
    key = factory.Sequence(lambda n: f"{n:064x}")
    shot_ids = factory.LazyAttribute(lambda e: list(e.project.shots.values_list("pk", flat=True)))
    take_ids = factory.LazyAttribute(lambda e: [None] * len(e.shot_ids))
    file = factory.django.FileField(filename="cut.mp4", data=b"\x00\x00\x00\x18ftypmp42")
    size = 12
    duration = 1.0
    progress_total = factory.LazyAttribute(lambda e: len(e.shot_ids))
    progress_done = factory.LazyAttribute(lambda e: len(e.shot_ids))


class SeamFactory(DjangoModelFactory[Seam]):
    """A measured joint between two stand-in takes, with its two frames as JPEGs."""

    class Meta:
        model = Seam

    upstream = factory.SubFactory(GenerationFactory)
    downstream = factory.SubFactory(
        GenerationFactory, shot=factory.SubFactory(
            ShotFactory, project=factory.SelfAttribute("...upstream.project")))
    project = factory.SelfAttribute("downstream.project")
    delta_e = 0.6
    ssim = 0.99
    verdict = Seam.Verdict.MATCH
    before = factory.django.FileField(filename="before.jpg", data=_ASSET_THUMB)
    after = factory.django.FileField(filename="after.jpg", data=_ASSET_THUMB)


def build_board(project: Project, *, shots: int) -> list[Shot]:
    """A realistic board of `shots` shots in a few queries: a scene every ten shots, frames,
    references (some videos), chains with stale links, and two finished takes per shot, one
    shown on the board.
    """
    images = Asset.objects.bulk_create(
        Asset(project=project, kind=Asset.Kind.IMAGE, content_type="image/png",
              original_name=f"frame-{i}.png", file=f"frames/{i}.png",
              thumbnail=f"frames/{i}-thumb.jpg", size=1, sha256="0" * 64)
        for i in range(5))
    video = Asset.objects.create(project=project, kind=Asset.Kind.VIDEO,
                                 content_type="video/mp4", original_name="plate.mp4",
                                 file="plates/plate.mp4", size=1, sha256="0" * 64)
    scenes = Scene.objects.bulk_create(
        Scene(project=project, title=f"Scene {i + 1}", position=i)
        for i in range(shots // 10))
    modes = [Shot.Mode.TEXT, Shot.Mode.IMAGE, Shot.Mode.REFERENCE]
    made = Shot.objects.bulk_create(
        Shot(project=project, title=f"Shot {i + 1}" if i % 4 else "",
             prompt=f"Slow push in on the harbour, beat {i}.", position=i,
             scene=scenes[i // 10 - 1] if scenes and i >= 10 else None,
             mode=modes[i % 3],
             endpoint={Shot.Mode.TEXT: "bytedance/seedance-2.0/fast/text-to-video",
                       Shot.Mode.IMAGE: "bytedance/seedance-2.0/fast/image-to-video",
                       Shot.Mode.REFERENCE: "bytedance/seedance-2.0/reference-to-video"}[
                 modes[i % 3]],
             start_frame=images[i % 5] if modes[i % 3] == Shot.Mode.IMAGE else None,
             duration="auto" if i % 9 == 0 else "5")
        for i in range(shots))
    # Every seventh shot continues the one before it (a chain across scenes too), and every
    # other one of those is stale: the shot it continues changed since its take.
    linked = [shot for i, shot in enumerate(made) if i % 7 == 6]
    for n, shot in enumerate(linked):
        shot.continues_from_id = made[made.index(shot) - 1].pk
        if n % 2 == 0:
            shot.stale_reason = "The shot it continues has a new take."
            shot.stale_since = timezone.now()
    Shot.objects.bulk_update(linked, ["continues_from", "stale_reason", "stale_since"])
    Through = Shot.references.through
    Through.objects.bulk_create(
        Through(shot_id=shot.pk, asset_id=asset.pk)
        for shot in made if shot.mode == Shot.Mode.REFERENCE
        for asset in (images[0], video if shot.pk % 2 else images[1]))
    takes = Generation.objects.bulk_create(
        Generation(shot=shot, project=project, provider="local", endpoint=shot.endpoint,
                   state=Generation.State.COMPLETED, progress=1.0, simulated=True,
                   video=f"takes/{shot.pk}-{n}.mp4", poster=f"takes/{shot.pk}-{n}.jpg",
                   width=864, height=496, duration=5.0, estimated_micros=1_000_000,
                   actual_micros=900_000, logs=["queued", "rendering", "done"])
        for shot in made for n in range(2))
    for shot, take in zip(made, takes[1::2], strict=True):
        shot.selected_take = take
    Shot.objects.bulk_update(made, ["selected_take"])
    return made
