from __future__ import annotations

from django.contrib.auth import views as auth_views
from django.urls import path

from accounts import converters, views  # noqa: F401  (converters registers <id:…>)

app_name = "accounts"

urlpatterns = [
    path("accounts/login/", auth_views.LoginView.as_view(template_name="accounts/login.html",
                                                         redirect_authenticated_user=True),
         name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("accounts/signup/", views.signup, name="signup"),
    path("teams/", views.teams, name="teams"),
    path("teams/new/", views.team_create, name="team-create"),
    path("teams/<id:team_id>/switch/", views.team_switch, name="team-switch"),
    path("teams/<id:team_id>/rename/", views.team_rename, name="team-rename"),
    path("teams/<id:team_id>/members/", views.members, name="members"),
    path("teams/<id:team_id>/members/<id:membership_id>/role/", views.member_role,
         name="member-role"),
    path("teams/<id:team_id>/members/<id:membership_id>/remove/", views.member_remove,
         name="member-remove"),
    path("teams/<id:team_id>/invitations/new/", views.invitation_create,
         name="invitation-create"),
    path("teams/<id:team_id>/invitations/<id:invitation_id>/revoke/", views.invitation_revoke,
         name="invitation-revoke"),
    path("teams/<id:team_id>/api-tokens/new/", views.api_token_create,
         name="api-token-create"),
    path("teams/<id:team_id>/api-tokens/<id:api_token_id>/revoke/", views.api_token_revoke,
         name="api-token-revoke"),
    path("invitations/<str:token>/", views.invitation, name="invitation"),
]
