from __future__ import annotations

import hashlib
import io

import factory
from factory.django import DjangoModelFactory
from PIL import Image

from accounts.models import Invitation, Membership, Role, Team, User
from storyboard.models import Asset, Generation, Project, Scene, Shot


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
