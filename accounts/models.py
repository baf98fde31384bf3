from __future__ import annotations

import secrets
from datetime import timedelta

from django.conf import settings
from django.contrib.auth.models import AbstractUser
from django.db import models
from django.utils import timezone


class User(AbstractUser):
    # The team whose projects the navigation shows; switching teams only moves this pointer.
    current_team = models.ForeignKey(
        "accounts.Team", models.SET_NULL, null=True, blank=True, related_name="+"
    )
    # Mentions, replies and review decisions also arrive by email unless this is off.
    email_notifications = models.BooleanField(default=True)

    @property
    def label(self) -> str:
        return self.get_full_name() or self.username

    @property
    def initials(self) -> str:
        parts = self.label.split()
        return "".join(p[0] for p in parts[:2]).upper() or "?"

    def teams(self) -> models.QuerySet[Team]:
        return Team.objects.filter(memberships__user=self).order_by("name")

    def membership_in(self, team: Team | int) -> Membership | None:
        team_id = team if isinstance(team, int) else team.pk
        return Membership.objects.filter(team_id=team_id, user=self).first()

    def switch_team(self, team: Team) -> None:
        self.current_team = team
        self.save(update_fields=["current_team"])


class Team(models.Model):
    name = models.CharField(max_length=100)
    created = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return self.name

    def add_member(self, user: User, role: str) -> Membership:
        membership, _ = Membership.objects.update_or_create(
            team=self, user=user, defaults={"role": role}
        )
        if user.current_team_id is None:
            user.switch_team(self)
        return membership

    def owners(self) -> models.QuerySet[Membership]:
        return self.memberships.filter(role=Role.OWNER)

    def lock_owners(self) -> None:
        """Lock the team's row for this transaction, serialising changes to who owns it."""
        Team.objects.select_for_update().filter(pk=self.pk).first()


class Role(models.TextChoices):
    OWNER = "owner", "Owner"
    PRODUCER = "producer", "Producer"
    EDITOR = "editor", "Editor"
    REVIEWER = "reviewer", "Reviewer"
    VIEWER = "viewer", "Viewer"


# What each role may do. Views ask these questions, never compare role strings themselves.
EDIT_ROLES = frozenset({Role.OWNER, Role.PRODUCER, Role.EDITOR})
REVIEW_ROLES = frozenset({Role.OWNER, Role.PRODUCER, Role.REVIEWER})
# Everyone but viewers writes comments on takes (viewers read them).
COMMENT_ROLES = EDIT_ROLES | REVIEW_ROLES
BUDGET_ROLES = frozenset({Role.OWNER, Role.PRODUCER})
MANAGE_ROLES = frozenset({Role.OWNER})
# Who may show work outside the team through review links (storyboard/sharing.py).
SHARE_ROLES = frozenset({Role.OWNER, Role.PRODUCER})


class Membership(models.Model):
    team = models.ForeignKey(Team, models.CASCADE, related_name="memberships")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=16, choices=Role.choices, default=Role.VIEWER)
    created = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["team", "user"], name="membership_unique_user"),
        ]

    def __str__(self) -> str:
        return f"{self.user} in {self.team} ({self.role})"

    @property
    def can_edit(self) -> bool:
        return self.role in EDIT_ROLES

    @property
    def can_review(self) -> bool:
        return self.role in REVIEW_ROLES

    @property
    def can_comment(self) -> bool:
        return self.role in COMMENT_ROLES

    @property
    def can_budget(self) -> bool:
        return self.role in BUDGET_ROLES

    @property
    def can_manage(self) -> bool:
        return self.role in MANAGE_ROLES

    @property
    def can_share(self) -> bool:
        return self.role in SHARE_ROLES

    def is_last_owner(self) -> bool:
        return self.role == Role.OWNER and self.team.owners().count() == 1


def _new_token() -> str:
    return secrets.token_urlsafe(24)


class InvitationQuerySet(models.QuerySet):
    def usable(self) -> InvitationQuerySet:
        return self.filter(accepted_by=None, revoked=False, expires__gt=timezone.now())


class Invitation(models.Model):
    """A single-use link that adds whoever opens it to a team with a chosen role."""

    team = models.ForeignKey(Team, models.CASCADE, related_name="invitations")
    token = models.CharField(max_length=64, unique=True, default=_new_token)
    role = models.CharField(max_length=16, choices=Role.choices, default=Role.EDITOR)
    note = models.CharField(max_length=200, blank=True, help_text="Who it is for; only you see it.")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, models.SET_NULL, null=True,
                                   related_name="+")
    created = models.DateTimeField(default=timezone.now)
    expires = models.DateTimeField()
    revoked = models.BooleanField(default=False)
    accepted_by = models.ForeignKey(settings.AUTH_USER_MODEL, models.SET_NULL, null=True,
                                    blank=True, related_name="+")
    accepted_at = models.DateTimeField(null=True, blank=True)

    objects = InvitationQuerySet.as_manager()

    def __str__(self) -> str:
        return f"Invitation to {self.team} as {self.role}"

    def save(self, *args, **kwargs) -> None:
        if self.expires is None:
            self.expires = timezone.now() + timedelta(days=settings.INVITATION_DAYS)
        super().save(*args, **kwargs)

    @property
    def state(self) -> str:
        if self.accepted_by_id:
            return "accepted"
        if self.revoked:
            return "revoked"
        if self.expires <= timezone.now():
            return "expired"
        return "open"

    def url(self) -> str:
        from django.urls import reverse

        return settings.SITE_URL + reverse("accounts:invitation", args=[self.token])

    def accept(self, user: User) -> Membership | None:
        """Join the team; returns None when the link was used, revoked or expired meanwhile."""
        # The conditional update claims the link, so two people racing for it cannot both join.
        claimed = Invitation.objects.usable().filter(pk=self.pk).update(
            accepted_by=user, accepted_at=timezone.now()
        )
        if not claimed:
            return None
        existing = user.membership_in(self.team)
        if existing:
            # An invitation never demotes someone who is already in the team.
            return existing
        membership = self.team.add_member(user, self.role)
        user.switch_team(self.team)
        return membership
