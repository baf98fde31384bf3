from __future__ import annotations

from django.contrib import admin
from django.urls import include, path

from storyboard import views

sb = [
    path("", views.home, name="home"),
    path("teams/<int:team_id>/projects/", views.projects, name="projects"),
    path("teams/<int:team_id>/projects/new/", views.project_create, name="project-create"),
    path("teams/<int:team_id>/budget/", views.budget, name="budget"),
    path("teams/<int:team_id>/budget/seams/", views.seam_thresholds, name="seam-thresholds"),
    path("teams/<int:team_id>/budget/ledger.csv", views.ledger_csv, name="ledger-csv"),
    path("teams/<int:team_id>/budget/takes/<uuid:take_uid>/settle/", views.take_settle,
         name="take-settle"),
    path("projects/<int:project_id>/", views.board, name="board"),
    path("projects/<int:project_id>/settings/", views.project_settings, name="project-settings"),
    path("projects/<int:project_id>/delete/", views.project_delete, name="project-delete"),
    path("projects/<int:project_id>/shots/new/", views.shot_create, name="shot-create"),
    path("projects/<int:project_id>/shots/reorder/", views.shot_reorder, name="shot-reorder"),
    path("projects/<int:project_id>/scenes/new/", views.scene_create, name="scene-create"),
    path("projects/<int:project_id>/assets/", views.assets, name="assets"),
    path("shots/<int:shot_id>/", views.shot_edit, name="shot"),
    path("shots/<int:shot_id>/estimate/", views.shot_estimate, name="shot-estimate"),
    path("shots/<int:shot_id>/history/", views.shot_history, name="shot-history"),
    path("shots/<int:shot_id>/undo/", views.shot_undo, name="shot-undo"),
    path("shots/<int:shot_id>/generate/", views.shot_generate, name="shot-generate"),
    path("takes/<uuid:take_uid>/cancel/", views.take_cancel, name="take-cancel"),
    path("takes/<uuid:take_uid>/discard/", views.take_discard, name="take-discard"),
    path("takes/<uuid:take_uid>/retry/", views.take_retry, name="take-retry"),
    path("takes/<uuid:take_uid>/refetch/", views.take_refetch, name="take-refetch"),
    path("takes/<uuid:take_uid>/select/", views.take_select, name="take-select"),
    path("takes/<uuid:take_uid>/<str:kind>/", views.take_file, name="take-file"),
    path("seams/<int:seam_id>/<str:side>/", views.seam_frame, name="seam-frame"),
    path("webhooks/<str:provider_name>/<uuid:take_uid>/<str:webhook_token>/", views.webhook,
         name="webhook"),
    path("inputs/<str:signed>/", views.input_file, name="input-file"),
    path("shots/<int:shot_id>/duplicate/", views.shot_duplicate, name="shot-duplicate"),
    path("shots/<int:shot_id>/delete/", views.shot_delete, name="shot-delete"),
    path("shots/<int:shot_id>/move/", views.shot_move, name="shot-move"),
    path("scenes/<int:scene_id>/rename/", views.scene_rename, name="scene-rename"),
    path("scenes/<int:scene_id>/delete/", views.scene_delete, name="scene-delete"),
    path("assets/<uuid:asset_uid>/delete/", views.asset_delete, name="asset-delete"),
    path("assets/<uuid:asset_uid>/<str:variant>/", views.asset_file, name="asset-file"),
]

urlpatterns = [
    path("admin/", admin.site.urls),
    path("", include("accounts.urls")),
    path("", include((sb, "sb"))),
]
