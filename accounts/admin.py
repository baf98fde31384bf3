from __future__ import annotations

from django.contrib import admin
from django.contrib.auth.admin import UserAdmin as BaseUserAdmin

from accounts.models import Invitation, Membership, Team, User


@admin.register(User)
class UserAdmin(BaseUserAdmin):
    list_display = ("username", "email", "first_name", "current_team", "is_staff", "date_joined")
    fieldsets = (*BaseUserAdmin.fieldsets, ("Storyboard", {"fields": ("current_team",)}))
    raw_id_fields = ("current_team",)


class MembershipInline(admin.TabularInline):
    model = Membership
    raw_id_fields = ("user",)
    extra = 0


@admin.register(Team)
class TeamAdmin(admin.ModelAdmin):
    list_display = ("name", "created")
    search_fields = ("name",)
    inlines = [MembershipInline]


@admin.register(Membership)
class MembershipAdmin(admin.ModelAdmin):
    list_display = ("user", "team", "role", "created")
    list_filter = ("role",)
    search_fields = ("user__username", "team__name")
    raw_id_fields = ("user", "team")


@admin.register(Invitation)
class InvitationAdmin(admin.ModelAdmin):
    list_display = ("team", "role", "note", "created_by", "expires", "revoked", "accepted_by")
    list_filter = ("role", "revoked")
    raw_id_fields = ("team", "created_by", "accepted_by")
    readonly_fields = ("token",)
