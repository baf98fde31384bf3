from __future__ import annotations

import factory
from factory.django import DjangoModelFactory

from accounts.models import Invitation, Membership, Role, Team, User
from storyboard.models import Project, Scene, Shot


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
